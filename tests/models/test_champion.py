"""Serving the champion: registry first, last-known-good copy when it is unreachable."""

from __future__ import annotations

import time

import numpy as np
import pytest

from models.champion import (
    ChampionUnavailableError,
    NoChampionError,
    RegistryUnreachableWarning,
    default_cache_dir,
    load_champion,
)
from models.mlflow_store import MlflowStore
from tests.models.registry_factory import FEATURES, Backend


def broken_stores(backend: Backend) -> list[MlflowStore]:
    workdir = backend.workdir
    return [
        # The database file vanished (must not be silently re-created empty).
        MlflowStore(f"sqlite:///{workdir / 'gone' / 'mlflow.db'}", workdir / "mlartifacts"),
        MlflowStore(f"sqlite:///{workdir / 'mlflow-missing.db'}", workdir / "mlartifacts"),
        # Nothing listens on port 9.
        MlflowStore("postgresql+psycopg://postgres@127.0.0.1:9/none", workdir / "mlartifacts"),
    ]


def test_last_known_good_copy_serves_when_registry_is_unreachable(sqlite_backend: Backend) -> None:
    sqlite_backend.submit(auto_promote=True, challenger_error=0.2, seed=5)
    cache = default_cache_dir(sqlite_backend.workdir)
    fresh = load_champion(sqlite_backend.store, sqlite_backend.model_name, cache)
    assert (fresh.source, fresh.version, fresh.degraded, fresh.warning) == (
        "registry",
        "1",
        False,
        None,
    )
    assert (cache / sqlite_backend.model_name / "metadata.json").is_file()
    x = np.random.default_rng(0).normal(size=(3, len(FEATURES)))
    import pandas as pd

    frame = pd.DataFrame(x, columns=list(FEATURES))
    for broken in broken_stores(sqlite_backend):
        started = time.monotonic()
        with pytest.warns(RegistryUnreachableWarning, match="last-known-good"):
            served = load_champion(broken, sqlite_backend.model_name, cache)
        assert time.monotonic() - started < 60
        assert served.source == "last_known_good" and served.degraded
        assert served.version == "1" and "unreachable" in served.warning
        np.testing.assert_allclose(served.model.predict(frame), fresh.model.predict(frame))
    assert not (sqlite_backend.workdir / "mlflow-missing.db").exists()


def test_no_champion_is_a_clear_error(sqlite_backend: Backend) -> None:
    cache = default_cache_dir(sqlite_backend.workdir)
    with pytest.raises(NoChampionError, match="no @champion") as caught:
        load_champion(sqlite_backend.store, sqlite_backend.model_name, cache)
    assert not isinstance(caught.value, ChampionUnavailableError)
    with pytest.raises(ChampionUnavailableError, match="no last-known-good copy"):
        load_champion(broken_stores(sqlite_backend)[0], sqlite_backend.model_name, cache)
