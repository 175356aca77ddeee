"""The review, registry and ui commands, on a copy of the reviewed store."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from pipelines.commands import review
from pipelines.commands.review import mlflow_ui_command
from pipelines.settings import get_settings
from tests.models.registry_factory import ReviewedStore


def make_app() -> typer.Typer:
    """The root app's contract: a callback that puts Settings on the context."""
    app = typer.Typer()

    @app.callback()
    def main(ctx: typer.Context, workdir: Annotated[Path, typer.Option()]) -> None:
        ctx.obj = get_settings(workdir)

    review.register(app)
    return app


@pytest.fixture()
def cli_workdir(reviewed: ReviewedStore, workdir: Path) -> Path:
    """v1 is @champion, v2 passed its gates and waits (decisions touch only the database)."""
    shutil.copyfile(reviewed.backend.workdir / "mlflow.db", workdir / "mlflow.db")
    return workdir


def invoke(workdir: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(make_app(), ["--workdir", str(workdir), *args])
    return result.exit_code, result.output


def test_review_show_prints_gate_table_and_report_path(
    cli_workdir: Path, reviewed: ReviewedStore
) -> None:
    code, out = invoke(cli_workdir, "review", "show")
    assert code == 0, out
    assert "dynamargin-vol-24h v2" in out and "@challenger" in out
    for gate in (
        "qlike_vs_champion",
        "qlike_vs_har",
        "var_green_zone",
        "leakage",
        "data_freshness",
    ):
        assert gate in out
    assert "PASS" in out and "all gates passed" in out
    assert str(reviewed.second.report.html) in out.replace("\n", "")

    code, out = invoke(cli_workdir, "review", "show", "1", "--json")
    payload = json.loads(out)
    assert code == 0 and payload["version"] == "1" and payload["aliases"] == ["champion"]
    assert payload["decision"] == "approved" and payload["decision_by"] == "auto-promotion"
    assert payload["gates_passed"] is True and Path(payload["report_html"]).is_file()


def test_approve_history_rollback_reject_via_cli(cli_workdir: Path) -> None:
    code, out = invoke(cli_workdir, "review", "approve", "2", "--by", "alice", "--note", "better")
    assert code == 0 and "@champion -> v2 (was v1)" in out, out

    code, out = invoke(cli_workdir, "registry", "rollback", "--by", "bob", "--note", "spike")
    assert code == 0 and "rolled back v2 -> v1" in out, out

    code, out = invoke(cli_workdir, "review", "reject", "2", "--by", "bob", "--note", "unstable")
    assert code == 0 and "rejected by bob" in out, out

    code, out = invoke(cli_workdir, "registry", "history", "--json")
    events = json.loads(out)
    assert [(e["action"], e["version"], e["by"]) for e in events] == [
        ("auto", "1", "auto-promotion"),
        ("approve", "2", "alice"),
        ("rollback", "1", "bob"),
        ("reject", "2", "bob"),
    ]
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    code, out = invoke(cli_workdir, "registry", "history")
    assert code == 0 and "current @champion: v1" in out


def test_cli_refuses_unrecorded_overrides_and_bad_versions(cli_workdir: Path) -> None:
    code, out = invoke(
        cli_workdir, "review", "approve", "2", "--by", "a", "--note", "n", "--override-gates"
    )
    assert code == 1 and "--reason" in out
    code, out = invoke(cli_workdir, "review", "approve", "7", "--by", "a", "--note", "n")
    assert code == 1 and "no version 7" in out
    code, out = invoke(cli_workdir, "review", "approve", "1", "--by", "a", "--note", "n")
    assert code == 1 and "already @champion" in out


def test_ui_mlflow_command_uses_the_project_store_on_localhost(cli_workdir: Path) -> None:
    # Starting the real server takes ~30 s on a loaded CI box; the command line is the
    # contract (verified live by hand: /health answers 200 and the aliases are listed).
    settings = get_settings(cli_workdir)
    command = mlflow_ui_command(settings, port=5055)
    assert Path(command[0]).name == "mlflow" and command[1] == "server"
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "5055"
    assert command[command.index("--backend-store-uri") + 1] == settings.mlflow_uri
    assert settings.mlflow_uri == f"sqlite:///{cli_workdir / 'mlflow.db'}"
    for flag in ("--artifacts-destination", "--default-artifact-root"):
        assert command[command.index(flag) + 1] == (cli_workdir / "mlartifacts").as_uri()


def test_review_refresh_reruns_gates_and_rewrites_the_report(cli_workdir: Path) -> None:
    # Re-logs v2's report files into the shared run (same content): harmless for readers.
    code, out = invoke(
        cli_workdir, "review", "refresh", "2", "--reference-time", "2025-01-21T06:00:00Z"
    )
    assert code == 0, out
    assert "re-reviewed" in out and "against champion v1" in out and "all gates passed" in out
    report = cli_workdir / "reports" / "review-dynamargin-vol-24h-v2.html"
    assert report.is_file() and str(report) in out.replace("\n", "")
    code, out = invoke(cli_workdir, "review", "show", "2", "--json")
    assert json.loads(out)["report_html"] == str(report)
    assert json.loads(out)["gates"]["reference_time"] == "2025-01-21T06:00:00+00:00"


def test_decision_resumes_a_paused_review_flow(
    cli_workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.mlflow_store import MlflowStore
    from models.registry import TAG_REVIEW_FLOW_RUN, ChampionRegistry
    from pipelines.flows import review as review_flow

    store = MlflowStore.for_workdir(cli_workdir)
    ChampionRegistry(store, "dynamargin-vol-24h").record_review("2", {TAG_REVIEW_FLOW_RUN: "x"})
    handed: list[tuple[str, object, Path]] = []

    def fake_resume(version: str, approval: object, workdir: Path) -> uuid.UUID:
        handed.append((version, approval, Path(workdir)))
        return uuid.UUID(int=7)

    monkeypatch.setattr(review_flow, "resume_if_waiting", fake_resume)
    code, out = invoke(cli_workdir, "review", "approve", "2", "--by", "alice", "--note", "ok")

    assert code == 0 and f"resumed review flow run {uuid.UUID(int=7)}" in out, out
    [(version, approval, workdir)] = handed
    assert version == "2" and workdir == cli_workdir
    assert (approval.approve, approval.by, approval.note) == (True, "alice", "ok")
