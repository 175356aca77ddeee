"""The live ingest runner against the emulator: the accelerated day, outages, every fault.

Each fault test drives the emulator's clock bar by bar (paused clock, ``advance``) and runs
cycles by hand, so the outcome is exact; the acceptance run uses the runner's own loop on an
accelerated clock. The reference is always what the dump path stores for the same hours.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from features.emulator.control import EmulatorControl
from features.emulator.data import EmulatorMarket
from features.errors import ConflictingDuplicateError
from features.live.freshness import freshness_path, read_freshness
from features.live.ingest import CycleReport, LiveIngest
from features.live.metrics import LiveMetrics
from features.live.venues import VenueEndpoints
from features.market import MarketData
from features.store import MarketStore
from tests.features.live_helpers import (
    ASSETS,
    DAY,
    FAST_RETRY,
    fast_config,
    running_emulator,
    window,
)

H = pd.Timedelta(hours=1)
SETTLE = pd.Timedelta(seconds=5)


def _runner(
    url: str,
    store: MarketStore,
    tmp_path: Path,
    assets: tuple[str, ...] = ASSETS,
    *,
    dump: bool = False,
    **config: object,
) -> tuple[LiveIngest, LiveMetrics]:
    metrics = LiveMetrics()
    sources = VenueEndpoints.emulator(url, dump=dump).build(
        cache_dir=tmp_path / "cache", metrics=metrics, retry=FAST_RETRY, timeout=0.5
    )
    return LiveIngest(store, sources, list(assets), fast_config(**config), metrics), metrics


def _assert_matches_dump_path(
    store: MarketStore, reference: MarketStore, end: pd.Timestamp, assets: tuple[str, ...] = ASSETS
) -> None:
    """Spot bars, perp bars (both venues) and funding equal the dump path's, hour for hour."""
    got = window(store.read_bars("1h", list(assets)), DAY, end)
    expected = window(reference.read_bars("1h", list(assets)), DAY, end)
    assert len(got) == len(expected) == len(assets) * int((end - DAY) / H)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    perp = window(reference.read_perp("1h", list(assets)), DAY, end)
    pd.testing.assert_frame_equal(
        window(store.read_perp("1h", list(assets)), DAY, end), perp, check_dtype=False
    )
    second = store.read_perp("1h", [f"{a}@BYBIT" for a in assets])
    second = second.assign(asset=second["asset"].str.removesuffix("@BYBIT"))
    columns = ["ts", "asset", "open", "high", "low", "close", "volume"]
    pd.testing.assert_frame_equal(
        window(second, DAY, end)[columns], perp[columns], check_dtype=False
    )
    funding = window(reference.read_funding(list(assets)), DAY, end)
    pd.testing.assert_frame_equal(
        window(store.read_funding(list(assets)), DAY, end), funding, check_dtype=False
    )


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


# --- acceptance: 24 accelerated hours, an outage, recovery, nothing lost or doubled -----


