"""``dynamargin live``: publish a signed batch after every bar close from live venue data.

Runs :class:`pipelines.live_loop.LiveLoop` until SIGTERM or Ctrl-C
(:func:`pipelines.lifecycle.service_lifecycle`): ingest the closed bars, compute the new
feature rows, forecast with the champion (or a baseline), apply the policy and append the
signed batch to the publication store that ``dynamargin serve`` reads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from contracts.timestamps import optional_utc_timestamp
from features.errors import MarketDataError
from pipelines.commands import options
from pipelines.commands.context import parse_symbols, settings_from

console = Console()
errors = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add ``live`` to the root app."""
    app.command(name="live")(live)


def live(
    ctx: typer.Context,
    assets: options.AssetsOption = "BTCUSDT,ETHUSDT",
    emulator: options.EmulatorOption = None,
    venue: options.SecondVenueOption = "bybit",
    dump_url: options.DumpUrlOption = None,
    since: options.SinceOption = None,
    lookback_days: options.LookbackDaysOption = 60.0,
    until: options.UntilOption = None,
    cycles: options.CyclesOption = None,
    model: Annotated[
        str, typer.Option(help="Forecast source: champion, baseline:har or baseline:ewma.")
    ] = "champion",
    history_days: Annotated[
        int, typer.Option(min=1, help="Days of forecasts handed to the policy.")
    ] = 30,
    calibration_days: Annotated[
        int, typer.Option(min=1, help="Calibration window of a baseline source, days.")
    ] = 30,
    policy_config: Annotated[
        Path | None, typer.Option(help="Policy TOML (default: the work dir's).")
    ] = None,
    store_url: Annotated[
        str | None, typer.Option(help="Publication store (default: the work dir's).")
    ] = None,
    side_data: Annotated[
        Path | None,
        typer.Option(
            help="Data root with positioning/ and events/ (like ../shared/data), read in place "
            "as known at each bar close; default: the store's positioning and events tables."
        ),
    ] = None,
    late_grace: options.LateGraceOption = "5min",
    repoll: options.RepollOption = 5.0,
    max_sleep: options.MaxSleepOption = 60.0,
    metrics_port: options.MetricsPortOption = None,
    attach_venue: Annotated[
        bool,
        typer.Option(
            help="The venue consumes every batch: polls the signed snapshots through the API, "
            "applies them and ticks (scan, waterfall) at the batch's time."
        ),
    ] = False,
    venue_api: Annotated[
        str | None,
        typer.Option(
            help="--attach-venue: the risk API the venue polls (e.g. `dynamargin serve`); "
            "default: the publication store served on a loopback port by this process."
        ),
    ] = None,
    venue_state: Annotated[
        Path | None,
        typer.Option(help="--attach-venue: event log and pinned key (default: <workdir>/venue)."),
    ] = None,
    venue_status_port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="--attach-venue: serve the venue's status here."),
    ] = None,
    demo_book: Annotated[
        bool, typer.Option(help="--attach-venue: seed the demo book at the first batch.")
    ] = False,
) -> None:
    """Publish signed multipliers after every bar close from live data, until SIGTERM.

    A late bar is waited for (at most --late-grace); a stale feed publishes ``stale`` with
    the reason in the log and ``<workdir>/live/status.json``; the store the API serves gets
    one batch per close. With --attach-venue the venue consumes every batch.
    """
    from features.live.ingest import LiveIngest
    from features.live.metrics import LiveMetrics
    from features.sources.side_data import SideFiles
    from models.spec import CalibrationSpec
    from pipelines.flows.config import PublishConfig
    from pipelines.lifecycle import service_lifecycle
    from pipelines.live_loop import LiveLoop, LivePublication, live_status_path
    from pipelines.stores import market_store

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    log = logging.getLogger("dynamargin.live")
    settings = settings_from(ctx)
    chosen = parse_symbols([assets]) or []
    stop = threading.Event()
    try:
        publish = PublishConfig(
            model=model,  # type: ignore[arg-type]
            history_days=history_days,
            policy_config=policy_config,
        )
        endpoints = options.live_endpoints(emulator, venue, dump_url)
        config = options.live_ingest_config(since, lookback_days, late_grace, repoll, max_sleep)
        side = SideFiles(side_data) if side_data is not None else None
        metrics = LiveMetrics()
        sources = endpoints.build(
            cache_dir=settings.cache_dir / "binance", metrics=metrics, sleep=stop.wait
        )
        ingest = LiveIngest(market_store(settings), sources, chosen, config, metrics)
        loop = LiveLoop(
            settings,
            ingest,
            publish,
            calibration=CalibrationSpec(window_days=calibration_days),
            store_url=store_url,
            side=side,
        )
        end = optional_utc_timestamp(until)
    except (MarketDataError, ValueError, FileNotFoundError) as exc:
        errors.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    options.serve_metrics(metrics_port, metrics, log)
    count = options.cycle_counter(cycles, stop.set)

    def after_cycle(report: Any) -> None:
        loop.after_cycle(report)
        count()

    log.info(
        "live: %s from %s, %s forecasts, positioning and events from %s, publishing into %s",
        ",".join(chosen),
        ", ".join(s.name for s in sources),
        model,
        loop.features.side.name if loop.features.side is not None else "the store",
        loop.store_url.split("@")[-1],
    )
    with service_lifecycle("live", stop.set, log.info), contextlib.ExitStack() as stack:
        for source in sources:
            stack.callback(source.close)
        if attach_venue:
            _attach_venue(
                stack, loop, settings.workdir, chosen, venue_api, venue_state, venue_status_port,
                demo_book, log,
            )  # fmt: skip
        ingest.run(stop, until=end, on_cycle=after_cycle)
    last: LivePublication | None = loop.published[-1] if loop.published else None
    if last is None:
        console.print("live: nothing published")
        return
    console.print(
        f"live: {len(loop.published)} batch(es); newest written to "
        f"{live_status_path(settings.workdir)}"
    )
    console.print(json.dumps(last.to_dict()["assets"], indent=1), highlight=False)


def _attach_venue(
    stack: contextlib.ExitStack,
    loop: Any,
    workdir: Path,
    assets: list[str],
    api: str | None,
    state: Path | None,
    status_port: int | None,
    demo_book: bool,
    log: logging.Logger,
) -> None:
    """Register the venue as a consumer of every batch, serving the store itself if needed."""
    from pipelines.live_venue import VenueConsumer

    if api is None:
        from pipelines.served_snapshot import running_api

        api = stack.enter_context(running_api(workdir, store_url=loop.store_url))
        log.info("live: serving the publication store for the venue at %s", api)
    consumer = VenueConsumer(
        state or workdir / "venue", api, assets, demo_book=demo_book, status_port=status_port
    )
    stack.callback(consumer.close)
    loop.add_consumer(consumer)
    log.info(
        "live: the venue consumes every batch from %s (state %s)", api, state or workdir / "venue"
    )
