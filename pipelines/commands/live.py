"""``dynamargin live``: publish a signed batch after every bar close from live venue data.

Runs :class:`pipelines.live_loop.LiveLoop` until SIGTERM or Ctrl-C
(:func:`pipelines.lifecycle.service_lifecycle`): ingest the closed bars, compute the new
feature rows, forecast with the champion (or a baseline), apply the policy and append the
signed batch to the publication store that ``dynamargin serve`` reads.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape

from features.errors import MarketDataError
from pipelines.commands.context import parse_symbols, settings_from

console = Console()
errors = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add ``live`` to the root app."""
    app.command(name="live")(live)


def live(
    ctx: typer.Context,
    assets: Annotated[
        str, typer.Option(help="Comma-separated symbols, e.g. BTCUSDT,ETHUSDT.")
    ] = "BTCUSDT,ETHUSDT",
    emulator: Annotated[
        str | None,
        typer.Option(help="Base URL of `dynamargin emulate`; every source points there."),
    ] = None,
    venue: Annotated[
        str, typer.Option(help="Second venue: a ccxt exchange id, or 'none'.")
    ] = "bybit",
    dump_url: Annotated[
        str | None, typer.Option(help="Dump root for daily-file backfill ('none' for none).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="First bar for a series the store does not hold (UTC).")
    ] = None,
    lookback_days: Annotated[
        float, typer.Option(min=0.0, help="Default history when --since is not given.")
    ] = 60.0,
    until: Annotated[
        str | None, typer.Option(help="Stop once the venue's clock passes this time (UTC).")
    ] = None,
    cycles: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many ingest cycles.")
    ] = None,
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
    late_grace: Annotated[
        str, typer.Option(help="How long a missing bar is waited for before it is stale.")
    ] = "5min",
    repoll: Annotated[
        float, typer.Option(min=0.01, help="Seconds between cycles while a feed is late/stale.")
    ] = 5.0,
    max_sleep: Annotated[
        float, typer.Option(min=0.01, help="Longest wait between cycles, in seconds.")
    ] = 60.0,
    metrics_port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Serve Prometheus metrics on this port.")
    ] = None,
) -> None:
    """Publish signed multipliers after every bar close from live data, until SIGTERM.

    A late bar is waited for (at most --late-grace); a stale feed publishes ``stale`` with
    the reason in the log and ``<workdir>/live/status.json``; the store the API serves gets
    one batch per close.
    """
    from contracts.timestamps import optional_utc_timestamp
    from features.live.ingest import LiveIngest, LiveIngestConfig
    from features.live.metrics import LiveMetrics
    from features.live.venues import VenueEndpoints
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
    second = None if venue.lower() == "none" else venue.lower()
    stop = threading.Event()
    try:
        publish = PublishConfig(
            model=model,  # type: ignore[arg-type]
            history_days=history_days,
            policy_config=policy_config,
        )
        if emulator is not None:
            endpoints = VenueEndpoints.emulator(emulator, second_venue=second)
        else:
            endpoints = VenueEndpoints(second_venue=second)
        if dump_url is not None:
            endpoints = endpoints.model_copy(
                update={"dump_url": None if dump_url.lower() == "none" else dump_url}
            )
        config = LiveIngestConfig(
            since=optional_utc_timestamp(since),
            lookback=pd.Timedelta(days=lookback_days),
            late_grace=pd.Timedelta(late_grace),
            repoll_seconds=repoll,
            max_sleep_seconds=max_sleep,
        )
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
        )
        end = optional_utc_timestamp(until)
    except (MarketDataError, ValueError) as exc:
        errors.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    if metrics_port is not None:
        from prometheus_client import start_http_server

        server, _ = start_http_server(metrics_port, addr="127.0.0.1", registry=metrics.registry)
        log.info("metrics on http://127.0.0.1:%d/metrics", server.server_port)
    done = [0]

    def after_cycle(report: Any) -> None:
        loop.after_cycle(report)
        done[0] += 1
        if cycles is not None and done[0] >= cycles:
            stop.set()

    log.info(
        "live: %s from %s, %s forecasts, publishing into %s",
        ",".join(chosen),
        ", ".join(s.name for s in sources),
        model,
        loop.store_url.split("@")[-1],
    )
    with service_lifecycle("live", stop.set, log.info):
        try:
            ingest.run(stop, until=end, on_cycle=after_cycle)
        finally:
            for source in sources:
                source.close()
    last: LivePublication | None = loop.published[-1] if loop.published else None
    if last is None:
        console.print("live: nothing published")
        return
    console.print(
        f"live: {len(loop.published)} batch(es); newest written to "
        f"{live_status_path(settings.workdir)}"
    )
    console.print(json.dumps(last.to_dict()["assets"], indent=1), highlight=False)
