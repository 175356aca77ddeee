"""``dynamargin venue``: the liquidation core as a long-lived service on the served snapshots.

It polls the risk API (``--api``), verifies every snapshot against the pinned Ed25519 key,
takes oracle prices from the work dir's market store and runs the health scan and the
waterfall every tick, writing every event to ``<state dir>/events.db``. ``--clock wall``
(default) ticks on the wall clock every ``--poll-interval`` seconds; ``--clock bars`` steps
through the stored bars from ``--start`` to ``--end`` (a rehearsal on past data). A restart
with the same state dir replays the log and continues. SIGTERM or Ctrl-C finishes the
current tick and stops (:func:`pipelines.lifecycle.service_lifecycle`).
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipelines.commands.context import parse_symbols, settings_from

if TYPE_CHECKING:
    from pipelines.venue_rehearsal import Rehearsal
    from venue.clock import VenueClock
    from venue.price_feed import StorePriceFeed

LOG = logging.getLogger("dynamargin.venue")


def register(app: typer.Typer) -> None:
    """Add ``venue``."""
    app.command(name="venue")(venue_command)


def venue_command(
    ctx: typer.Context,
    api: Annotated[str, typer.Option(help="Base URL of `dynamargin serve`.")] = (
        "http://127.0.0.1:8000"
    ),
    assets: Annotated[
        str | None, typer.Option(help="Comma-separated assets (default: all in the store).")
    ] = None,
    state_dir: Annotated[
        Path | None, typer.Option(help="Event log and pinned key (default: the work dir's venue/).")
    ] = None,
    clock: Annotated[str, typer.Option(help="wall (live) or bars (step through stored bars).")] = (
        "wall"
    ),
    start: Annotated[
        str | None, typer.Option(help="--clock bars: first tick (default: 48 bars before the end).")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="--clock bars: last tick (default: the newest bar close).")
    ] = None,
    poll_interval: Annotated[
        float | None, typer.Option(min=0.0, help="Seconds between ticks (wall 10, bars 0).")
    ] = None,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Status endpoint port (0: any free port).")
    ] = 8100,
    trusted_key: Annotated[
        list[str] | None,
        typer.Option(help="Ed25519 key (hex) to trust; default: pin the served key once."),
    ] = None,
    demo_book: Annotated[
        bool, typer.Option(help="Seed the deterministic demo book (venue.demo_book) first.")
    ] = False,
    at_risk_health: Annotated[
        float, typer.Option(min=1.0, help="equity / MM below which a bucket is 'at risk'.")
    ] = 1.5,
    max_ticks: Annotated[int | None, typer.Option(min=1, help="Stop after N ticks.")] = None,
    circuit_breaker: Annotated[
        bool,
        typer.Option(
            help="Run the engine's price bands and volatility halts "
            "(liquidation.circuit_breaker defaults); recorded in the venue's rules."
        ),
    ] = True,
    price_feed: Annotated[
        str,
        typer.Option(
            help="store (spot bar closes) or median (Binance spot, USDT-M and the second "
            "venue's stored bars through the guarded oracle median)."
        ),
    ] = "store",
) -> None:
    """Run the venue: poll signed snapshots, price, scan and liquidate every tick."""
    # Imported here: the venue pulls in the signature stack (eth-account), which every other
    # command would otherwise pay for at start-up.
    from liquidation.circuit_breaker import CircuitBreakerConfig
    from liquidation.errors import LiquidationCoreError
    from pipelines.lifecycle import service_lifecycle
    from pipelines.stores import market_store
    from venue.demo_book import seed_demo_book
    from venue.errors import VenueError
    from venue.loop import run_venue
    from venue.median_feed import store_median_feed
    from venue.metrics import VenueMetrics
    from venue.price_feed import PriceFeed, StorePriceFeed
    from venue.risk_api import RiskApiClient
    from venue.service import TickOutcome, Venue, iso
    from venue.settings import VenueSettings
    from venue.status_http import StatusServer

    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll drowns the rest
    settings = settings_from(ctx)
    store = market_store(settings)
    symbols = tuple(parse_symbols(assets) or store.assets())
    if not symbols:
        _fail(f"the market store {store.root} is empty; ingest bars first")
    try:
        venue_settings = VenueSettings(
            assets=symbols,
            state_dir=state_dir or settings.workdir / "venue",
            trusted_keys=tuple(trusted_key or ()),
            at_risk_health=at_risk_health,
            circuit_breaker=CircuitBreakerConfig() if circuit_breaker else None,
        )
        bars = StorePriceFeed(store, symbols)
        metrics = VenueMetrics()
        if price_feed == "median":
            feed: PriceFeed = store_median_feed(store, symbols, metrics=metrics)
        elif price_feed == "store":
            feed = bars
        else:
            _fail(f"--price-feed must be store or median, got {price_feed!r}")
        venue = Venue(venue_settings, feed, RiskApiClient(api), metrics)
    except (VenueError, LiquidationCoreError) as exc:  # bad settings, an unreadable log
        _fail(f"{type(exc).__name__}: {exc}")
    ticker = _clock(clock, bars, symbols, start, end, venue.engine.state.clock_ms)
    pause = poll_interval if poll_interval is not None else (10.0 if clock == "wall" else 0.0)
    status = StatusServer(
        lambda: venue.status, venue.metrics.render, port=port, in_force=venue.parameters_in_force
    ).start()
    LOG.info("venue: %s on %s; status at %s/status, metrics at %s/metrics; log %s",
             ",".join(symbols), api, status.url, status.url, venue_settings.log_path)  # fmt: skip
    stop = threading.Event()
    seeded = not demo_book

    def on_tick(outcome: TickOutcome) -> None:
        nonlocal seeded
        if not seeded and outcome.prints == 0 and not venue.engine.state.keys:
            LOG.warning("venue: no fresh prices at %s; the demo book waits", iso(outcome.ts_ms))
        elif not seeded:
            prices = {a: q.price for a, q in feed.quotes(outcome.ts_ms).items()}
            count = seed_demo_book(venue.engine, prices, ts=outcome.ts_ms)
            LOG.info("venue: demo book: %d commands applied (0: already in the log)", count)
            seeded = True
            venue.refresh_status(outcome.ts_ms)
        state = venue.status
        LOG.info(
            "venue: tick %s: %d prints, %d liquidation steps; %d at risk, fund %.2f USD",
            iso(outcome.ts_ms), outcome.prints, len(outcome.liquidations),
            len(state["accounts_at_risk"]), state["insurance_fund_usd"],
        )  # fmt: skip

    try:
        with service_lifecycle("venue", stop.set, LOG.info):
            ticks = run_venue(venue, ticker, stop, pause_s=pause, max_ticks=max_ticks,
                              on_tick=on_tick)  # fmt: skip
            LOG.info("venue: %d ticks; state %s at %s (%d events)", ticks,
                     venue.engine.digest(), iso(venue.engine.state.clock_ms),
                     len(venue.engine.log))  # fmt: skip
    finally:
        status.stop()
        venue.close()


def _clock(
    kind: str,
    feed: StorePriceFeed,
    symbols: tuple[str, ...],
    start: str | None,
    end: str | None,
    engine_clock: int,
) -> VenueClock:
    from venue.clock import SteppedClock, WallClock

    if kind == "wall":
        return WallClock()
    if kind != "bars":
        _fail(f"--clock must be wall or bars, got {kind!r}")
    closes = feed.bar_closes(symbols[0])
    if not len(closes):
        _fail(f"no stored bars of {symbols[0]}")
    end_ms = _ms(end) if end else int(closes[-1])
    start_ms = _ms(start) if start else max(int(closes[0]), end_ms - 48 * feed.bar_ms)
    return SteppedClock(start_ms, feed.bar_ms, end_ms, resume_from=engine_clock or None)


def _ms(text: str) -> int:
    import pandas as pd

    stamp = pd.Timestamp(text)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value // 1_000_000)


def _fail(message: str) -> None:
    typer.echo(f"venue: {message}", err=True)
    raise typer.Exit(1)


def print_rehearsal(result: Rehearsal, console: Console) -> None:
    """The demo's venue step: what the served multipliers did to IM and to the accounts at risk."""
    before, after = result.before, result.after
    table = Table(
        title=f"Venue consumed the served batch at {result.published} "
        f"({result.traders} demo traders since {result.start})"
    )
    for column in ("asset", "multiplier: fallback -> served", "traders' IM, USD", "change"):
        table.add_column(column, justify="left" if column == "asset" else "right")
    for asset in sorted(after.multipliers):
        im0, im1 = before.traders_im_usd[asset], after.traders_im_usd[asset]
        change = f"{(im1 / im0 - 1) * 100:+.1f}%" if im0 else "-"
        table.add_row(
            asset,
            f"{before.multipliers[asset]:.3f} -> {after.multipliers[asset]:.3f}",
            f"{im0:,.0f} -> {im1:,.0f}",
            change,
        )
    console.print(table)
    applied = ", ".join(f"{a} #{u}" for a, u, _ in result.poll.applied) or "nothing"
    refused = ", ".join(r.line() for r in result.poll.refusals) or "none"
    console.print(
        f"  before: no snapshot yet, the venue's conservative fallback; applied: {applied}; "
        f"refused: {refused}"
    )
    console.print(
        f"  accounts at risk (equity/MM < {result.at_risk_health:g}): {before.at_risk} -> "
        f"{after.at_risk}; below maintenance: {before.liquidatable} -> {after.liquidatable}; "
        f"waterfall steps on the way: {result.liquidation_steps}; insurance fund "
        f"{result.fund_usd:,.0f} USD"
    )
    console.print(f"  event log {result.log_path} (state {result.status_digest[:16]})")
