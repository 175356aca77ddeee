"""Registry review commands: ``review``, ``registry`` and ``ui mlflow``.

``dynamargin review show|refresh|approve|reject`` act on versions of ``dynamargin-vol-<H>h``;
``dynamargin registry history|rollback`` on the champion record; ``dynamargin ui mlflow``
starts the MLflow UI on the project's store, bound to 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from contracts.timestamps import utc_timestamp
from pipelines.commands.context import settings_from
from pipelines.settings import Settings

console = Console()
errors = Console(stderr=True)

review_app = typer.Typer(help="Review registered model versions: show, refresh, approve, reject.")
registry_app = typer.Typer(help="Champion record: history and rollback.")
ui_app = typer.Typer(help="Web UIs on the project's stores.")

ByOption = Annotated[str, typer.Option("--by", help="Who decides (recorded).")]
NoteOption = Annotated[str, typer.Option("--note", help="Why (recorded).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.add_typer(review_app, name="review")
    app.add_typer(registry_app, name="registry")
    app.add_typer(ui_app, name="ui")


def _registry(settings: Settings) -> Any:
    # Imported lazily: MLflow takes seconds to import and most commands never need it.
    from models.mlflow_store import MlflowStore
    from models.registry import ChampionRegistry, registered_model_name

    store = MlflowStore.for_workdir(settings.workdir, settings.mlflow_uri)
    return ChampionRegistry(store, registered_model_name(settings.horizon_hours))


def _fail(message: str) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=1)


@review_app.command("show")
def show(
    ctx: typer.Context,
    version: Annotated[
        str | None, typer.Argument(help="Version number; default the @challenger.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show a version: aliases, decision, the gate table and the report path."""
    from models.registry import TAG_GATES_JSON, TAG_REPORT_HTML, TAG_REPORT_MARKDOWN, RegistryError

    registry = _registry(settings_from(ctx))
    try:
        if version is None:
            info = registry.challenger() or next(iter(registry.versions()), None)
            if info is None:
                raise _fail(
                    f"{registry.model_name} has no versions in {registry.store.tracking_uri}"
                )
        else:
            info = registry.version(version)
    except RegistryError as exc:
        raise _fail(str(exc)) from exc
    gates = json.loads(info.tags[TAG_GATES_JSON]) if TAG_GATES_JSON in info.tags else None
    report = info.tags.get(TAG_REPORT_HTML)
    payload = {
        "model": info.name,
        "version": info.version,
        "run_id": info.run_id,
        "aliases": list(info.aliases),
        "decision": info.decision,
        "decision_by": info.tags.get("dynamargin.decision.by"),
        "decision_note": info.tags.get("dynamargin.decision.note"),
        "override_reason": info.tags.get("dynamargin.override.reason"),
        "gates_passed": info.gates_passed,
        "gates": gates,
        "report_html": report,
        "report_markdown": info.tags.get(TAG_REPORT_MARKDOWN),
    }
    if as_json:
        console.print_json(json.dumps(payload, default=str))
        return
    aliases = ", ".join(f"@{a}" for a in info.aliases) or "none"
    console.print(
        f"[bold]{info.name} v{info.version}[/]  aliases: {aliases}  decision: {info.decision}"
        f"  run: {info.run_id}"
    )
    _print_gates(gates)
    _print_report(report)


