"""``dynamargin demo``: the main job end to end on the synthetic market (or the real dump).

Runs ``pipeline_flow`` with the demo configuration (:func:`pipelines.flows.config.demo_config`:
small LightGBM, automatic promotion allowed, publication stamped at the last bar's close)
under Prefect's ephemeral local server with ``PREFECT_HOME`` inside the work dir, then
prints the summary and where to look next. Progress is shown per step.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from pipelines.commands.context import settings_from

console = Console()

STEPS = ("ingest", "features", "train", "review", "publish", "backtest")


def register(app: typer.Typer) -> None:
    """Add ``demo``."""
    app.command(name="demo")(demo)


def demo(
    ctx: typer.Context,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Real dump root like ../shared/data (default: synthetic)."),
    ] = None,
    assets: Annotated[int, typer.Option("--assets", min=2, help="Synthetic assets.")] = 5,
    days: Annotated[int, typer.Option("--days", min=120, help="Synthetic days.")] = 240,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Synthetic seed.")] = 7,
    runner: Annotated[str, typer.Option("--runner", help="threads or dask.")] = "threads",
    verbose: Annotated[bool, typer.Option("--verbose", help="Show Prefect's logs.")] = False,
) -> None:
    """Synthetic market -> pipeline (train, review, publish, replay) -> summary."""
    settings = settings_from(ctx)
    from pipelines.flows.runtime import prepare_environment

    prepare_environment(settings.workdir)
    from pipelines.flows.config import demo_config
    from pipelines.flows.pipeline import pipeline_flow
    from pipelines.summary import render_summary

    config = demo_config(data, assets=assets, days=days, seed=seed)
    where = f"{data}" if data else f"synthetic market: {assets} assets x {days} days, seed {seed}"
    console.print(f"[bold]dynamargin demo[/] in {settings.workdir}  ({where})")
    started = time.perf_counter()
    onchain = _start_onchain()
    with _StepDisplay(verbose):
        try:
            summary = pipeline_flow(str(settings.workdir), config, runner)  # type: ignore[arg-type]
        except Exception as exc:  # the failed step's message, one line
            console.print(f"[bold red]demo failed:[/] {type(exc).__name__}: {exc}")
            raise typer.Exit(1) from exc
    render_summary(summary, console)
    _show_served_snapshot(settings.workdir)
    _show_onchain(onchain, settings.workdir)
    _show_live(settings, data)
    _show_venue(settings)
    console.print(f"demo finished in {time.perf_counter() - started:.0f} s")


# -- live: the emulator replays a stress day, the live loop publishes hour by hour --------


def _show_live(settings: Any, data: Path | None) -> None:
    """Replay a stress day through the exchange emulator and the live loop; summarise."""
    from pipelines.live_demo import run_live_segment
    from pipelines.live_summary import render_live_summary

    shared = data if data is not None else settings.shared_data
    with console.status("live: the emulator replays a stress day ..."):
        result = run_live_segment(settings, shared)
    render_live_summary(result, console)


# -- on chain: RiskOracle deployed first, the publisher signs for it, then push and apply --


def _start_onchain() -> Any:
    """Deploy the RiskOracle on the in-process EVM; the pipeline's publisher signs for it."""
    from pipelines import onchain_round_trip

    session = onchain_round_trip.start()
    onchain_round_trip.configure_publisher(session)
    console.print(
        f"  in-process EVM (chain id {session.chain.chain_id}): RiskOracle at "
        f"{session.oracle.address}; the publisher signs for it"
    )
    return session


def _show_onchain(session: Any, workdir: Path) -> None:
    """Push the published batch to the RiskOracle; the steward applies it; read back."""
    from pipelines import onchain_round_trip
    from pipelines.commands.oracle import print_round_trip
    from serving.store import PublicationStore, default_store_url

    with PublicationStore(default_store_url(workdir), create=False) as store:
        snapshots = [dict(p.snapshot) for p in store.latest().values()]
    started = time.perf_counter()
    trip = onchain_round_trip.push_and_apply(
        session, snapshots, journal=workdir / "onchain" / "push-journal.json"
    )
    print_round_trip(trip, console)
    console.print(f"  (on-chain round trip {time.perf_counter() - started:.1f} s)")
    if not trip.all_equal:
        raise typer.Exit(1)


