"""Circuit breakers as engine events, on real stress hours: which hours halt, no liquidation
during a halt, every liquidation after the cool-off, and a restart that replays the halt."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from liquidation.circuit_breaker import (
    MINUTE_MS,
    CatchUpLimitError,
    CircuitBreakerConfig,
    HaltedError,
)
from liquidation.config import AssetConfig, EngineConfig, OracleGuardConfig
from liquidation.engine import Engine
from liquidation.errors import ConfigError, LiquidationCoreError, RateLimitedError
from liquidation.events import SQLiteEventStore, split_commands
from liquidation.money import MICRO, qty, usd
from liquidation.state import apply_command, state_digest
from tests.liquidation.liq_builders import snapshot

HOUR = pd.Timedelta(hours=1)
HOUR_MS = 3_600_000


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


def breaker_engine(symbols: list[str], store: SQLiteEventStore | None = None) -> Engine:
    """An engine with the documented breaker defaults and an oracle heartbeat of two bars."""
    config = EngineConfig(
        assets=tuple(AssetConfig(s) for s in symbols),
        oracle=OracleGuardConfig(heartbeat_ms=2 * HOUR_MS),
        breaker=CircuitBreakerConfig(),
    )
    return Engine(config, store)


def publish_and_print(engine: Engine, symbol: str, ts: int, row: pd.Series, update: int) -> None:
    """The hour's forecast as a RiskSnapshot (its sigma drives the halt), then the close."""
    engine.apply_snapshot(
        snapshot(symbol, update, 2.0, as_of_ms=ts, valid_ms=2 * HOUR_MS,
                 sigma=float(row["sigma24"]), previous=2.0),
        ts=ts,
    )  # fmt: skip
    close = round(row["close"] * MICRO)
    engine.update_price(symbol, close, ts=ts, reference=close)


