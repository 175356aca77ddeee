"""The live loop against the exchange emulator over real HTTP, on real data of June 2022.

Acceptance of ``dynamargin live``: 24 accelerated hours publish 24 batches ``ok``; a feed
outage publishes ``stale`` with the reason (never the old multiplier as ``ok``); recovery
backfills and returns to ``ok``; the store then holds exactly the bars the dump path
ingests for the same hours. Every fault costs a log line and a metric, no crash, and no good
bar lands in quarantine. The emulator's clock is paused and advanced an hour at a time, so
every step is exact and the run takes seconds, not a day.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from features.emulator.data import EmulatorMarket
from features.live.ingest import LiveIngest
from features.live.metrics import LiveMetrics
from features.live.venues import VenueEndpoints
from features.store import MarketStore
from models.spec import CalibrationSpec
from pipelines.flows.config import PublishConfig
from pipelines.live_loop import LiveLoop, LivePublication, live_status_path
from pipelines.settings import get_settings
from serving.store import PublicationStore, default_store_url
from tests.features.live_helpers import (
    ASSETS,
    DAY,
    FAST_RETRY,
    HOUR,
    fast_config,
    running_emulator,
    window,
)

pytestmark = pytest.mark.timeout(600)

SETTLE = pd.Timedelta(seconds=5)
HISTORY = pd.Timedelta(days=40)
"""History before the stress day: the baseline's fit and calibration, the policy's reference."""


@pytest.fixture(scope="module")
def history_market(shared_data: Path) -> EmulatorMarket:
    """Real BTC and ETH data from 40 days before 2022-06-13 to the 15th."""
    return EmulatorMarket.from_data(
        shared_data, (DAY - HISTORY).strftime("%Y-%m-%d"), "2022-06-16", list(ASSETS)
    )


@pytest.fixture(scope="module")
def reference_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> MarketStore:
    """What the dump path stores for April..June 2022 (BTC, ETH)."""
    store = MarketStore(tmp_path_factory.mktemp("dump-path") / "store")
    store.ingest_dump(shared_data, ["1h"], list(ASSETS), months=("2022-04", "2022-06"))
    return store


def _loop(url: str, tmp_path: Path) -> tuple[LiveLoop, LiveMetrics, MarketStore]:
    settings = get_settings(tmp_path / "work")
    settings.workdir.mkdir(parents=True, exist_ok=True)
    metrics = LiveMetrics()
    store = MarketStore(settings.store_dir)
    sources = VenueEndpoints.emulator(url).build(
        cache_dir=tmp_path / "cache", metrics=metrics, retry=FAST_RETRY, timeout=0.5
    )
    ingest = LiveIngest(store, sources, list(ASSETS), fast_config(since=DAY - HISTORY), metrics)
    publish = PublishConfig(model="baseline:ewma", history_days=10)
    loop = LiveLoop(settings, ingest, publish, calibration=CalibrationSpec(window_days=10))
    return loop, metrics, store


@pytest.fixture()
def live(
    history_market: EmulatorMarket, tmp_path: Path
) -> Iterator[tuple[LiveLoop, LiveMetrics, MarketStore, object]]:
    with running_emulator(history_market, DAY + SETTLE) as (server, control):
        loop, metrics, store = _loop(server.url, tmp_path)
        yield loop, metrics, store, control
        for source in loop.ingest.sources:
            source.close()


def _hour(loop: LiveLoop, control: object) -> LivePublication:
    control.advance(HOUR)  # type: ignore[attr-defined]
    publication = loop.step_once()
    assert publication is not None
    return publication


def test_a_day_then_an_outage_then_recovery_publishes_ok_stale_ok(
    live: tuple[LiveLoop, LiveMetrics, MarketStore, object],
    reference_store: MarketStore,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop, metrics, store, control = live
    seen: list[LivePublication] = []
    loop.add_consumer(seen.append)
    with caplog.at_level(logging.INFO, logger="dynamargin"):
        first = loop.step_once()  # the bar before the day: history ingested, full build
        assert first is not None and first.bar == DAY - HOUR
        # 1. 24 accelerated hours: 24 batches, every asset ok, only new feature rows computed.
        day = [_hour(loop, control) for _ in range(24)]
        assert [p.bar for p in day] == [DAY + i * HOUR for i in range(24)]
        assert all(p.statuses == {a: "ok" for a in ASSETS} for p in day), [p.statuses for p in day]
        assert all(p.source == "baseline:ewma" for p in day)
        # One new row per asset; two after a funding event stamped at the close.
        assert all(p.new_feature_rows in (len(ASSETS), 2 * len(ASSETS)) for p in day[1:])
        # 2. BTC's venue answers 503: BTC is published stale with the reason, ETH stays ok.
        control.inject("server_error", asset="BTCUSDT")  # type: ignore[attr-defined]
        before = day[-1].asset("BTCUSDT")
        outage = [_hour(loop, control) for _ in range(3)]
        for publication in outage:
            btc = publication.asset("BTCUSDT")
            assert btc.status == "stale", btc
            assert btc.reason == "fallback_stale"
            assert btc.data_status == "stale" and "HTTP 503" in btc.data_reason
            assert btc.multiplier >= before.multiplier  # never relaxed on stale data
            assert publication.asset("ETHUSDT").status == "ok"
        stale_age = outage[-1].asset("BTCUSDT").data_age_seconds
        assert stale_age is not None and stale_age >= 3 * 3600
        # 3. The venue recovers: the missed bars are backfilled and BTC is ok again.
        control.clear()  # type: ignore[attr-defined]
        recovered = _hour(loop, control)
        assert recovered.statuses == {a: "ok" for a in ASSETS}
        assert recovered.asset("BTCUSDT").data_age_seconds == pytest.approx(5.0)
    end = recovered.bar + HOUR
    # Every batch went to the consumers and into the store the API reads, in order.
    assert [p.batch_id for p in seen] == [p.batch_id for p in [first, *day, *outage, recovered]]
    with PublicationStore(default_store_url(loop.settings.workdir), create=False) as served:
        latest = served.latest("BTCUSDT")
        assert latest is not None
        assert latest.snapshot["status"] == "ok"
        assert latest.snapshot["update_id"] == recovered.asset("BTCUSDT").update_id
    status = json.loads(live_status_path(loop.settings.workdir).read_text())
    assert status["batch_id"] == recovered.batch_id
    # The store holds exactly what the dump path ingests for the same hours.
    got = window(store.read_bars("1h", list(ASSETS)), DAY - HISTORY, end)
    expected = window(reference_store.read_bars("1h", list(ASSETS)), DAY - HISTORY, end)
    expected = expected[expected["ts"] >= DAY - HISTORY]
    assert len(got) == len(expected) > 0
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    # Each fault: a log line and a metric; nothing quarantined.
    assert "binance-spot BTCUSDT: stale: " in caplog.text
    assert "BTCUSDT stale" in caplog.text and "HTTP 503" in caplog.text
    assert metrics.value("dynamargin_live_feed_stale_total", feed="binance-spot", asset="BTCUSDT")
    assert metrics.value("dynamargin_live_publications_total", asset="BTCUSDT", status="stale") == 3
    assert (
        metrics.value("dynamargin_live_rows_backfilled_total", feed="binance-spot", asset="BTCUSDT")
        >= 3
    )
    assert not list(store.root.rglob("quarantine/*.csv"))
    assert not list((tmp_path / "work" / "quarantine").rglob("*.csv"))


def test_a_late_bar_is_waited_for_then_published_ok(
    live: tuple[LiveLoop, LiveMetrics, MarketStore, object], caplog: pytest.LogCaptureFixture
) -> None:
    loop, metrics, _store, control = live
    assert loop.step_once() is not None
    control.inject("late_bar", asset="ETHUSDT", delay=120)  # type: ignore[attr-defined]
    control.advance(HOUR)  # type: ignore[attr-defined]
    with caplog.at_level(logging.INFO, logger="dynamargin"):
        assert loop.step_once() is None  # ETH's bar is late: wait, do not publish yet
    assert "waiting for late data of ETHUSDT" in caplog.text
    control.advance(pd.Timedelta(seconds=180))  # type: ignore[attr-defined]
    publication = loop.step_once()
    assert publication is not None and publication.bar == DAY
    assert publication.statuses == {a: "ok" for a in ASSETS}
    assert metrics.value("dynamargin_live_late_bars_total", feed="binance-spot", asset="ETHUSDT")


def test_a_failing_publish_step_is_logged_counted_and_the_loop_goes_on(
    live: tuple[LiveLoop, LiveMetrics, MarketStore, object],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    loop, metrics, _store, control = live
    assert loop.step_once() is not None
    good = loop.store_url
    # A store of the other mode refuses the live publisher (as a misconfiguration would).
    replay = f"sqlite:///{tmp_path / 'replay.db'}"
    PublicationStore(replay, mode="replay").close()
    loop.store_url = replay
    control.advance(HOUR)  # type: ignore[attr-defined]
    with caplog.at_level(logging.INFO, logger="dynamargin"):
        assert loop.step_once() is None
    assert "the previous batch stays served" in caplog.text
    assert metrics.value("dynamargin_live_publish_failures_total", stage="publish") == 1
    loop.store_url = good
    control.advance(HOUR)  # type: ignore[attr-defined]
    publication = loop.step_once()
    assert publication is not None and publication.bar == DAY + HOUR
