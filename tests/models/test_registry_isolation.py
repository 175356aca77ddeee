"""Nothing is written to ~/.mlflow, ./mlruns, ./mlflow.db or anywhere outside the work dir."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest

from models.champion import default_cache_dir, load_champion
from tests.models.registry_factory import Backend


def test_register_review_approve_and_serve_stay_in_the_workdir(
    sqlite_backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", str(home))
    # With no MLflow URI configured, any code path that fell back to MLflow's globals would
    # create ./mlflow.db or ./mlruns in the current directory.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    before = mlflow.get_tracking_uri()

    sqlite_backend.submit(auto_promote=True, challenger_error=0.2, seed=6)
    second = sqlite_backend.submit(challenger_error=0.1, seed=7)
    registry = sqlite_backend.registry()
    registry.approve(second.version.version, by="alice", note="isolation check")
    load_champion(
        sqlite_backend.store, sqlite_backend.model_name, default_cache_dir(sqlite_backend.workdir)
    )

    assert mlflow.get_tracking_uri() == before, "the caller's global URI is restored"
    assert list(cwd.iterdir()) == [], f"written to the current directory: {list(cwd.iterdir())}"
    assert list(home.iterdir()) == [], f"written to HOME: {list(home.iterdir())}"
    outside = [
        p
        for p in tmp_path.rglob("*")
        if not p.is_relative_to(sqlite_backend.workdir) and p not in (cwd, home)
    ]
    assert outside == []
    assert not Path(os.path.expanduser("~/.mlflow")).exists() or os.environ["HOME"] == str(home)