@review_app.command("refresh")
def refresh(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="Version whose gates and report to re-run.")],
    reference_time: Annotated[
        str | None,
        typer.Option(
            "--reference-time",
            help="ISO time 'now' for the freshness gate (default: the current time).",
        ),
    ] = None,
) -> None:
    """Re-run the gates of VERSION against the current champion and rewrite its report."""

    from models.registry import TAG_GATES_JSON, RegistryError
    from models.review import GateConfig, ReviewInputError
    from models.submission import review_version
    from models.tracking import TrackingError

    settings = settings_from(ctx)
    registry = _registry(settings)
    reference = None
    if reference_time is not None:
        reference = utc_timestamp(reference_time).to_pydatetime()
    try:
        info = registry.version(version)
        recorded = info.tags.get(TAG_GATES_JSON)
        # Re-use the configuration the version was first reviewed with.
        config = GateConfig.model_validate(json.loads(recorded)["config"]) if recorded else None
        gates, report = review_version(
            registry.store,
            registry,
            info.version,
            reports_dir=settings.reports_dir,
            gate_config=config,
            reference_time=reference,
        )
    except (RegistryError, TrackingError, ReviewInputError) as exc:
        raise _fail(str(exc)) from exc
    console.print(f"[bold]{registry.model_name} v{info.version}[/] re-reviewed")
    _print_gates(gates.to_dict())
    _print_report(str(report.html))


def _print_gates(gates: dict[str, Any] | None) -> None:
    if gates is None:
        console.print("[yellow]no gate results recorded: the version was never reviewed[/]")
        return
    table = Table(title="Review gates")
    table.add_column("gate")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for gate in gates["results"]:
        result = "[green]PASS[/]" if gate["passed"] else "[red]FAIL[/]"
        table.add_row(gate["name"], result, gate["summary"])
    console.print(table)
    verdict = "[green]all gates passed[/]" if gates["passed"] else "[red]gates failed[/]"
    against = gates.get("champion_version")
    console.print(
        f"{verdict} (against champion {'v' + against if against else 'none'}, "
        f"reference time {gates['reference_time']})"
    )


def _print_report(report: str | None) -> None:
    if report:
        state = "" if Path(report).is_file() else "  [red](missing on disk)[/]"
        console.print(f"report: {report}{state}")
    else:
        console.print("report: none recorded")


@review_app.command("approve")
def approve(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="Version to promote to @champion.")],
    by: ByOption,
    note: NoteOption,
    override_gates: Annotated[
        bool, typer.Option("--override-gates", help="Promote despite failed gates (recorded).")
    ] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why the gates are overridden.")
    ] = None,
) -> None:
    """Promote VERSION to @champion; its gates must pass unless explicitly overridden."""
    from models.registry import RegistryError

    if override_gates and not (reason and reason.strip()):
        raise _fail("--override-gates needs --reason TEXT (it is recorded)")
    if reason is not None and not override_gates:
        raise _fail("--reason only applies with --override-gates")
    settings = settings_from(ctx)
    registry = _registry(settings)
    try:
        event = registry.approve(
            version, by=by, note=note, override_reason=reason if override_gates else None
        )
    except RegistryError as exc:
        raise _fail(str(exc)) from exc
    previous = f" (was v{event.previous_champion})" if event.previous_champion else ""
    label = "OVERRIDE: " if event.action == "override" else ""
    console.print(f"{label}{registry.model_name}@champion -> v{event.version}{previous}")
    _resume_paused_review(
        settings,
        registry,
        event.version,
        approve=True,
        by=by,
        note=note,
        override_reason=event.override_reason,
    )


@review_app.command("reject")
def reject(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="Version to reject.")],
    by: ByOption,
    note: NoteOption,
) -> None:
    """Reject VERSION (recorded; it loses @challenger and can no longer be approved)."""
    from models.registry import RegistryError

    settings = settings_from(ctx)
    registry = _registry(settings)
    try:
        event = registry.reject(version, by=by, note=note)
    except RegistryError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"{registry.model_name} v{event.version} rejected by {event.by}")
    _resume_paused_review(settings, registry, event.version, approve=False, by=by, note=note)


