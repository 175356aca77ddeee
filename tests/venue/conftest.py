"""Fixtures of the venue tests: a synthetic market store, signed publications, a real API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import tests.api.live_server as live_server_module
from features.store import MarketStore
from features.synthetic import SyntheticMarketConfig, generate_market
from tests.api.api_seeding import seed_store
from tests.api.live_server import LiveServer, live_server
from venue.price_feed import StorePriceFeed

ASSETS = ("BNBUSDT", "BTCUSDT", "ETHUSDT")
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class World:
    """A work dir with a market store and keys; ``end`` is the newest bar close."""

    workdir: Path
    store: MarketStore
    end: datetime

    @property
    def end_ms(self) -> int:
        return int(self.end.timestamp() * 1000)

    def feed(self) -> StorePriceFeed:
        return StorePriceFeed(self.store, ASSETS)

    def publish(self, at: datetime, batches: int = 1) -> None:
        """Publish real signed batches (``publish_batch``), the last one at ``at``."""
        seed_store(self.workdir, ASSETS, batches=batches, end=at, step=timedelta(hours=1)).close()


def make_world(workdir: Path, seed: int = 11, days: int = 10) -> World:
    market = generate_market(
        SyntheticMarketConfig(n_assets=len(ASSETS), assets=list(ASSETS), days=days, seed=seed)
    )
    store = MarketStore(workdir / "store")
    store.ingest_market(market)
    closes = StorePriceFeed(store, ASSETS).bar_closes(ASSETS[0])
    end = datetime.fromtimestamp(int(closes[-1]) / 1000, UTC)
    return World(workdir, store, end)


@pytest.fixture(autouse=True)
def patient_server_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests start several servers and venues at once: allow a slow start on 2 cores."""
    monkeypatch.setattr(live_server_module, "STARTUP_DEADLINE_S", 120.0)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path / "work")


@pytest.fixture
def served(world: World) -> Iterator[tuple[World, LiveServer]]:
    """One batch published at the market's end, served by a real ``dynamargin serve``."""
    world.publish(world.end)
    with live_server(world.workdir) as server:
        yield world, server