def _show_served_snapshot(workdir: Path) -> None:
    """Serve the batch just published over HTTP and verify what a consumer receives."""
    from pipelines.served_snapshot import ServeCheckError, serve_and_read
    from serving.store import PublicationStore, default_store_url

    latest = PublicationStore(default_store_url(workdir)).latest()
    if not latest:
        console.print("[bold red]nothing was published; no snapshot to serve[/]")
        raise typer.Exit(1)
    asset = sorted(latest)[0]
    try:
        served = serve_and_read(workdir, asset)
    except ServeCheckError as exc:
        console.print(f"[bold red]serving the snapshot failed:[/] {exc}")
        raise typer.Exit(1) from exc
    verdict = "[green]signatures verified[/]" if served.signature_ok else "[red]NOT verified[/]"
    checks = ", ".join(f"{name} {'ok' if ok else 'FAILED'}" for name, ok in served.checks.items())
    console.print(
        f"Served over HTTP: GET {served.url} -> {served.status_code}, {verdict} ({checks}); "
        f"/readyz: {served.ready}"
    )
    if served.ready != "ready":
        console.print(
            "  (the demo publishes as of its market's last bar, into a replay store, so against "
            "today's clock the snapshots have expired and /readyz rightly says so; "
            "`dynamargin publish` on fresh data into a live store of its own (another "
            "--workdir or DYNAMARGIN_PUBLICATIONS_URL) makes them live)"
        )
    if not served.signature_ok:
        raise typer.Exit(1)


def _show_venue(settings: Any) -> None:
    """A venue runs the liquidation core on the stored bars, then consumes the served batch."""
    from liquidation.snapshot import parse_time_ms
    from pipelines.commands.consume import print_rehearsal
    from pipelines.served_snapshot import ServeCheckError, running_api
    from pipelines.stores import market_store
    from pipelines.venue_rehearsal import rehearse
    from serving.store import PublicationStore, default_store_url

    with PublicationStore(default_store_url(settings.workdir), create=False) as store:
        latest = store.latest()
    assets = sorted(latest)
    published = max(parse_time_ms(p.snapshot["published_at"]) for p in latest.values())
    started = time.perf_counter()
    try:
        with running_api(settings.workdir) as api:
            result = rehearse(
                settings.workdir, market_store(settings), api, assets, published=published
            )
    except ServeCheckError as exc:
        console.print(f"[bold red]the venue step failed:[/] {exc}")
        raise typer.Exit(1) from exc
    print_rehearsal(result, console)
    console.print(f"  (venue step {time.perf_counter() - started:.1f} s)")
    if not result.poll.applied or result.poll.refusals:
        raise typer.Exit(1)


class _StepProgress(logging.Handler):
    """Turns Prefect's flow-run log records into one status line per pipeline step."""

    def __init__(self, status: Any) -> None:
        super().__init__(level=logging.INFO)
        self.status = status
        self.started = time.perf_counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for step in STEPS:
            if f"for flow '{step}'" in message:
                elapsed = time.perf_counter() - self.started
                console.print(f"  [{elapsed:5.0f} s] {step}")
                self.status.update(f"{step} ...")
                return
        if record.name.startswith("prefect.task_runs") and "Finished" in message:
            self.status.update(message.split(" - ", 1)[-1][:70])


class _StepDisplay:
    """A spinner plus one line per pipeline step; Prefect's console logs only if verbose."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.status: Any = None
        self.handler: _StepProgress | None = None
        self.quieted: list[tuple[logging.Handler, int]] = []

    def __enter__(self) -> _StepDisplay:
        if not self.verbose:
            # Prefect's console handler sits on the root logger once Prefect is imported;
            # quieting it keeps warnings on screen while the runs' logs still reach the
            # Prefect API (and UI) through their own handlers.
            from prefect.logging.handlers import PrefectConsoleHandler

            for handler in logging.getLogger().handlers:
                if isinstance(handler, PrefectConsoleHandler):
                    self.quieted.append((handler, handler.level))
                    handler.setLevel(logging.WARNING)
            logging.getLogger("mlflow").setLevel(logging.WARNING)
            warnings.filterwarnings("ignore", module="lightgbm")
            warnings.filterwarnings("ignore", module="mlflow")
        self.status = console.status("starting the ephemeral Prefect server ...")
        self.status.__enter__()
        self.handler = _StepProgress(self.status)
        for name in ("prefect.flow_runs", "prefect.task_runs"):
            logging.getLogger(name).addHandler(self.handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in ("prefect.flow_runs", "prefect.task_runs"):
            if self.handler is not None:
                logging.getLogger(name).removeHandler(self.handler)
        for handler, level in self.quieted:
            handler.setLevel(level)
        self.status.__exit__(*exc)
