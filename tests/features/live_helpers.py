"""Helpers for the live-source tests: an emulator over real data, a dump-path reference store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from features.emulator.clock import SimulatedClock
from features.emulator.context import EmulatorContext
from features.emulator.control import EmulatorControl
from features.emulator.data import EmulatorMarket
from features.emulator.server import EmulatorServer
from features.live.ingest import LiveIngestConfig
from features.sources.retry import RetryPolicy
from features.store import MarketStore

DAY = pd.Timestamp("2022-06-13", tz="UTC")
"""A stress day with every feed present for BTC and ETH (spot, perp, funding)."""
ASSETS = ("BTCUSDT", "ETHUSDT")
HOUR = pd.Timedelta(hours=1)
FAST_RETRY = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05, jitter=0.5)


@contextmanager
def running_emulator(
    market: EmulatorMarket,
    start: pd.Timestamp,
    *,
    speed: float = 1.0,
    paused: bool = True,
    dump_delay: pd.Timedelta = HOUR,
) -> Iterator[tuple[EmulatorServer, EmulatorControl]]:
    """The emulator on a free port, with a client of its control endpoints."""
    context = EmulatorContext(
        market, SimulatedClock(start, speed, paused=paused), dump_publish_delay=dump_delay
    )
    with EmulatorServer(context) as server:
        yield server, EmulatorControl(server.url)


def fast_config(**changes: object) -> LiveIngestConfig:
    """Runner knobs for tests: start at ``DAY``, re-poll and sleep briefly."""
    base: dict[str, object] = {
        "since": DAY,
        "repoll_seconds": 0.05,
        "max_sleep_seconds": 0.5,
    }
    base.update(changes)
    return LiveIngestConfig(**base)  # type: ignore[arg-type]


def dump_path_store(root: Path, shared_data: Path, assets: tuple[str, ...] = ASSETS) -> MarketStore:
    """The store the dump path fills from ``../shared/data`` for June 2022."""
    store = MarketStore(root)
    store.ingest_dump(shared_data, ["1h"], list(assets), months=("2022-06", "2022-06"))
    store.ingest_perp_dir(shared_data, "1h", list(assets))
    return store


def window(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Rows with ``start <= ts < end``, sorted by asset and time, index reset."""
    rows = frame[(frame["ts"] >= start) & (frame["ts"] < end)]
    rows = rows.assign(asset=rows["asset"].astype(str))
    return rows.sort_values(["asset", "ts"]).reset_index(drop=True)
