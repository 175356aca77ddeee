"""Live sources against the exchange emulator over real HTTP: formats, closure, faults.

No HTTP client is mocked: Binance REST goes through httpx, the second venue through ccxt's
own ``bybit`` client (requests), the dump's daily files through the dump downloader, all to
a real uvicorn server serving the real data of ``../shared/data``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
import pytest

from features.emulator.data import EmulatorMarket
from features.errors import SourceRequestError, SourceUnavailableError
from features.live.metrics import LiveMetrics
from features.sources.binance import parse_kline_rows
from features.sources.binance_rest import FUNDING_FEED, SPOT_FEED, USDM_FEED, BinanceRestSource
from features.sources.ccxt_venue import CcxtSource
from features.sources.dump_daily import DUMP_FEED, DumpDailySource
from features.sources.request_weight import RequestWeightLimiter
from features.sources.retry import RetryPolicy, retry_after_seconds
from features.sources.venue_clock import VenueClock
from features.store import MarketStore
from features.validation import validate_bars, validate_funding
from tests.features.live_helpers import DAY, FAST_RETRY, running_emulator, window

H = pd.Timedelta(hours=1)
BARS = ["ts", "asset", "open", "high", "low", "close", "volume"]
FLOW = ["quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume"]


def _binance(url: str, metrics: LiveMetrics | None = None, **kwargs: object) -> BinanceRestSource:
    return BinanceRestSource(url, url, retry=FAST_RETRY, metrics=metrics, **kwargs)  # type: ignore[arg-type]


# --- formats: the live path gives the dump path's values --------------------------------


def test_binance_spot_perp_and_funding_equal_the_dump_path(
    live_market: EmulatorMarket, reference_store: MarketStore
) -> None:
    now = DAY + 6 * H + pd.Timedelta(seconds=5)
    with running_emulator(live_market, now) as (server, _):
        source = _binance(server.url)
        assert source.sync_time() == now
        spot = source.fetch(SPOT_FEED, "BTCUSDT", DAY, DAY + 6 * H)
        perp = source.fetch(USDM_FEED, "BTCUSDT", DAY, DAY + 6 * H)
        funding = source.fetch(FUNDING_FEED, "BTCUSDT", DAY - 24 * H, now)
        source.close()
    clean, report = validate_bars(spot.frame, "1h")
    assert report.quarantine.empty and len(clean) == 6
    expected = window(reference_store.read_bars("1h", ["BTCUSDT"]), DAY, DAY + 6 * H)
    pd.testing.assert_frame_equal(window(clean, DAY, DAY + 6 * H), expected, check_dtype=False)
    clean_perp, _ = validate_bars(perp.frame, "1h", dataset="perp", flow_optional=True)
    expected_perp = window(reference_store.read_perp("1h", ["BTCUSDT"]), DAY, DAY + 6 * H)
    pd.testing.assert_frame_equal(
        window(clean_perp, DAY, DAY + 6 * H)[BARS], expected_perp[BARS], check_dtype=False
    )
    assert clean_perp[FLOW].isna().all().all()  # the perp files have no flow: unknown, not 0
    clean_funding, _ = validate_funding(funding.frame)
    expected_funding = window(reference_store.read_funding(["BTCUSDT"]), DAY - 24 * H, now)
    pd.testing.assert_frame_equal(
        window(clean_funding, DAY - 24 * H, now), expected_funding, check_dtype=False
    )
    assert len(clean_funding) == 4  # 8-hourly, the 00:00 settlement included


def test_ccxt_second_venue_gives_the_perp_series(
    live_market: EmulatorMarket, reference_store: MarketStore
) -> None:
    now = DAY + 5 * H + pd.Timedelta(seconds=1)
    with running_emulator(live_market, now) as (server, _):
        source = CcxtSource("bybit", api_url=server.url + "/bybit", retry=FAST_RETRY)
        assert source.sync_time() == now
        bars_feed, funding_feed = source.feeds
        assert source.listed(bars_feed) == {"BTCUSDT", "ETHUSDT"}  # SOL has no perp in 2022
        bars = source.fetch(bars_feed, "ETHUSDT", DAY - 48 * H, DAY + 10 * H)
        funding = source.fetch(funding_feed, "ETHUSDT", DAY - 24 * H, now)
        source.close()
    assert bars.unclosed == 1  # the bar forming at 05:00 was offered and dropped
    assert bars.frame["asset"].unique().tolist() == ["ETHUSDT@BYBIT"]
    got = bars.frame.assign(asset="ETHUSDT")
    expected = window(reference_store.read_perp("1h", ["ETHUSDT"]), DAY - 48 * H, DAY + 5 * H)
    assert len(expected) == 53
    pd.testing.assert_frame_equal(
        window(got, DAY - 48 * H, DAY + 5 * H)[BARS], expected[BARS], check_dtype=False
    )
    expected_funding = window(reference_store.read_funding(["ETHUSDT"]), DAY - 24 * H, now)
    got_funding = funding.frame.assign(asset="ETHUSDT")[["ts", "asset", "funding_rate"]]
    pd.testing.assert_frame_equal(
        window(got_funding, DAY - 24 * H, now), expected_funding, check_dtype=False
    )


def test_dump_daily_files_backfill_the_same_bars(
    live_market: EmulatorMarket, reference_store: MarketStore, tmp_path: Path
) -> None:
    now = DAY + 26 * H  # 2022-06-14 02:00: the file of 06-13 is out (1 h after the day)
    with running_emulator(live_market, now) as (server, _):
        binance = _binance(server.url)
        binance.sync_time()
        dump = DumpDailySource(tmp_path / "cache", server.url + "/dump", clock=binance.clock)
        batch = dump.fetch(DUMP_FEED, "SOLUSDT", DAY - 24 * H, now)
        again = dump.fetch(DUMP_FEED, "SOLUSDT", DAY - 24 * H, now)  # from the verified cache
        binance.close()
    assert len(batch.frame) == 48 and batch.rejected.empty
    clean, _ = validate_bars(batch.frame, "1h")
    expected = window(reference_store.read_bars("1h", ["SOLUSDT"]), DAY - 24 * H, DAY + 24 * H)
    pd.testing.assert_frame_equal(window(clean, DAY - 24 * H, now), expected, check_dtype=False)
    assert len(again.frame) == 48
    cached = sorted(p.name for p in (tmp_path / "cache").rglob("*.zip"))
    assert cached == ["SOLUSDT-1h-2022-06-12.zip", "SOLUSDT-1h-2022-06-13.zip"]


def test_a_day_not_yet_published_is_not_fetched(
    live_market: EmulatorMarket, tmp_path: Path
) -> None:
    now = DAY + 24 * H + pd.Timedelta(minutes=30)  # 06-13 ended, its file not out for 1 h
    with running_emulator(live_market, now) as (server, _):
        binance = _binance(server.url)
        binance.sync_time()
        dump = DumpDailySource(tmp_path / "cache", server.url + "/dump", clock=binance.clock)
        batch = dump.fetch(DUMP_FEED, "BTCUSDT", DAY, now)
        binance.close()
    assert batch.frame.empty


# --- closure and clocks -----------------------------------------------------------------


def test_a_bar_is_ingested_only_once_closed_on_the_venue_clock(
    live_market: EmulatorMarket,
) -> None:
    # The local clock says 202x; the venue says 2022-06-13 03:30. Only the venue counts.
    now = DAY + 3 * H + pd.Timedelta(minutes=30)
    metrics = LiveMetrics()
    with running_emulator(live_market, now) as (server, _):
        source = _binance(server.url, metrics)
        source.sync_time()
        batch = source.fetch(SPOT_FEED, "BTCUSDT", DAY, DAY + 10 * H)
        source.close()
    assert batch.frame["ts"].max() == DAY + 2 * H  # 03:00 is still forming
    assert batch.unclosed == 1
    assert metrics.value("dynamargin_live_unclosed_bars_dropped_total", feed="binance-spot") == 1


def test_venue_clock_follows_an_accelerated_venue(live_market: EmulatorMarket) -> None:
    with running_emulator(live_market, DAY, speed=3600.0, paused=False) as (server, _):
        source = _binance(server.url)
        first = source.sync_time()
        time.sleep(0.3)
        second = source.sync_time()
        source.close()
    assert second > first
    assert 2000 < source.clock.rate < 5500  # ~3600 venue seconds per local second
    wait = source.clock.local_seconds_until(second + pd.Timedelta(hours=1))
    assert 0.5 < wait < 2.0


def test_venue_clock_rate_offset_and_stopped_clock() -> None:
    ticks = iter([0.0, 10.0, 10.0, 20.0, 20.0])
    clock = VenueClock(monotonic=lambda: next(ticks))
    with pytest.raises(RuntimeError, match="never synced"):
        clock.observed  # noqa: B018
    clock.observe(1_000_000, sent=0.0, received=0.0)
    clock.observe(1_000_000, sent=10.0, received=10.0)  # a paused venue
    assert clock.rate == 0.0
    assert clock.local_seconds_until(pd.Timestamp(2_000_000, unit="ms", tz="UTC")) == float("inf")


# --- faults: retried with backoff, Retry-After honoured, logged and counted -------------


@pytest.mark.parametrize(
    ("fault", "reason", "logged"),
    [
        ({"kind": "rate_limit", "retry_after": 0.2, "times": 2}, "rate_limited", "HTTP 429"),
        ({"kind": "server_error", "times": 2}, "server_error", "HTTP 503"),
        ({"kind": "timeout", "delay": 1.5, "times": 1}, "timeout", "timeout"),
    ],
    ids=["429", "5xx", "timeout"],
)
def test_transient_faults_are_retried_logged_and_counted(
    live_market: EmulatorMarket,
    caplog: pytest.LogCaptureFixture,
    fault: dict[str, object],
    reason: str,
    logged: str,
) -> None:
    now = DAY + 2 * H
    metrics = LiveMetrics()
    with running_emulator(live_market, now) as (server, control):
        source = _binance(server.url, metrics, timeout=0.5)
        source.sync_time()
        control.inject(endpoint="/api/v3/klines", asset="BTCUSDT", **fault)  # type: ignore[arg-type]
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="dynamargin.live.sources"):
            batch = source.fetch(SPOT_FEED, "BTCUSDT", DAY, now)
        elapsed = time.monotonic() - started
        source.close()
    assert len(batch.frame) == 2
    times = int(fault["times"])  # type: ignore[arg-type]
    assert (
        metrics.value(
            "dynamargin_live_retries_total",
            source="binance-spot",
            endpoint="/api/v3/klines",
            reason=reason,
        )
        == times
    )
    assert logged in caplog.text and "retry 1/2" in caplog.text
    if reason == "rate_limited":
        assert "Retry-After 0.2 s" in caplog.text
        assert elapsed >= 0.4  # waited what the venue asked, twice
        waited = metrics.value(
            "dynamargin_live_rate_limit_wait_seconds_total", source="binance-spot"
        )
        assert waited >= 0.4


def test_a_persistent_outage_raises_our_error_with_the_request_and_the_cause(
    live_market: EmulatorMarket, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = LiveMetrics()
    with running_emulator(live_market, DAY + 2 * H) as (server, control):
        source = _binance(server.url, metrics)
        source.sync_time()
        control.inject("server_error", asset="ETHUSDT", status=502)
        with caplog.at_level(logging.ERROR), pytest.raises(SourceUnavailableError) as error:
            source.fetch(SPOT_FEED, "ETHUSDT", DAY, DAY + 2 * H)
        ok = source.fetch(SPOT_FEED, "BTCUSDT", DAY, DAY + 2 * H)  # other assets unaffected
        source.close()
    message = str(error.value)
    assert "binance-spot GET /api/v3/klines ETHUSDT" in message
    assert "HTTP 502" in message and "after 3 attempt(s)" in message
    assert "giving up after 3 attempts" in caplog.text
    assert len(ok.frame) == 2
    failures = metrics.value(
        "dynamargin_live_request_failures_total", source="binance-spot", endpoint="/api/v3/klines"
    )
    assert failures == 1


def test_a_refused_request_is_not_retried(live_market: EmulatorMarket) -> None:
    metrics = LiveMetrics()
    with running_emulator(live_market, DAY) as (server, _):
        source = _binance(server.url, metrics)
        source.sync_time()
        with pytest.raises(SourceRequestError, match=r"HTTP 400 \(code -1121: Invalid symbol.\)"):
            source.fetch(SPOT_FEED, "NOPEUSDT", DAY - 2 * H, DAY)
        source.close()
    assert (
        metrics.value(
            "dynamargin_live_requests_total",
            source="binance-spot",
            endpoint="/api/v3/klines",
            outcome="http_400",
        )
        == 1
    )
    retries = metrics.registry.get_sample_value(
        "dynamargin_live_retries_total",
        {"source": "binance-spot", "endpoint": "/api/v3/klines", "reason": "server_error"},
    )
    assert retries is None


def test_ccxt_venue_rate_limit_and_outage_are_retried(
    live_market: EmulatorMarket, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = LiveMetrics()
    now = DAY + 3 * H
    with running_emulator(live_market, now) as (server, control):
        source = CcxtSource(
            "bybit", api_url=server.url + "/bybit", retry=FAST_RETRY, metrics=metrics
        )
        source.sync_time()
        bars_feed = source.feeds[0]
        control.inject("rate_limit", endpoint="/bybit/v5/market/kline", retry_after=0.2, times=1)
        control.inject("server_error", endpoint="/bybit/v5/market/kline", times=1)
        with caplog.at_level(logging.WARNING, logger="dynamargin.live.sources"):
            batch = source.fetch(bars_feed, "BTCUSDT", DAY, now)
        source.close()
    assert len(batch.frame) == 3
    for reason in ("rate_limited", "server_error"):
        assert (
            metrics.value(
                "dynamargin_live_retries_total",
                source="bybit",
                endpoint="fetch_ohlcv",
                reason=reason,
            )
            == 1
        )
    assert "rate limited" in caplog.text and "Retry-After" in caplog.text
    assert "unavailable" in caplog.text


def test_the_venue_weight_header_and_budget_pace_requests(live_market: EmulatorMarket) -> None:
    with running_emulator(live_market, DAY + 2 * H) as (server, _):
        source = _binance(server.url)
        source.sync_time()
        source.listed(SPOT_FEED)  # exchangeInfo: weight 20, and the venue's limit
        source.fetch(SPOT_FEED, "BTCUSDT", DAY, DAY + 2 * H)
        source.close()
    limiter = source.spot.limiter
    assert limiter is not None and limiter.limit == 6000
    # The venue counted time (1) + exchangeInfo (20) + klines (2); the limiter adopted that.
    assert limiter._used >= 23


def test_request_weight_limiter_waits_for_the_next_window_and_honours_bans() -> None:
    now = [30.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RequestWeightLimiter(100, headroom=0.5, wallclock=lambda: now[0], sleep=sleep)
    assert limiter.acquire(40) == 0.0
    assert limiter.acquire(10) == 0.0  # 50 = the budget
    assert limiter.acquire(5) == pytest.approx(30.0)  # the minute ends at 60
    limiter.observe_used(49)  # the venue counted more than we did
    assert limiter.acquire(2) == pytest.approx(60.0)
    limiter.block_for(7.5)
    assert limiter.acquire(1) == pytest.approx(7.5)
    with pytest.raises(ValueError, match="headroom"):
        RequestWeightLimiter(10, headroom=0.0)


def test_retry_policy_jitter_and_retry_after() -> None:
    policy = RetryPolicy(backoff=1.0, max_backoff=8.0, jitter=0.5)
    import random

    rng = random.Random(3)
    waits = [policy.wait(3, None, rng) for _ in range(200)]
    assert all(2.0 <= w <= 4.0 for w in waits) and len(set(waits)) > 100
    assert policy.wait(3, retry_after=9.0) == 9.0
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("nonsense") is None
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=1.5)


def test_rest_kline_rows_share_the_dump_parser_and_its_rejections() -> None:
    rows = [
        [1655078400000, "1", "2", "0.5", "1.5", "10", 1655081999999, "15", 7, "4", "6", "0"],
        ["not-a-time", "1", "2", "0.5", "1.5", "10", 0, "15", 7, "4", "6", "0"],
        [1655082000000, "1", "2"],
        [1655085600000, "x", "2", "0.5", "1.5", "10", 0, "15", 7, "4", "6", "0"],
    ]
    frame, rejected = parse_kline_rows(rows, "BTCUSDT", "GET /api/v3/klines")
    assert frame["source_row"].tolist() == [1, 4]
    assert sorted(rejected["reason"]) == [
        "3 fields, expected 12",
        "open_time is neither epoch milliseconds nor microseconds",
    ]
    clean, report = validate_bars(frame, "1h")
    assert len(clean) == 1  # the unparseable open price is quarantined by validation
    assert report.quarantine["reason"].str.contains("non-finite open").all()