def _resume_paused_review(
    settings: Settings,
    registry: Any,
    version: str,
    *,
    approve: bool,
    by: str,
    note: str,
    override_reason: str | None = None,
) -> None:
    """Hand the recorded decision to a review flow run paused for it, if there is one."""
    from models.registry import TAG_REVIEW_FLOW_RUN

    if TAG_REVIEW_FLOW_RUN not in registry.version(version).tags:
        return  # reviewed without a pause: no flow waits (and Prefect is not imported)
    from pipelines.flows.review import ApprovalInput, resume_if_waiting

    approval = ApprovalInput(approve=approve, by=by, note=note, override_reason=override_reason)
    try:
        resumed = resume_if_waiting(version, approval, settings.workdir)
    except Exception as exc:  # Prefect unreachable: the decision stands, the pause times out
        errors.print(
            f"[yellow]warning:[/] decision recorded, but the paused review flow of v{version} "
            f"could not be resumed: {exc}"
        )
        return
    if resumed is not None:
        console.print(f"resumed review flow run {resumed}")


@registry_app.command("history")
def history(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every recorded decision in time order (champion changes, rejections, overrides)."""
    registry = _registry(settings_from(ctx))
    events = registry.history()
    if as_json:
        rows = [{**asdict(e), "at": e.at.isoformat()} for e in events]
        console.print_json(json.dumps(rows))
        return
    if not events:
        console.print(f"{registry.model_name}: no decisions recorded yet")
        return
    table = Table(title=f"{registry.model_name}: decisions")
    for column in ("at (UTC)", "action", "version", "previous", "by", "note", "override reason"):
        table.add_column(column, overflow="fold")
    for e in events:
        table.add_row(
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            e.action,
            f"v{e.version}",
            f"v{e.previous_champion}" if e.previous_champion else "",
            e.by,
            e.note,
            e.override_reason or "",
        )
    console.print(table)
    champion = registry.champion()
    console.print(f"current @champion: {'v' + champion.version if champion else 'none'}")


@registry_app.command("rollback")
def rollback(ctx: typer.Context, by: ByOption, note: NoteOption) -> None:
    """Point @champion back at the previous champion on record."""
    from models.registry import RegistryError

    registry = _registry(settings_from(ctx))
    try:
        event = registry.rollback(by=by, note=note)
    except RegistryError as exc:
        raise _fail(str(exc)) from exc
    console.print(
        f"{registry.model_name}@champion rolled back v{event.previous_champion} -> v{event.version}"
    )


def mlflow_ui_command(settings: Settings, port: int) -> list[str]:
    """The ``mlflow server`` command line for the project's store, bound to 127.0.0.1.

    Artifacts (served and default root) stay under the work dir.
    """
    artifacts = settings.workdir / "mlartifacts"
    mlflow_exe = Path(sys.executable).with_name("mlflow")
    return [
        str(mlflow_exe),
        "server",
        "--backend-store-uri",
        settings.mlflow_uri,
        "--default-artifact-root",
        artifacts.as_uri(),
        "--artifacts-destination",
        artifacts.as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]


@ui_app.command("mlflow")
def ui_mlflow(
    ctx: typer.Context,
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1.")] = 5000,
) -> None:
    """Start the MLflow UI on the project's store (SIGTERM or Ctrl-C stops it, workers too)."""
    import threading

    from pipelines.lifecycle import service_lifecycle

    settings = settings_from(ctx)
    command = mlflow_ui_command(settings, port)
    (settings.workdir / "mlartifacts").mkdir(parents=True, exist_ok=True)
    console.print(f"MLflow UI on http://127.0.0.1:{port}  (store {settings.mlflow_uri})")
    stop = threading.Event()
    # The server runs as a child; the lifecycle terminates it and its workers on the way
    # out, so a SIGTERM to this command never leaves an orphaned MLflow server behind.
    with service_lifecycle("ui-mlflow", stop.set, lambda line: console.print(line)):
        server = subprocess.Popen(command, cwd=settings.workdir)
        while not stop.is_set() and server.poll() is None:
            stop.wait(0.5)
    code = server.poll()
    if not stop.is_set() and code not in (0, -2, 130):
        raise _fail(f"mlflow server exited with status {code}")