def test_accelerated_day_then_outage_then_backfill_matches_the_dump_path(
    live_market: EmulatorMarket,
    reference_store: MarketStore,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MarketStore(tmp_path / "store")
    speed = 4 * 3600.0  # one simulated hour every 0.25 s
    with running_emulator(live_market, DAY, speed=speed, paused=False) as (server, control):
        runner, metrics = _runner(server.url, store, tmp_path)
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
        status = freshness_path(store.root)
        with caplog.at_level(logging.INFO, logger="dynamargin"):
            thread.start()
            try:
                # 1. A day of hourly bars.
                _wait_for(
                    lambda: (
                        all(
                            (r.data_through or DAY) >= DAY + 24 * H
                            for r in read_freshness(status).values()
                        )
                        and len(read_freshness(status)) == 2
                    ),
                    60,
                    "24 bars per asset",
                )
                day = store.read_bars("1h", list(ASSETS), DAY, DAY + 24 * H)
                assert day.groupby("asset").size().to_dict() == {a: 24 for a in ASSETS}
                # 2. BTC's venue answers 503 to everything: stale, with the reason.
                control.inject("server_error", asset="BTCUSDT")
                _wait_for(
                    lambda: read_freshness(status)["BTCUSDT"].status == "stale",
                    30,
                    "BTC stale",
                )
                outage = read_freshness(status)
                assert "HTTP 503" in outage["BTCUSDT"].reason
                assert outage["ETHUSDT"].status == "ok"
                stale_through = outage["BTCUSDT"].data_through
                assert stale_through is not None
                _wait_for(lambda: control.now() > stale_through + 4 * H, 30, "4 hours of outage")
                # 3. The venue recovers: the missed hours are backfilled and BTC is ok again.
                control.clear()
                recovered_at = control.now()
                _wait_for(
                    lambda: (
                        read_freshness(status)["BTCUSDT"].status == "ok"
                        and read_freshness(status)["BTCUSDT"].data_through
                        >= recovered_at.floor("h")
                    ),
                    30,
                    "BTC ok again",
                )
                control.set_clock(paused=True)
                time.sleep(0.6)  # let a cycle in flight finish on the paused clock
            finally:
                stop.set()
                thread.join(30)
    assert not thread.is_alive()
    last = read_freshness(status)
    end = min(r.data_through for r in last.values())
    assert end >= stale_through + 4 * H
    _assert_matches_dump_path(store, reference_store, end)
    assert (
        metrics.value("dynamargin_live_feed_stale_total", feed="binance-spot", asset="BTCUSDT") >= 1
    )
    assert (
        metrics.value("dynamargin_live_rows_backfilled_total", feed="binance-spot", asset="BTCUSDT")
        >= 4
    )
    assert "binance-spot BTCUSDT: stale: " in caplog.text
    assert "binance-spot BTCUSDT: recovered" in caplog.text
    assert not list((tmp_path / "store" / "quarantine").rglob("*.csv"))  # no good bar rejected


# --- each fault, bar by bar ------------------------------------------------------------


Stepped = tuple[
    LiveIngest, LiveMetrics, EmulatorControl, MarketStore, Callable[[float], CycleReport]
]


@pytest.fixture()
def stepped(live_market: EmulatorMarket, tmp_path: Path) -> Iterator[Stepped]:
    """A paused emulator at 2022-06-13 00:00:05, a runner on a fresh store, and a stepper."""
    store = MarketStore(tmp_path / "store")
    with running_emulator(live_market, DAY + SETTLE) as (server, control):
        runner, metrics = _runner(server.url, store, tmp_path)

        def step(hours: float = 1.0) -> CycleReport:
            if hours:
                control.advance(pd.Timedelta(hours=hours))
            return runner.run_cycle()

        yield runner, metrics, control, store, step


def _quarantined(store: MarketStore) -> pd.DataFrame:
    files = sorted((store.root / "quarantine").rglob("*.csv"))
    return pd.concat([pd.read_csv(f) for f in files]) if files else pd.DataFrame()


def test_late_bar_is_waited_for_then_ingested(
    stepped: Stepped, caplog: pytest.LogCaptureFixture
) -> None:
    runner, metrics, control, store, step = stepped
    step(0)
    step(1)
    control.inject("late_bar", endpoint="/api/v3/klines", asset="BTCUSDT", delay=180)
    with caplog.at_level(logging.WARNING, logger="dynamargin.live"):
        report = step(1)  # 02:00:05: the 01:00 bar is 3 min late
    feed = report.freshness["BTCUSDT"].feed("binance-spot")
    assert report.freshness["BTCUSDT"].status == "late" and feed.status == "late"
    assert "bar 2022-06-13 01:00 closed 5 s ago and is not in yet" in feed.reason
    assert report.pending and runner.seconds_until_next_cycle(report) <= 0.05
    assert (
        metrics.value("dynamargin_live_late_bars_total", feed="binance-spot", asset="BTCUSDT") == 1
    )
    assert "re-polling" in caplog.text
    report = step(4 / 60)  # 02:04:05: published at 02:03
    assert report.freshness["BTCUSDT"].status == "ok"
    assert len(store.read_bars("1h", ["BTCUSDT"])) == 2
    assert _quarantined(store).empty


def test_missing_bar_becomes_a_hole_then_is_filled(
    stepped: Stepped, reference_store: MarketStore, caplog: pytest.LogCaptureFixture
) -> None:
    _, metrics, control, store, step = stepped
    step(0)
    step(1)
    control.inject("missing_bar", endpoint="/api/v3/klines", asset="ETHUSDT", times=3)
    step(1)  # 02:00: the forming 01:00 bar is the one that will be missing
    with caplog.at_level(logging.WARNING, logger="dynamargin.live"):
        step(1)  # 03:00: 02:00 is there, 01:00 is not: a hole
        step(1)  # 04:00: still asked for
    assert "bar 2022-06-13T01:00:00+00:00 missing between stored bars" in caplog.text
    assert metrics.value("dynamargin_live_gaps_total", feed="binance-spot", asset="ETHUSDT") == 1
    report = step(1)  # 05:00: the venue serves it again
    assert report.freshness["ETHUSDT"].feed("binance-spot").missing == 0
    assert (
        metrics.value("dynamargin_live_rows_backfilled_total", feed="binance-spot", asset="ETHUSDT")
        >= 1
    )
    _assert_matches_dump_path(store, reference_store, DAY + 5 * H)
    assert _quarantined(store).empty


def test_bad_price_is_quarantined_and_the_good_bar_arrives(
    stepped: Stepped, reference_store: MarketStore, caplog: pytest.LogCaptureFixture
) -> None:
    _, metrics, control, store, step = stepped
    step(0)
    control.inject("bad_price", endpoint="/api/v3/klines", asset="BTCUSDT", times=1)
    with caplog.at_level(logging.WARNING, logger="dynamargin.live"):
        report = step(1)  # 01:00: the 00:00 bar comes with a negative close
    assert "1 row(s) quarantined (non-positive close" in caplog.text
    assert report.freshness["BTCUSDT"].status == "late"
    assert (
        metrics.value(
            "dynamargin_live_rows_quarantined_total", feed="binance-spot", asset="BTCUSDT"
        )
        == 1
    )
    report = step(0)  # the re-poll gets the real bar
    assert report.freshness["BTCUSDT"].status == "ok"
    step(1)
    _assert_matches_dump_path(store, reference_store, DAY + 2 * H)
    rejected = _quarantined(store)
    assert len(rejected) == 1 and rejected["close"].iloc[0] < 0  # only the bad version


def test_stale_feed_then_recovery_with_backfill(
    stepped: Stepped, reference_store: MarketStore, caplog: pytest.LogCaptureFixture
) -> None:
    _, metrics, control, store, step = stepped
    step(0)
    step(1)
    fault = control.inject("stale", endpoint="/fapi", asset="ETHUSDT")
    with caplog.at_level(logging.WARNING, logger="dynamargin.live"):
        for _ in range(3):
            report = step(1)
    assert "binance-usdm ETHUSDT: stale: no bar after 2022-06-13 00:00" in caplog.text
    eth_perp = {"feed": "binance-usdm", "asset": "ETHUSDT"}
    assert metrics.value("dynamargin_live_feed_stale_total", **eth_perp) == 1
    feed = report.freshness["ETHUSDT"].feed("binance-usdm")
    assert feed.status == "stale" and "no bar after 2022-06-13 00:00" in feed.reason
    assert report.freshness["ETHUSDT"].status == "ok"  # perp is optional; spot is fine
    assert "binance-usdm" not in report.freshness["BTCUSDT"].reason
    control.remove(fault)
    report = step(0)
    assert report.freshness["ETHUSDT"].feed("binance-usdm").status == "ok"
    assert (
        metrics.value("dynamargin_live_rows_backfilled_total", feed="binance-usdm", asset="ETHUSDT")
        == 2
    )
    _assert_matches_dump_path(store, reference_store, DAY + 4 * H)
    assert _quarantined(store).empty


def test_full_venue_outage_marks_every_asset_stale_and_nothing_crashes(
    stepped: Stepped, reference_store: MarketStore
) -> None:
    runner, _, control, store, step = stepped
    step(0)
    step(1)
    control.inject("server_error")  # every endpoint, time included
    report = step(1)
    for asset in ASSETS:
        record = report.freshness[asset]
        assert record.status == "stale"
        assert "venue time unavailable" in record.reason and "HTTP 503" in record.reason
    written = read_freshness(freshness_path(store.root))
    assert written["BTCUSDT"].status == "stale"
    control.clear()
    step(2)
    assert all(r.status == "ok" for r in runner.run_cycle().freshness.values())
    _assert_matches_dump_path(store, reference_store, DAY + 4 * H)


def test_a_revised_bar_raises_the_dump_paths_conflict_error_and_keeps_the_store(
    live_market: EmulatorMarket, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = MarketStore(tmp_path / "store")
    with running_emulator(live_market, DAY + 2 * H + SETTLE) as (server, _):
        runner, metrics = _runner(server.url, store, tmp_path)
        runner.run_cycle()
        stored = store.read_bars("1h", ["BTCUSDT"])
        revised = stored[stored["ts"] == DAY + H].assign(volume=lambda f: f["volume"] + 1.0)
        # The library path raises the dump path's error, naming the asset and the bar.
        with pytest.raises(ConflictingDuplicateError, match="asset BTCUSDT bar 2022-06-13 01:00"):
            store.ingest_market(MarketData(bars=revised), source="a revised copy")
        # A store that already holds a different version of a bar the venue serves: the
        # runner's overlap window sees it again.
        other = MarketStore(tmp_path / "other")
        other.write("bars", revised, "1h")
        again, metrics = _runner(server.url, other, tmp_path)
        with caplog.at_level(logging.ERROR, logger="dynamargin.live"):
            report = again.run_cycle()
    feed = report.freshness["BTCUSDT"].feed("binance-spot")
    assert feed.status == "stale" and "conflicting revision, store unchanged" in feed.reason
    assert "ConflictingDuplicate" not in caplog.text  # one clear line, no traceback
    assert "differing in volume" in caplog.text
    assert (
        metrics.value("dynamargin_live_conflicts_total", feed="binance-spot", asset="BTCUSDT") == 1
    )
    kept = other.read_bars("1h", ["BTCUSDT"])
    assert kept["volume"].tolist() == revised["volume"].tolist()  # untouched
    assert report.freshness["ETHUSDT"].status == "ok"  # the other asset goes on


def test_restart_resumes_without_duplicates(
    live_market: EmulatorMarket, reference_store: MarketStore, tmp_path: Path
) -> None:
    store = MarketStore(tmp_path / "store")
    with running_emulator(live_market, DAY + 3 * H + SETTLE) as (server, control):
        first, _ = _runner(server.url, store, tmp_path)
        assert first.run_cycle().rows_added > 0
        control.advance(2 * H)
        second, _ = _runner(server.url, store, tmp_path)
        report = second.run_cycle()
    spot = [f for f in report.fetches if f.feed == "binance-spot"]
    assert {f.asset: f.rows_added for f in spot} == {"BTCUSDT": 2, "ETHUSDT": 2}
    assert {f.start for f in spot} == {DAY + 1 * H}  # the last 2 stored bars, fetched again
    _assert_matches_dump_path(store, reference_store, DAY + 5 * H)
    assert _quarantined(store).empty


def test_oracle_median_from_three_feeds_and_a_guard_where_there_are_too_few(
    live_market: EmulatorMarket, tmp_path: Path
) -> None:
    store = MarketStore(tmp_path / "store")
    with running_emulator(live_market, DAY + 3 * H + SETTLE) as (server, _):
        runner, metrics = _runner(server.url, store, tmp_path, ("BTCUSDT", "SOLUSDT"))
        report = runner.run_cycle()
    btc = report.prices["BTCUSDT"]
    assert not btc.guarded
    assert {v.feed for v in btc.healthy} == {"binance-spot", "binance-usdm", "bybit-linear"}
    closes = [v.price for v in btc.verdicts]
    assert min(closes) <= btc.price <= max(closes)
    sol = report.prices["SOLUSDT"]  # no perpetual in 2022: one feed
    assert sol.guarded and "1 healthy feed(s) of 1, 2 needed" in sol.reason
    assert metrics.value("dynamargin_oracle_guarded_total", asset="SOLUSDT") == 1
    written = read_freshness(freshness_path(store.root))
    assert written["BTCUSDT"].oracle["guarded"] is False  # type: ignore[index]
    assert written["BTCUSDT"].snapshot["open_interest"] > 0  # type: ignore[index]
    assert written["SOLUSDT"].feeds[0].feed == "binance-spot"


def test_dump_daily_backfills_a_series_the_rest_api_cannot_serve(
    live_market: EmulatorMarket, reference_store: MarketStore, tmp_path: Path
) -> None:
    store = MarketStore(tmp_path / "store")
    now = DAY + 26 * H + SETTLE  # 06-14 02:00: the daily file of 06-13 is published
    with running_emulator(live_market, now) as (server, control):
        runner, _ = _runner(server.url, store, tmp_path, ("SOLUSDT",), dump=True)
        control.inject("server_error", endpoint="/api/v3/klines", asset="SOLUSDT")
        report = runner.run_cycle()
    dump = [f for f in report.fetches if f.feed == "binance-dump"]
    assert dump and dump[0].rows_added == 24
    got = window(store.read_bars("1h", ["SOLUSDT"]), DAY, DAY + 24 * H)
    expected = window(reference_store.read_bars("1h", ["SOLUSDT"]), DAY, DAY + 24 * H)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert report.freshness["SOLUSDT"].status == "stale"  # REST is still down for 00:00, 01:00


def test_synthetic_market_mode_matches_the_synthetic_store(tmp_path: Path) -> None:
    market = EmulatorMarket.synthetic(DAY - 2 * pd.Timedelta(days=1), 4, n_assets=2, seed=11)
    reference = MarketStore(tmp_path / "reference")
    from features.synthetic import SyntheticMarketConfig, generate_market

    reference.ingest_market(
        generate_market(
            SyntheticMarketConfig(n_assets=2, days=4, seed=11, start=DAY - pd.Timedelta(days=2))
        )
    )
    store = MarketStore(tmp_path / "store")
    with running_emulator(market, DAY + 6 * H + SETTLE) as (server, _):
        runner, _ = _runner(server.url, store, tmp_path)
        runner.run_cycle()
    got = window(store.read_bars("1h", list(ASSETS)), DAY, DAY + 6 * H)
    expected = window(reference.read_bars("1h", list(ASSETS)), DAY, DAY + 6 * H)
    assert len(got) == 12
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    perp = window(reference.read_perp("1h", list(ASSETS)), DAY, DAY + 6 * H)
    columns = ["ts", "asset", "open", "high", "low", "close", "volume"]
    pd.testing.assert_frame_equal(
        window(store.read_perp("1h", list(ASSETS)), DAY, DAY + 6 * H)[columns],
        perp[columns],
        check_dtype=False,
    )


def test_emulator_control_rejects_bad_faults_clearly(live_market: EmulatorMarket) -> None:
    with running_emulator(live_market, DAY) as (server, control):
        with pytest.raises(ValueError, match=r"HTTP 400.*kind"):
            control.inject("meteor_strike")
        with pytest.raises(ValueError, match=r"HTTP 400.*times"):
            control.inject("rate_limit", times=0)
        assert EmulatorControl(server.url).state()["faults"] == []


@pytest.mark.parametrize(
    ("fault", "reason", "logged"),
    [
        ({"kind": "rate_limit", "retry_after": 0.1, "times": 2}, "rate_limited", "HTTP 429"),
        ({"kind": "server_error", "times": 2}, "server_error", "HTTP 503"),
        ({"kind": "timeout", "delay": 1.0, "times": 1}, "timeout", "timeout"),
    ],
    ids=["429", "5xx", "timeout"],
)
def test_request_faults_cost_a_retry_not_a_bar(
    stepped: Stepped,
    reference_store: MarketStore,
    caplog: pytest.LogCaptureFixture,
    fault: dict[str, object],
    reason: str,
    logged: str,
) -> None:
    _, metrics, control, store, step = stepped
    step(0)
    control.inject(endpoint="/fapi/v1/klines", asset="ETHUSDT", **fault)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="dynamargin.live"):
        report = step(1)
    assert all(r.status == "ok" for r in report.freshness.values())
    assert not report.pending
    assert (
        metrics.value(
            "dynamargin_live_retries_total",
            source="binance-usdm",
            endpoint="/fapi/v1/klines",
            reason=reason,
        )
        == fault["times"]
    )
    assert f"binance-usdm GET /fapi/v1/klines ETHUSDT: {logged}" in caplog.text
    assert _quarantined(store).empty
    _assert_matches_dump_path(store, reference_store, DAY + H)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('{"oops": 1}', "expected a JSON list"),
        ("this is not JSON", "the answer is not JSON"),
        ('[["1655078400000", "1"], null]', "quarantined"),
    ],
    ids=["object", "not-json", "malformed-rows"],
)
def test_a_malformed_venue_answer_is_a_clear_error_not_a_crash(
    tmp_path: Path,
    file_server: Callable[[Path], tuple[str, object]],
    caplog: pytest.LogCaptureFixture,
    answer: str,
    expected: str,
) -> None:
    from features.sources.binance_rest import BinanceRestSource

    venue = tmp_path / "venue" / "api" / "v3"
    venue.mkdir(parents=True)
    (venue / "time").write_text('{"serverTime": 1655085600000}')
    listing = '{"symbols": [{"symbol": "BTCUSDT", "status": "TRADING"}]}'
    (venue / "exchangeInfo").write_text(listing)
    (venue / "klines").write_text(answer)
    url, _ = file_server(tmp_path / "venue")
    store = MarketStore(tmp_path / "store")
    source = BinanceRestSource(url, url, usdm=False, retry=FAST_RETRY)
    runner = LiveIngest(store, [source], ["BTCUSDT"], fast_config())
    with caplog.at_level(logging.WARNING, logger="dynamargin"):
        report = runner.run_cycle()
    record = report.freshness["BTCUSDT"]
    assert record.status == "stale"
    assert expected in record.reason or expected in caplog.text
    assert store.read_bars("1h", ["BTCUSDT"]).empty
    if expected == "quarantined":
        rejected = _quarantined(store)
        assert sorted(rejected["reason"]) == ["2 fields, expected 12", "no fields, expected 12"]
