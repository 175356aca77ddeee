"""``dynamargin emulate``: the local exchange emulator as a long-running dev service."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from contracts.timestamps import utc_timestamp
from features.emulator.clock import SimulatedClock
from features.emulator.context import EmulatorContext
from features.emulator.data import EmulatorMarket
from features.emulator.faults import Fault
from features.emulator.server import EmulatorServer
from features.errors import MarketDataError
from pipelines.commands.context import parse_symbols, settings_from
from pipelines.lifecycle import service_lifecycle

console = Console()
errors = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add ``emulate`` to the root app."""
    app.command(name="emulate")(emulate)


def emulate(
    ctx: typer.Context,
    data: Annotated[
        Path | None,
        typer.Option(help="Data root laid out like ../shared/data (default: the shared data)."),
    ] = None,
    synthetic: Annotated[
        bool, typer.Option("--synthetic", help="Serve the synthetic market instead of data.")
    ] = False,
    assets: Annotated[
        str | None, typer.Option(help="Comma-separated symbols (default: all with data).")
    ] = None,
    start: Annotated[
        str, typer.Option(help="Simulated time at start (UTC).")
    ] = "2021-05-18T00:00:00Z",
    speed: Annotated[
        float, typer.Option(min=0.001, help="Simulated seconds per real second (3600: 1 h/s).")
    ] = 3600.0,
    hour_every: Annotated[
        float | None,
        typer.Option(min=0.001, help="Real seconds per simulated hour (overrides --speed)."),
    ] = None,
    paused: Annotated[
        bool, typer.Option(help="Start with the clock stopped (move it via /_emulator/clock).")
    ] = False,
    history_days: Annotated[
        int, typer.Option(min=0, help="Days of data served before --start.")
    ] = 30,
    days: Annotated[int, typer.Option(min=1, help="Days of data served from --start.")] = 7,
    synthetic_assets: Annotated[int, typer.Option(min=1, help="Synthetic assets.")] = 3,
    seed: Annotated[int, typer.Option(min=0, help="Synthetic market seed.")] = 7,
    interval: Annotated[str, typer.Option("--interval", "-i", help="Bar interval.")] = "1h",
    dump_delay: Annotated[
        str, typer.Option(help="Simulated delay after a day's end before its dump file appears.")
    ] = "1h",
    fault: Annotated[
        list[str] | None,
        typer.Option(help='A fault as JSON, e.g. \'{"kind": "rate_limit", "times": 2}\' (repeat).'),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: a free one).")] = 8900,
    url_file: Annotated[
        Path | None, typer.Option(help="Write the base URL here once serving (for scripts).")
    ] = None,
) -> None:
    """Serve market data in Binance, Bybit and dump formats on an accelerable clock.

    Binance spot and USDT-M answer at the root (``/api/v3/...``, ``/fapi/v1/...``), Bybit v5
    under ``/bybit``, the public dump's daily files under ``/dump``; ``/_emulator/...``
    moves the clock and injects faults. SIGTERM or Ctrl-C stops it cleanly.
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    settings = settings_from(ctx)
    if hour_every is not None:
        speed = 3600.0 / hour_every
    begin = utc_timestamp(start)
    chosen = parse_symbols(assets)
    root = data or settings.shared_data
    try:
        faults = [Fault.model_validate(json.loads(text)) for text in fault or []]
        publish_delay = pd.Timedelta(dump_delay)
        if synthetic or not (root / "binance").is_dir():
            if not synthetic:
                errors.print(f"no data under {escape(str(root))}: serving the synthetic market")
            market = EmulatorMarket.synthetic(
                begin - pd.Timedelta(days=history_days),
                history_days + days,
                n_assets=synthetic_assets,
                seed=seed,
                interval=interval,
            )
        else:
            market = EmulatorMarket.from_data(
                root,
                begin - pd.Timedelta(days=history_days),
                begin + pd.Timedelta(days=days),
                chosen,
                interval,
            )
    except (MarketDataError, FileNotFoundError, ValueError, ValidationError) as exc:
        errors.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from exc
    context = EmulatorContext(
        market, SimulatedClock(begin, speed, paused=paused), dump_publish_delay=publish_delay
    )
    for item in faults:
        context.faults.add(item, context.clock.now(), market.step)
    stopped = threading.Event()

    def log(line: str) -> None:
        errors.print(escape(line), soft_wrap=True)

    with service_lifecycle("emulate", stopped.set, log):
        server = EmulatorServer(context, host, port).start()
        try:
            console.print(
                f"[bold]dynamargin emulator[/] on {server.url}: Binance spot and USDT-M at /, "
                f"Bybit v5 at /bybit, dump daily files at /dump, control at /_emulator; "
                f"{escape(market.source)}; clock {begin.isoformat()} x{speed:g}"
                + (" (paused)" if paused else ""),
                soft_wrap=True,
            )
            if url_file is not None:
                url_file.parent.mkdir(parents=True, exist_ok=True)
                url_file.write_text(server.url + "\n")
            while not stopped.wait(0.5):
                pass
        finally:
            server.stop()