def stamp(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%MZ")


def events(engine: Engine, kind: str) -> list:
    return [e for e in engine.log if e.kind == kind]


def test_halts_fire_in_these_real_stress_hours(shared_data, tmp_path):
    """Documented defaults: k = 6 forecast sigmas within 1 h, 1 h cool-off, 15% band."""
    assert CircuitBreakerConfig() == CircuitBreakerConfig(
        k_sigma=6.0, window_ms=3_600_000, cool_off_ms=3_600_000, band=0.15
    )
    symbols = ["BTCUSDT", "ETHUSDT"]
    frames = {s: hourly_closes(shared_data, s) for s in symbols}
    fired = []
    for n, (start, end) in enumerate((("2020-03-12", "2020-03-14"), ("2021-05-19", "2021-05-20"))):
        store = SQLiteEventStore(tmp_path / f"events-{n}.db")
        engine = breaker_engine(symbols, store)
        digests = {}
        for i, ts in enumerate(pd.date_range(start, end, freq="h", tz="UTC", inclusive="left")):
            at = int(ts.timestamp() * 1000)
            for s in symbols:
                publish_and_print(engine, s, at, frames[s].loc[ts], i + 1)
            digests[at] = engine.digest()
        halts = events(engine, "breaker_halt")
        fired += [(stamp(e.ts_ms), e.data["asset"]) for e in halts]
        # Each halt resumes exactly one cool-off later, with a resume event of the log.
        resumes = events(engine, "breaker_resume")
        for halt in halts:
            assert halt.data["until"] == halt.ts_ms + 3_600_000
            assert halt.data["move"] > 6.0 * halt.data["sigma_window"]
            assert any(
                e.data["asset"] == halt.data["asset"] and e.data["at"] == halt.data["until"]
                for e in resumes
            )
        # A restart replays the log to the identical state, halts included.
        store.close()
        mid = halts[0].ts_ms
        with SQLiteEventStore(tmp_path / f"events-{n}.db") as again:
            loaded = again.load()
        cut = [e for e in loaded if e.ts_ms <= mid]
        while cut and not cut[-1].last:
            cut.pop()
        replayed = Engine.replay(cut, engine.config)
        assert replayed.digest() == digests[mid]
        assert replayed.halted(halts[0].data["asset"], mid)
        assert Engine.replay(loaded, engine.config).digest() == engine.digest()
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
    engine = breaker_engine(["BTCUSDT"])
    t0 = int(closes.index[0].timestamp() * 1000)
    publish_and_print(engine, "BTCUSDT", t0, closes.iloc[0], 1)
    p0 = engine.state.assets["BTCUSDT"].price
    engine.deposit("vault", usd("1000000000"), ts=t0)
    rng = np.random.default_rng(3)
    for i in range(60):
        account = f"trader{i}"
        engine.deposit(account, usd("20000"), ts=t0)
        leverage = rng.uniform(2.0, 9.5)
        lots = round(20_000 * leverage / (p0 / MICRO) * 1e8)
        engine.trade(account, "BTCUSDT", lots if i % 6 else -lots, ts=t0)
    refused_during_halt = 0
    for n, (ts_index, row) in enumerate(closes.iloc[1:].iterrows()):
        ts = int(ts_index.timestamp() * 1000)
        publish_and_print(engine, "BTCUSDT", ts, row, n + 2)
        if engine.halted("BTCUSDT", ts):
            # New risk is refused inside the engine.
            with pytest.raises(HaltedError):
                engine.trade("trader1", "BTCUSDT", qty("0.01"), ts=ts)
            # So is a liquidation of a bucket holding the asset, even one below maintenance.
            for bucket in engine.liquidatable(ts):
                with pytest.raises(HaltedError):
                    engine.liquidate(bucket, keeper="keeper", ts=ts)
                refused_during_halt += 1
        # The keeper runs at the bar close and every minute of the next hour (the catch-up).
        for minute in range(60):
            engine.run_liquidations(keeper="keeper", ts=ts + minute * MINUTE_MS)
    halts = [(e.ts_ms, e.data["until"]) for e in events(engine, "breaker_halt")]
    liquidated_at = [(e.ts_ms, e.data["bucket"]) for e in events(engine, "liquidation")]
    assert len(halts) == 3
    assert liquidated_at, "the crash liquidates accounts"
    assert refused_during_halt > 0, "a halt held back accounts below maintenance"
    for at, _ in liquidated_at:
        assert not any(start <= at < until for start, until in halts)
    # Liquidations resume the instant each cool-off ends (a backlog was waiting) ...
    assert {until for _, until in halts} & {at for at, _ in liquidated_at}
    # ... at most 20 a minute during the catch-up, each counted by an event of the log ...
    per_minute = Counter(at // MINUTE_MS for at, _ in liquidated_at)
    assert max(per_minute.values()) == 20  # the catch-up limit binds on the backlog
    counted = Counter(e.data["minute"] for e in events(engine, "breaker_catch_up"))
    assert counted and max(counted.values()) == 20
    # ... and the backlog is cleared.
    assert engine.liquidatable(engine.state.clock_ms) == []
    assert engine.ledger_discrepancy() == 0
    assert Engine.replay(list(engine.log), engine.config).digest() == engine.digest()


def synthetic_halt(store: SQLiteEventStore | None = None) -> Engine:
    """BTC at 50,000 with sigma 2%/24 h; 30 longs at 10x and a healthy one; a -9% print
    halts (6 sigma of an hour ~ 2.4%) and puts every 10x long under half its maintenance."""
    engine = breaker_engine(["BTCUSDT"], store)
    engine.apply_snapshot(snapshot("BTCUSDT", 1, 1.0, valid_ms=30 * HOUR_MS, sigma=0.02), ts=0)
    engine.update_price("BTCUSDT", 50_000 * MICRO, ts=0, reference=50_000 * MICRO)
    engine.deposit("vault", usd("100000000"), ts=0)
    for i in range(30):
        engine.deposit(f"t{i}", usd("5000"), ts=0)
        engine.trade(f"t{i}", "BTCUSDT", qty("1"), ts=0)
    engine.deposit("healthy", usd("50000"), ts=0)
    engine.trade("healthy", "BTCUSDT", qty("1"), ts=0)
    low = 45_500 * MICRO
    engine.update_price("BTCUSDT", low, ts=60_000, reference=low)
    return engine


def test_halt_catch_up_and_restart_through_the_store(tmp_path):
    path = tmp_path / "events.db"
    engine = synthetic_halt(SQLiteEventStore(path))
    assert engine.halted("BTCUSDT", 60_000)
    assert len(engine.liquidatable(60_000)) == 30
    assert engine.run_liquidations(keeper="keeper", ts=120_000) == []
    assert engine.breaker_status()["BTCUSDT"]["halted"]
    # A restart replays the halt: the resumed engine refuses as the original did.
    digest = engine.digest()
    engine.log.store.close()  # type: ignore[union-attr]
    restarted = Engine.resume(SQLiteEventStore(path), engine.config)
    assert restarted.digest() == digest and restarted.halted("BTCUSDT", 120_000)
    with pytest.raises(HaltedError):
        restarted.liquidate("t0", keeper="keeper", ts=130_000)
    with pytest.raises(HaltedError):
        restarted.trade("healthy", "BTCUSDT", qty("0.1"), ts=130_000)
    restarted.trade("healthy", "BTCUSDT", -qty("0.1"), ts=130_000)  # reducing passes
    n = len(restarted.log)
    # The cool-off ends at 60_000 + 1 h: the first command after it records the resumption.
    end = 60_000 + HOUR_MS
    reports = restarted.run_liquidations(keeper="keeper", ts=end)
    assert len(reports) == 20  # the catch-up budget of the first minute
    resumed = [e for e in list(restarted.log)[n:] if e.kind == "breaker_resume"]
    assert [e.data["at"] for e in resumed] == [end]
    with pytest.raises(CatchUpLimitError):
        restarted.liquidate(restarted.liquidatable(end)[0], keeper="keeper", ts=end + 1)
    assert issubclass(CatchUpLimitError, RateLimitedError)
    later = restarted.run_liquidations(keeper="keeper", ts=end + MINUTE_MS)
    assert len(later) == 10 and restarted.liquidatable(end + MINUTE_MS) == []
    restarted.log.store.close()  # type: ignore[union-attr]
    assert Engine.from_store(path, engine.config).digest() == restarted.digest()


def test_band_clamps_the_accepted_print_and_a_gap_resets_it():
    config = EngineConfig(
        assets=(AssetConfig("X"),),
        oracle=OracleGuardConfig(heartbeat_ms=100 * HOUR_MS),
        breaker=CircuitBreakerConfig(band=0.1, k_sigma=100.0),
    )
    engine = Engine(config)
    engine.update_price("X", 100 * MICRO, ts=0, reference=100 * MICRO)
    verdict = engine.update_price("X", 50 * MICRO, ts=60_000, reference=50 * MICRO)
    assert verdict.accepted
    band = events(engine, "breaker_band")
    assert [(e.data["print"], e.data["price"], e.data["reference"]) for e in band] == [
        (50 * MICRO, 90 * MICRO, 100 * MICRO)
    ]
    assert engine.state.assets["X"].price == 90 * MICRO  # the oracle price is the edge
    engine.update_price("X", 50 * MICRO, ts=120_000, reference=50 * MICRO)
    assert engine.state.assets["X"].price == 81 * MICRO  # one band per print
    # After a gap longer than the window the old price is no reference.
    engine.update_price("X", 50 * MICRO, ts=10 * HOUR_MS, reference=50 * MICRO)
    assert engine.state.assets["X"].price == 50 * MICRO
    assert len(events(engine, "breaker_band")) == 2
    # A print the guard refuses moves neither the band nor the halt window.
    refused = engine.update_price("X", 80 * MICRO, ts=10 * HOUR_MS + 1, reference=50 * MICRO)
    assert not refused.accepted
    assert engine.state.breakers["X"].last == 50 * MICRO
    with pytest.raises(ConfigError):
        CircuitBreakerConfig(band=1.5)
    with pytest.raises(ConfigError):
        CircuitBreakerConfig(k_sigma=float("nan"))


def test_without_a_breaker_nothing_changes():
    """``EngineConfig.breaker = None`` (the default): no breaker event, the same digest."""
    engine = Engine(EngineConfig(assets=(AssetConfig("BTCUSDT"),)))
    engine.update_price("BTCUSDT", 50_000 * MICRO, ts=0)
    engine.update_price("BTCUSDT", 30_000 * MICRO, ts=1_000, reference=30_000 * MICRO)
    assert not any(e.kind.startswith("breaker") for e in engine.log)
    assert engine.state.breakers == {} and engine.breaker_status() == {}


def test_close_out_slippage_follows_the_snapshots_liquidity_metrics():
    """The dynamic spread adjustment: a wider published spread and slippage, a worse close-out."""
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


# -- property: random prints, trades and keeper passes through an engine with a breaker ------
steps = st.lists(
    st.tuples(
        st.integers(1, 40 * MINUTE_MS),  # time to the next command
        st.sampled_from(["print", "print", "keeper", "keeper", "trade"]),
        st.integers(-20, 20).map(lambda pct: pct / 100),  # a print's move, beyond the band too
        st.integers(0, 5),  # trader of a trade
    ),
    min_size=10,
    max_size=50,
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_random_sessions_never_liquidate_or_add_risk_inside_a_halt(session):
    config = CircuitBreakerConfig(catch_up_per_minute=2, catch_up_ms=10 * MINUTE_MS)
    engine = Engine(
        EngineConfig(
            assets=(AssetConfig("BTCUSDT"),),
            oracle=OracleGuardConfig(heartbeat_ms=2 * HOUR_MS),
            breaker=config,
        )
    )
    p = 50_000 * MICRO
    engine.apply_snapshot(snapshot("BTCUSDT", 1, 1.0, valid_ms=10**9, sigma=0.03), ts=0)
    engine.update_price("BTCUSDT", p, ts=0, reference=p)
    engine.deposit("vault", usd("100000000"), ts=0)
    for i in range(6):
        engine.deposit(f"t{i}", usd("3500"), ts=0)  # 14x: liquidated ~4% against it
        engine.trade(f"t{i}", "BTCUSDT", qty("1") if i % 2 else -qty("1"), ts=0)
    ts, refused = 0, 0
    for gap, kind, move, trader in session:
        ts += gap
        if kind == "print":
            p = max(MICRO, round(p * (1 + move)))
            engine.update_price("BTCUSDT", p, ts=ts, reference=p)
        elif kind == "keeper":
            engine.run_liquidations(keeper="keeper", ts=ts)
        else:
            halted = engine.halted("BTCUSDT", ts)
            bucket = engine.state.buckets[f"t{trader}"]
            held = bucket.positions["BTCUSDT"].lots if "BTCUSDT" in bucket.positions else 0
            reduces = held < 0 and qty("0.01") <= -held  # a buy that only cuts a short
            try:
                engine.trade(f"t{trader}", "BTCUSDT", qty("0.01"), ts=ts)
                assert not halted or reduces, "new risk during a halt"
            except HaltedError:
                assert halted and not reduces
                refused += 1
            except LiquidationCoreError:
                pass  # margin, dust: refused for other reasons
    log = list(engine.log)
    halts = [(e.ts_ms, e.data["until"]) for e in log if e.kind == "breaker_halt"]
    resumes = [e.data["at"] for e in log if e.kind == "breaker_resume"]
    liquidations = [e.ts_ms for e in log if e.kind == "liquidation"]
    assert all(not (start <= at < until) for at in liquidations for start, until in halts)
    assert resumes == [until for _, until in halts][: len(resumes)]
    for at in resumes:  # the catch-up after each resumption
        window = [t for t in liquidations if at <= t < at + config.catch_up_ms]
        per_minute = Counter(t // MINUTE_MS for t in window)
        assert max(per_minute.values(), default=0) <= config.catch_up_per_minute
    event(f"halts: {min(len(halts), 3)}, refused trades: {min(refused, 1)}")
    event(f"liquidations: {min(len(liquidations), 1)}")
    assert engine.ledger_discrepancy() == 0
    assert Engine.replay(log, engine.config).digest() == engine.digest()


def test_a_torn_breaker_command_never_takes_effect(tmp_path):
    """Cut the log inside every multi-event command that carries breaker events (the halting
    print; each liquidation counting the catch-up): the replay
    is the state after the last whole command, and a restart from a torn SQLite store closes
    the command with an ``abort``."""
    engine = synthetic_halt()
    engine.run_liquidations(keeper="keeper", ts=60_000 + HOUR_MS)
    log = list(engine.log)
    commands, torn = split_commands(log)
    assert torn == []
    digests, folded = [], Engine(engine.config)
    for command in commands:
        apply_command(folded.state, command)
        digests.append(folded.digest())
    cut_inside = [
        i
        for i, command in enumerate(commands)
        if len(command) > 1 and any(e.kind.startswith("breaker_") for e in command)
    ]
    kinds = {e.kind for i in cut_inside for e in commands[i]}
    assert {"breaker_halt", "breaker_catch_up"} <= kinds  # the resumption is a one-event tick
    for i in cut_inside:
        start = commands[i][0].seq
        for cut in range(1, len(commands[i])):
            replayed = Engine.replay(log[: start + cut], engine.config)
            assert replayed.torn_tail and replayed.digest() == digests[i - 1]
    # Through the store: the halting print torn after its first event.
    halting = next(i for i in cut_inside if any(e.kind == "breaker_halt" for e in commands[i]))
    path = tmp_path / "torn.db"
    with SQLiteEventStore(path) as store:
        store.append(log[: commands[halting][0].seq + 1])
    with SQLiteEventStore(path) as store:
        resumed = Engine.resume(store, engine.config)
        assert list(resumed.log)[-1].kind == "abort"
        assert not resumed.halted("BTCUSDT", 60_000)
        assert state_digest(resumed.state, counters=False) == state_digest(
            Engine.replay(log[: commands[halting][0].seq], engine.config).state, counters=False
        )
