"""Engine behaviour: collateral rules, oracle guard, isolated margin, funding, fees, ramp,
insurance governance events and event-log persistence."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from liquidation.engine import Engine
from liquidation.errors import (
    ClockError,
    EventLogError,
    GuardedAssetError,
    InsufficientMarginError,
    NotLiquidatableError,
    RateLimitedError,
    StaleOracleError,
    WithdrawalRestrictedError,
)
from liquidation.events import Event, SQLiteEventStore
from liquidation.money import MICRO, QTY_SCALE, price, qty, usd
from tests.liquidation.liq_builders import HOUR_MS, fund_vault, simple_config, snapshot

BTC, ETH = "BTCUSDT", "ETHUSDT"


def _engine(config=None, multiplier: float = 1.0, **kw) -> Engine:
    engine = Engine(config or simple_config(**kw))
    engine.update_price(BTC, price("50000"), ts=0)
    engine.apply_snapshot(snapshot(BTC, 1, multiplier), ts=0)
    fund_vault(engine)
    return engine


def test_withdrawal_only_while_equity_covers_initial_margin() -> None:
    engine = _engine()
    engine.deposit("a", usd("10000"), ts=0)
    engine.trade("a", BTC, qty("1"), ts=0)  # IM 2,500
    with pytest.raises(InsufficientMarginError, match="withdraw at most 7500"):
        engine.withdraw("a", usd("8000"), ts=0)
    engine.withdraw("a", usd("7500"), ts=0)
    assert engine.equity("a") == engine.initial_margin("a") == usd("2500")


def test_guarded_asset_blocks_new_risk_liquidation_and_withdrawal() -> None:
    engine = _engine()
    engine.deposit("a", usd("3000"), ts=0)
    engine.trade("a", BTC, qty("1"), ts=0)
    engine.deposit("b", usd("1000"), ts=0)
    # A price with a 2% confidence band trips the guard; the mark stays at 50,000.
    verdict = engine.update_price(BTC, price("47000"), ts=1_000, confidence=price("940"))
    assert not verdict.accepted and verdict.reason == "confidence"
    assert engine.state.assets[BTC].guarded
    guard_events = [e.data for e in engine.log if e.kind == "guard"]
    assert guard_events[-1] == {"asset": BTC, "guarded": True, "reason": "confidence"}
    with pytest.raises(GuardedAssetError, match="guard tripped"):
        engine.trade("b", BTC, qty("0.01"), ts=1_000)
    with pytest.raises(WithdrawalRestrictedError, match="guarded"):
        engine.withdraw("a", usd("1"), ts=1_000)
    engine.withdraw("b", usd("1"), ts=1_000)  # no exposure to the guarded asset: allowed
    with pytest.raises(GuardedAssetError):
        engine.liquidate("a", keeper="k", ts=1_000)
    assert engine.run_liquidations(keeper="k", ts=1_000, exhaustive=True) == []
    # A good price clears the guard (logged) and the account becomes liquidatable again.
    engine.update_price(BTC, price("48400"), ts=2_000, reference=price("48400"))
    assert not engine.state.assets[BTC].guarded
    assert [r.bucket for r in engine.run_liquidations(keeper="k", ts=2_000)] == ["a"]


def test_stale_oracle_is_logged_and_blocks_everything() -> None:
    engine = _engine(heartbeat_ms=60_000)
    engine.deposit("a", usd("3000"), ts=0)
    engine.trade("a", BTC, qty("1"), ts=0)
    engine.tick(61_000)
    assert engine.state.assets[BTC].guard_reason == "stale"
    with pytest.raises(StaleOracleError, match="stale"):
        engine.trade("a", BTC, qty("0.1"), ts=61_000)
    assert engine.run_liquidations(keeper="k", ts=61_000, exhaustive=True) == []


def test_clock_never_goes_back() -> None:
    engine = _engine()
    engine.deposit("a", usd("1"), ts=5_000)
    with pytest.raises(ClockError, match="before the engine clock"):
        engine.deposit("a", usd("1"), ts=4_000)


def test_isolated_loss_stays_in_its_bucket() -> None:
    engine = _engine()
    engine.seed_insurance(usd("1000"), ts=0)
    engine.deposit("a", usd("10000"), ts=0)
    engine.trade("a", BTC, qty("1"), ts=0, isolated=True, margin=usd("2600"))
    assert engine.state.buckets["a"].balance == usd("7400")
    assert engine.buckets_of("a") == ["a", "a:BTCUSDT"]
    engine.update_price(BTC, price("47000"), ts=1_000, reference=price("47000"))
    # The isolated bucket (equity -400) is closed out and the fund pays its bad debt; the
    # cross balance is untouched.
    assert engine.run_liquidations(keeper="k", ts=1_000)[0].bucket == "a:BTCUSDT"
    assert engine.state.buckets["a"].balance == usd("7400")
    assert engine.ledger_discrepancy() == 0


def test_isolated_margin_returns_to_cross_on_close() -> None:
    engine = _engine(fee=0.0005)
    engine.deposit("a", usd("10000"), ts=0)
    engine.trade("a", BTC, qty("1"), ts=0, isolated=True, margin=usd("3000"))
    engine.update_price(BTC, price("51000"), ts=1_000)
    engine.close("a", BTC, ts=1_000, isolated=True)
    # 10,000 - 25 (open fee) + 1,000 pnl - 25.5 (close fee) all back in the cross bucket.
    assert engine.state.buckets["a"].balance == usd("10949.5")
    assert engine.state.buckets["a:BTCUSDT"].balance == 0
    assert engine.state.ledger.fees == usd("50.5")


def test_funding_longs_pay_shorts_receive_and_is_zero_sum() -> None:
    engine = _engine()
    engine.deposit("long", usd("10000"), ts=0)
    engine.deposit("short", usd("10000"), ts=0)
    engine.trade("long", BTC, qty("1"), ts=0)
    engine.trade("short", BTC, -qty("2"), ts=0)  # the vault holds the other long BTC
    assert engine.apply_funding(BTC, 0.0001, ts=1_000) == 3
    # Longs pay 1 bp of 50,000 each; the short receives exactly what they pay.
    assert engine.state.buckets["long"].balance == usd("10000") - usd("5")
    assert engine.state.buckets["vault"].balance == usd("10000000") - usd("5")
    assert engine.state.buckets["short"].balance == usd("10000") + usd("10")
    assert engine.state.ledger.funding == 0
    assert engine.ledger_discrepancy() == 0


def test_new_positions_pay_a_rise_at_once_existing_ones_ramp() -> None:
    engine = _engine(ramp_ms=8 * HOUR_MS)
    engine.deposit("old", usd("20000"), ts=0)
    engine.trade("old", BTC, qty("1"), ts=0)
    engine.apply_snapshot(snapshot(BTC, 2, 2.0, as_of_ms=HOUR_MS), ts=HOUR_MS)
    engine.deposit("new", usd("20000"), ts=HOUR_MS)
    engine.trade("new", BTC, qty("1"), ts=HOUR_MS)
    # At the rise: old MM at multiplier 1 (1,500), new at 2 (3,000); IM at 2 for both.
    assert engine.maintenance_margin("old", HOUR_MS) == usd("1500")
    assert engine.maintenance_margin("new", HOUR_MS) == usd("3000")
    assert engine.initial_margin("old", HOUR_MS) == usd("5000")
    # Half-way through the 8 h ramp: multiplier 1.5 -> 2,250; at the end: 3,000.
    engine.tick(5 * HOUR_MS)
    # (Requirements round up to the micro-unit: 0.05 * 1.5 * 0.6 is 0.045000000000000005.)
    assert engine.maintenance_margin("old", 5 * HOUR_MS) - usd("2250") in (0, 1)
    assert engine.maintenance_margin("old", 9 * HOUR_MS) == usd("3000")
    # A cut applies at once, to everyone.
    engine.update_price(BTC, price("50000"), ts=9 * HOUR_MS)
    engine.apply_snapshot(snapshot(BTC, 3, 1.0, as_of_ms=9 * HOUR_MS), ts=9 * HOUR_MS)
    assert engine.maintenance_margin("old") == engine.maintenance_margin("new") == usd("1500")


def test_expired_snapshot_ramps_to_the_fallback() -> None:
    engine = _engine(ramp_ms=HOUR_MS, heartbeat_ms=100 * HOUR_MS)
    engine.deposit("a", usd("20000"), ts=0)
    engine.trade("a", BTC, qty("1"), ts=0)
    # Valid for 24 h; after it, new risk pays the fallback 2.0 at once and the existing
    # position ramps to it over one hour.
    assert engine.initial_margin("a", 24 * HOUR_MS) == usd("2500")
    assert engine.initial_margin("a", 24 * HOUR_MS + 1) == usd("5000")
    assert engine.maintenance_margin("a", 24 * HOUR_MS + HOUR_MS // 2) - usd("2250") in (0, 1)
    assert engine.maintenance_margin("a", 26 * HOUR_MS) == usd("3000")


def test_partial_steps_are_rate_limited() -> None:
    engine = _engine(cooldown_ms=30_000, max_step_fraction=0.05)
    engine.deposit("a", usd("6000"), ts=0)
    engine.trade("a", BTC, qty("2"), ts=0)
    engine.update_price(BTC, price("48400"), ts=1_000)
    first = engine.liquidate("a", keeper="k", ts=1_000)
    assert first.step == "partial" and first.fraction == 0.05 and first.improved
    with pytest.raises(RateLimitedError, match="retry at 31000"):
        engine.liquidate("a", keeper="k", ts=2_000)
    second = engine.liquidate("a", keeper="k", ts=31_000)
    assert second.improved and second.equity_before == first.equity_after


def test_healthy_bucket_is_not_liquidatable() -> None:
    engine = _engine()
    engine.deposit("a", usd("6000"), ts=0)
    engine.trade("a", BTC, qty("2"), ts=0)
    with pytest.raises(NotLiquidatableError, match=">= maintenance"):
        engine.liquidate("a", keeper="k", ts=0)


def test_fee_addon_feeds_the_fund_after_low_coverage_review() -> None:
    engine = _engine(fee=0.0005)
    engine.seed_insurance(usd("100"), ts=0)
    decision = engine.review_insurance(ts=0, stressed_loss=usd("1000"))
    # coverage 0.1 < 1: share 0.5 -> 0.6 and add-on 0 -> 1 bps, logged as an event.
    assert decision.coverage == pytest.approx(0.1)
    assert (decision.fund_share, decision.fee_addon_bps) == (pytest.approx(0.6), 1.0)
    assert engine.log[-1].kind == "insurance"
    engine.deposit("a", usd("10000"), ts=0)
    engine.trade("a", BTC, qty("1"), ts=0)
    # Fee 5 bps of 50,000 = 25 to fees; add-on 1 bps = 5 to the fund.
    assert engine.state.ledger.fees == usd("25")
    assert engine.state.insurance.fund == usd("105")
    high = engine.review_insurance(ts=0, stressed_loss=usd("1"))
    assert high.fund_share == pytest.approx(0.5) and high.fee_addon_bps == 0.0


def test_book_stress_estimate_sees_levered_accounts() -> None:
    engine = _engine()
    engine.deposit("a", usd("2600"), ts=0)
    engine.trade("a", BTC, qty("1"), ts=0)
    # sigma 3% x multiplier 1 x 3 = 9% move: loss 4,500 on 2,600 of equity -> 1,900 bad debt.
    decision = engine.review_insurance(ts=0)
    assert decision.stressed_loss == pytest.approx(usd("1900"), abs=10)


def test_liquidation_price_query_matches_health_one() -> None:
    engine = _engine()
    engine.deposit("a", usd("6000"), ts=0)
    engine.trade("a", BTC, qty("2"), ts=0)
    liq = engine.summary("a").liquidation_prices[BTC]
    assert liq == 48_453_608_247  # (100,000 - 6,000) / (2 * (1 - 0.03))
    engine.update_price(BTC, liq, ts=1_000)
    assert engine.health("a") == pytest.approx(1.0, abs=1e-6)


def test_sqlite_write_through_and_replay(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    config = simple_config()
    with SQLiteEventStore(path) as store:
        engine = Engine(config, store=store)
        engine.update_price(BTC, price("50000"), ts=0)
        engine.apply_snapshot(snapshot(BTC, 1, 1.0), ts=0)
        fund_vault(engine)
        engine.deposit("a", usd("6000"), ts=0)
        engine.trade("a", BTC, qty("2"), ts=0)
        engine.update_price(BTC, price("48400"), ts=1_000)
        engine.run_liquidations(keeper="k", ts=1_000)
    rebuilt = Engine.from_store(path, config)
    assert rebuilt.digest() == engine.digest()
    assert rebuilt.state.buckets["a"].positions[BTC].lots < 2 * QTY_SCALE
    assert len(rebuilt.log) == len(engine.log)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE events SET kind = 'x' WHERE seq = 0")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM events")
    conn.close()


def test_event_log_rejects_bad_events(tmp_path: Path) -> None:
    with pytest.raises(EventLogError, match="unknown kind"):
        Event(0, 0, "teleport", {})
    with pytest.raises(EventLogError, match="missing"):
        Event(0, 0, "deposit", {"account": "a"})
    with SQLiteEventStore(tmp_path / "e.sqlite") as store:
        with pytest.raises(EventLogError, match="does not continue"):
            store.append([Event(3, 0, "clock", {})])
    engine = _engine()
    with pytest.raises(EventLogError, match="from its first event"):
        Engine.replay(list(engine.log)[1:], engine.config)


def test_replay_rebuilds_identical_state_and_book() -> None:
    engine = _engine()
    engine.seed_insurance(usd("50"), ts=0)
    for i, account in enumerate(["a", "b", "c"]):
        engine.deposit(account, usd("5100"), ts=0)
        engine.trade(account, BTC, qty("2") * (1 if i != 1 else -1), ts=0)
    engine.update_price(BTC, price("47000"), ts=1_000, reference=price("47000"))
    engine.run_liquidations(keeper="k", ts=1_000)
    replayed = Engine.replay(list(engine.log), engine.config)
    assert replayed.digest() == engine.digest()
    a, b = engine.scan(), replayed.scan()
    assert a.liquidatable.tolist() == b.liquidatable.tolist()
    assert (a.equity == b.equity).all() and (a.maintenance == b.maintenance).all()
    assert engine.state.liquidations >= 2 and engine.ledger_discrepancy() == 0
    assert MICRO == 10**6


def test_docstring_examples_run() -> None:
    import doctest

    import liquidation.engine
    import liquidation.money

    for module in (liquidation.engine, liquidation.money):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0


def test_batch_price_update_reports_each_verdict() -> None:
    engine = Engine(simple_config((BTC, ETH)))
    verdicts = engine.update_prices({BTC: price("50000"), ETH: price("2500")}, ts=0)
    assert {s: v.accepted for s, v in verdicts.items()} == {BTC: True, ETH: True}
    verdicts = engine.update_prices({BTC: price("60000")}, ts=1_000)
    assert verdicts[BTC].reason == "deviation" and engine.state.assets[BTC].guarded


def _store_with_a_deposit(path: Path) -> None:
    with SQLiteEventStore(path) as store:
        engine = Engine(simple_config(), store=store)
        engine.update_price(BTC, price("50000"), ts=0)
        engine.deposit("a", usd("100"), ts=0)


def test_resume_continues_the_same_store(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    config = simple_config()
    _store_with_a_deposit(path)
    with SQLiteEventStore(path) as store:
        resumed = Engine.resume(store, config)
        resumed.deposit("a", usd("5"), ts=1_000)
        with pytest.raises(EventLogError, match="attach a store only"):
            Engine(config).log.attach(store)
    final = Engine.from_store(path, config)
    assert final.state.buckets["a"].balance == usd("105")
    assert final.digest() == resumed.digest()


def test_resume_closes_a_torn_command_with_an_abort(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    config = simple_config()
    _store_with_a_deposit(path)
    # A writer without transactions crashed after the first of two events of a command.
    torn = Event(3, 1_000, "deposit", {"account": "a", "amount": usd("5")}, cmd=2, last=False)
    with SQLiteEventStore(path) as store:
        store.append([torn])
    assert Engine.from_store(path, config).torn_tail == [torn]
    with SQLiteEventStore(path) as store:
        resumed = Engine.resume(store, config)
        assert resumed.state.buckets["a"].balance == usd("100")  # the torn deposit is void
        assert resumed.log[-1].kind == "abort"
        resumed.deposit("a", usd("7"), ts=2_000)
    final = Engine.from_store(path, config)
    assert final.state.buckets["a"].balance == usd("107") and final.digest() == resumed.digest()
    assert final.state.clock_ms == 2_000
