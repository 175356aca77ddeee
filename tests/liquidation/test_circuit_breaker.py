"""Circuit breakers on real stress hours: which hours halt, and no liquidation during a halt."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from liquidation.circuit_breaker import (
    MINUTE_MS,
    CircuitBreaker,
    CircuitBreakerConfig,
    HaltedError,
    gated_liquidations,
    gated_trade,
)
from liquidation.config import AssetConfig, EngineConfig, OracleGuardConfig
from liquidation.engine import Engine
from liquidation.errors import ConfigError
from liquidation.money import MICRO, qty, usd

HOUR = pd.Timedelta(hours=1)


def hourly_closes(root: Path, symbol: str) -> pd.DataFrame:
    """Closes at each bar's close time, with the forecast sigma in force then.

    The forecast stand-in is the project's EWMA baseline: a 7-day half-life EWMA of squared
    hourly log returns, using returns up to the previous bar only, scaled to 24 h.
    """
    frame = pd.read_csv(root / "perp_ohlcv" / f"{symbol}_perp_1h_ohlcv.csv.gz")
    frame["date"] = pd.to_datetime(frame["date"], utc=True)
    frame = frame.set_index("date")
    returns = np.log(frame["close"]).diff()
    variance = (returns**2).ewm(halflife=24 * 7, min_periods=24 * 7).mean().shift(1)
    out = pd.DataFrame(
        {"close": frame["close"].to_numpy(), "sigma24": np.sqrt(24 * variance).to_numpy()},
        index=frame.index + HOUR,  # a bar's close is known when the bar ends
    )
    return out.dropna()


def run_breaker(root: Path, symbols: list[str], start: str, end: str) -> CircuitBreaker:
    breaker = CircuitBreaker()
    frames = {s: hourly_closes(root, s) for s in symbols}
    for ts in pd.date_range(start, end, freq="h", tz="UTC", inclusive="left"):
        for s in symbols:
            row = frames[s].loc[ts]
            breaker.observe(
                s, round(row["close"] * MICRO), ts=int(ts.timestamp() * 1000),
                sigma=float(row["sigma24"]), horizon_hours=24.0,
            )  # fmt: skip
    return breaker


def stamp(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%MZ")


def test_halts_fire_in_these_real_stress_hours(shared_data):
    """Documented defaults: k = 6 forecast sigmas within 1 h, 1 h cool-off, 15% band."""
    assert CircuitBreakerConfig() == CircuitBreakerConfig(
        k_sigma=6.0, window_ms=3_600_000, cool_off_ms=3_600_000, band=0.15
    )
    fired = []
    for start, end in (("2020-03-12", "2020-03-14"), ("2021-05-19", "2021-05-20")):
        breaker = run_breaker(shared_data, ["BTCUSDT", "ETHUSDT"], start, end)
        fired += [(stamp(e.ts_ms), e.asset) for e in breaker.halts()]
        # Each halt resumes exactly one cool-off later, with a resume event.
        for halt in breaker.halts():
            resumes = [e for e in breaker.events if e.kind == "resume" and e.asset == halt.asset]
            assert any(e.ts_ms == halt.data["until"] == halt.ts_ms + 3_600_000 for e in resumes)
    # Times are bar closes: the 10:00-11:00 bar of 2020-03-12 (BTC low 5,199) halts at 11:00.
    assert fired == [
        ("2020-03-12T11:00Z", "BTCUSDT"),
        ("2020-03-12T11:00Z", "ETHUSDT"),
        ("2020-03-13T00:00Z", "BTCUSDT"),
        ("2020-03-13T00:00Z", "ETHUSDT"),
        ("2020-03-13T03:00Z", "BTCUSDT"),
        ("2021-05-19T13:00Z", "BTCUSDT"),
        ("2021-05-19T13:00Z", "ETHUSDT"),
    ]


def test_no_liquidation_during_a_halt_and_all_resume_after_the_cool_off(shared_data):
    closes = hourly_closes(shared_data, "BTCUSDT").loc["2020-03-11":"2020-03-14"]
    config = EngineConfig(
        assets=(AssetConfig("BTCUSDT"),), oracle=OracleGuardConfig(heartbeat_ms=2 * 3_600_000)
    )
    engine = Engine(config)
    breaker = CircuitBreaker()
    t0 = int(closes.index[0].timestamp() * 1000)
    p0 = round(closes["close"].iloc[0] * MICRO)
    engine.update_price("BTCUSDT", p0, ts=t0, reference=p0)
    engine.deposit("vault", usd("1000000000"), ts=t0)
    rng = np.random.default_rng(3)
    for i in range(60):
        account = f"trader{i}"
        engine.deposit(account, usd("20000"), ts=t0)
        leverage = rng.uniform(2.0, 9.5)
        lots = round(20_000 * leverage / (p0 / MICRO) * 1e8)
        engine.trade(account, "BTCUSDT", lots if i % 6 else -lots, ts=t0)
    halted_spans, liquidated_at = [], []
    for ts_index, row in closes.iloc[1:].iterrows():
        ts = int(ts_index.timestamp() * 1000)
        seen = breaker.observe(
            "BTCUSDT", round(row["close"] * MICRO), ts=ts, sigma=float(row["sigma24"]),
            horizon_hours=24.0,
        )  # fmt: skip
        engine.update_price("BTCUSDT", seen.price, ts=ts, reference=seen.price)
        if seen.halted:
            halt = breaker.halts()[-1]
            halted_spans.append((halt.ts_ms, halt.data["until"]))
            with pytest.raises(HaltedError):
                gated_trade(engine, breaker, "trader1", "BTCUSDT", qty("0.01"), ts=ts)
        # The keeper runs at the bar close and every minute of the next hour (the catch-up).
        for minute in range(60):
            at = ts + minute * MINUTE_MS
            for report in gated_liquidations(engine, breaker, keeper="keeper", ts=at):
                liquidated_at.append((at, report.bucket))
    assert len(halted_spans) == 3
    assert liquidated_at, "the crash liquidates accounts"
    for at, _ in liquidated_at:
        assert not any(start <= at < until for start, until in halted_spans)
    # Liquidations resume the instant each cool-off ends (a backlog was waiting) ...
    resumed = {until for _, until in halted_spans}
    assert resumed & {at for at, _ in liquidated_at}
    # ... at most 20 a minute during the catch-up, and the backlog is cleared.
    per_minute = Counter(at // MINUTE_MS for at, _ in liquidated_at)
    assert max(per_minute.values()) == 20  # the catch-up limit binds on the backlog
    assert engine.liquidatable(engine.state.clock_ms) == []
    # Every breaker event is in the audit list, in time order.
    times = [e.ts_ms for e in breaker.events]
    assert times == sorted(times) or all(
        e.kind in ("halt", "resume", "band") for e in breaker.events
    )


def test_band_clamps_and_bad_inputs_are_refused():
    breaker = CircuitBreaker(CircuitBreakerConfig(band=0.1, k_sigma=100.0))
    breaker.observe("X", 100 * MICRO, ts=0, sigma=0.05, horizon_hours=24)
    seen = breaker.observe("X", 50 * MICRO, ts=60_000, sigma=0.05, horizon_hours=24)
    assert seen.price == 90 * MICRO and not seen.halted
    assert [e.kind for e in seen.events] == ["band"]
    assert seen.events[0].data["print"] == 50 * MICRO
    # After a gap longer than the window the old price is no reference.
    later = breaker.observe("X", 50 * MICRO, ts=10 * 3_600_000, sigma=0.05, horizon_hours=24)
    assert later.price == 50 * MICRO and not later.events
    with pytest.raises(ConfigError):
        breaker.observe("X", MICRO, ts=10 * 3_600_000, sigma=math.nan, horizon_hours=24)
    with pytest.raises(ConfigError):
        CircuitBreakerConfig(band=1.5)


def test_close_out_slippage_follows_the_snapshots_liquidity_metrics():
    """The dynamic spread adjustment: a wider published spread and slippage, a worse close-out."""
    from tests.liquidation.liq_builders import snapshot

    fills = {}
    for spread, slippage in ((2.0, 8.0), (40.0, 150.0)):
        engine = Engine(EngineConfig(assets=(AssetConfig("BTCUSDT"),)))
        engine.update_price("BTCUSDT", 60_000 * MICRO, ts=0)
        engine.apply_snapshot(
            snapshot("BTCUSDT", 1, 1.0, spread_bps=spread, slippage_bps=slippage), ts=0
        )
        engine.deposit("vault", usd("100000000"), ts=0)
        engine.deposit("alice", usd("40000"), ts=0)
        engine.trade("alice", "BTCUSDT", qty("10"), ts=0)  # 600k notional, 15x
        crash = 57_600 * MICRO  # -4%: below maintenance
        engine.update_price("BTCUSDT", crash, ts=1_000, reference=crash)
        report = engine.liquidate("alice", keeper="keeper", ts=1_000)
        assert report.fraction > 0
        fill = next(
            e
            for e in reversed(list(engine.log))
            if e.kind == "fill" and e.data["reason"] != "trade"
        )
        fills[spread] = crash - fill.data["price"]  # a long sells below the mark
    assert 0 < fills[2.0] < fills[40.0]
