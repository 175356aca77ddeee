"""The options ledger with a real engine: fills, account risk, expiry, replay, the scan."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liquidation.config import AssetConfig, EngineConfig
from liquidation.engine import Engine
from liquidation.errors import InputError, InsufficientMarginError, StaleOracleError
from liquidation.money import MICRO, QTY_SCALE, price, qty, usd
from liquidation.options import admission
from liquidation.options.config import GreekLimits, OptionsConfig, OptionsMarginConfig
from liquidation.options.deleverage import execute_greek_plan
from liquidation.options.health import OptionsBook
from liquidation.options.ledger import (
    OptionsLedger,
    account_risk,
    options_market,
    settle_at_mark,
)
from liquidation.options.risk import build_grid, requirement, series_risk
from liquidation.options.series import OptionSeries, SeriesArrays
from liquidation.options.surface import VolSurface
from tests.liquidation.liq_builders import HOUR_MS, snapshot

DAY_MS = 24 * HOUR_MS
EXPIRY = 7 * DAY_MS
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def venue(limits: GreekLimits | None = None) -> tuple[Engine, OptionsLedger]:
    engine = Engine(EngineConfig(assets=tuple(AssetConfig(s) for s in SYMBOLS)))
    engine.update_price("BTCUSDT", price("60000"), ts=0)
    engine.update_price("ETHUSDT", price("3000"), ts=0)
    for s in SYMBOLS:
        engine.apply_snapshot(snapshot(s, 1, 1.0), ts=0)
    engine.deposit("vault", usd("10000000"), ts=0)
    for account in ("alice", "bob"):
        engine.deposit(account, usd("100000"), ts=0)
    ledger = OptionsLedger(SYMBOLS, OptionsConfig(limits=limits or GreekLimits()))
    return engine, ledger


def straddle(strike: str = "60000") -> tuple[OptionSeries, OptionSeries]:
    return (
        OptionSeries("BTCUSDT", EXPIRY, price(strike), True),
        OptionSeries("BTCUSDT", EXPIRY, price(strike), False),
    )


def test_short_straddle_account_risk():
    engine, ledger = venue()
    call, put = straddle()
    for s in (call, put):
        ledger.list_series(s, ts=0)
        ledger.trade("bob", "alice", s, qty("2"), price("2500"), ts=0)
    assert ledger.cash == {"bob": -usd("10000"), "alice": usd("10000")}
    naked = account_risk(engine, ledger, "alice", ts=0)
    assert naked.greeks["BTCUSDT"]["gamma_usd"] < 0 and naked.greeks["BTCUSDT"]["vega_usd"] < 0
    assert naked.requirement.maintenance > naked.requirement.short_minimum
    # Marks come from the published sigma (3% a day = 57% a year) without a surface: a week
    # ATM straddle is worth about 0.8 * F * vol * sqrt(T) = 3,810 USD.
    assert naked.option_value == pytest.approx(-2 * 0.8 * 60_000 * 0.03 * 7**0.5, rel=0.01)
    assert naked.equity == pytest.approx(100_000 + 10_000 + naked.option_value, abs=1e-6)
    # A richer surface marks the short straddle down by more than it lowers its gamma
    # risk (a higher implied vol flattens gamma): the margin excess falls.
    ledger.set_surface("BTCUSDT", VolSurface(atm_vol=0.9), ts=0)
    rich = account_risk(engine, ledger, "alice", ts=0)
    assert rich.equity < naked.equity
    excess = naked.equity - naked.requirement.maintenance
    assert rich.equity - rich.requirement.maintenance < excess


def test_greek_limits_plan_closes_delta_first():
    engine, ledger = venue(GreekLimits(delta_usd=20_000, gamma_usd=1e9, vega_usd=1e9))
    call, _ = straddle("50000")  # in the money: delta ~0.85 per call
    ledger.list_series(call, ts=0)
    ledger.trade("alice", "bob", call, qty("1"), price("11000"), ts=0)
    engine.trade("alice", "BTCUSDT", qty("0.5"), ts=0)
    risk = account_risk(engine, ledger, "alice", ts=0)
    assert risk.breaches_limits
    assert risk.plan[0].breach.greek == "delta_usd"
    assert risk.plan[0].instrument == call.name  # the larger same-signed delta goes first


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["alice", "bob", "carol"]),
            st.sampled_from(["alice", "bob", "carol"]),
            st.integers(0, 3),
            st.integers(1, 5 * 10**8),
            st.integers(0, 10_000),
        ),
        min_size=1,
        max_size=12,
    ),
    st.integers(30_000, 90_000),
)
def test_value_is_conserved_through_expiry_and_settlement(fills, settle_usd):
    _, ledger = venue()
    strikes = [OptionSeries("BTCUSDT", EXPIRY, price(k), c) for k in ("55000", "65000")
               for c in (True, False)]  # fmt: skip
    for s in strikes:
        ledger.list_series(s, ts=0)
    for buyer, seller, i, lots, premium in fills:
        if buyer != seller:
            ledger.trade(buyer, seller, strikes[i], lots, premium * MICRO, ts=HOUR_MS)
    assert sum(ledger.cash.values()) == 0
    settle = settle_usd * MICRO
    before = {
        a: ledger.cash.get(a, 0) + sum(q * s.intrinsic(settle) // QTY_SCALE if q > 0 else
                                       -((-q * s.intrinsic(settle)) // QTY_SCALE)
                                       for s, q in ledger.lots(a).items())
        for a in ledger.accounts()
    }  # fmt: skip
    count = ledger.settle(EXPIRY, {"BTCUSDT": settle}, ts=EXPIRY)
    assert count == 4
    assert sum(ledger.cash.values()) == 0
    assert all(not ledger.lots(a) for a in ledger.accounts())
    for account, value_before in before.items():
        assert abs(ledger.cash.get(account, 0) - value_before) <= 1
    assert ledger.events[-1].kind == "expiry"
    replayed = OptionsLedger.replay(ledger.events, SYMBOLS, ledger.config)
    assert replayed.cash == ledger.cash and replayed.series == ledger.series == []
    with pytest.raises(InputError):
        ledger.trade("alice", "bob", strikes[0], 1, 0, ts=EXPIRY)


def test_marks_converge_to_the_settlement_value():
    engine, ledger = venue()
    call, put = straddle()
    for s in (call, put):
        ledger.list_series(s, ts=0)
        ledger.trade("bob", "alice", s, qty("1"), price("2000"), ts=0)
    engine.update_price("BTCUSDT", price("61000"), ts=EXPIRY - 1000)
    engine.update_price("ETHUSDT", price("3000"), ts=EXPIRY - 1000)
    engine.apply_snapshot(snapshot("BTCUSDT", 2, 1.0, as_of_ms=EXPIRY - DAY_MS), ts=EXPIRY - 1000)
    engine.apply_snapshot(snapshot("ETHUSDT", 2, 1.0, as_of_ms=EXPIRY - DAY_MS), ts=EXPIRY - 1000)
    value_before = account_risk(engine, ledger, "bob", ts=EXPIRY - 1000).equity
    with pytest.raises(StaleOracleError):  # the last print is 1 s old, the heartbeat 120 s ...
        settle_at_mark(engine, ledger, EXPIRY, ts=EXPIRY + 200_000)
    # ... so settle at the mark in force at expiry, an event of the ledger like any other.
    assert settle_at_mark(engine, ledger, EXPIRY, ts=EXPIRY) == 2
    assert ledger.events[-1].data["series"][0]["settlement"] == price("61000")
    value_after = account_risk(engine, ledger, "bob", ts=EXPIRY).equity
    # One second before expiry the straddle is worth its intrinsic value to within cents.
    assert value_after == pytest.approx(value_before, abs=1.0)
    assert ledger.cash["bob"] == usd("1000") - 2 * usd("2000")


def test_health_scan_matches_the_exact_check_per_account():
    engine, ledger = venue()
    rng = np.random.default_rng(7)
    market = options_market(engine, ts=0)
    config = OptionsMarginConfig()
    strikes = [45_000, 55_000, 60_000, 65_000, 75_000]
    series = [
        OptionSeries("BTCUSDT", e, price(str(k)), c)
        for e in (EXPIRY, 30 * DAY_MS) for k in strikes for c in (True, False)
    ]  # fmt: skip
    arrays = SeriesArrays.of(series, SYMBOLS)
    grid = build_grid(market, config)
    risk = series_risk(arrays, ledger.vols(arrays, market), market, grid, config)
    n_accounts = 400
    opt_account = np.repeat(np.arange(n_accounts), 3)
    opt_series = rng.integers(0, len(series), size=opt_account.size)
    opt_qty = rng.normal(0, 2, size=opt_account.size)
    perp_account = np.arange(n_accounts)
    perp_asset = rng.integers(0, 2, size=n_accounts)
    perp_qty = rng.normal(0, 1, size=n_accounts) * np.where(perp_asset == 0, 1.0, 20.0)
    cash = rng.uniform(0, 15_000, size=n_accounts) - opt_qty.reshape(-1, 3) @ np.zeros(3)
    book = OptionsBook(
        n_accounts, cash, perp_account, perp_asset, perp_qty, opt_account, opt_series, opt_qty
    )
    result = book.scan(market, risk, grid, config)
    expected = []
    for a in range(n_accounts):
        d = np.zeros(2)
        d[perp_asset[a]] = perp_qty[a] * market.price[perp_asset[a]]
        q = np.zeros(len(series))
        np.add.at(q, opt_series[opt_account == a], opt_qty[opt_account == a])
        req = requirement(d, q, risk, market, grid, config)
        equity = cash[a] + d.sum() + q @ risk.value
        if equity < req.maintenance:
            expected.append(a)
    assert result.liquidatable.tolist() == expected
    assert 0 < len(expected) < n_accounts  # the book has both sides of the edge
    assert result.exact_checked < n_accounts  # the bound cleared some accounts cheaply


def test_greek_limit_breach_is_liquidated_delta_first_through_the_engine():
    engine, ledger = venue(GreekLimits(delta_usd=50_000, gamma_usd=1e9, vega_usd=1e9))
    call = OptionSeries("BTCUSDT", 30 * DAY_MS, price("55000"), True)
    ledger.list_series(call, ts=0)
    ledger.trade("alice", "bob", call, qty("1"), price("7000"), ts=0)
    engine.trade("alice", "BTCUSDT", qty("0.5"), ts=0)
    before = account_risk(engine, ledger, "alice", ts=0)
    assert before.greeks["BTCUSDT"]["delta_usd"] > 50_000
    events = len(ledger.events)
    with pytest.raises(StaleOracleError):  # no fresh price at 1 h: nothing is done or logged
        execute_greek_plan(engine, ledger, "alice", ts=HOUR_MS)
    assert len(ledger.events) == events
    engine.update_price("BTCUSDT", price("60000"), ts=HOUR_MS)
    engine.update_price("ETHUSDT", price("3000"), ts=HOUR_MS)
    steps = execute_greek_plan(engine, ledger, "alice", ts=HOUR_MS)
    assert steps and not any(s.skipped for s in steps)
    assert all(s.greek == "delta_usd" and s.lots < 0 for s in steps)
    after = account_risk(engine, ledger, "alice", ts=HOUR_MS)
    assert abs(after.greeks["BTCUSDT"]["delta_usd"]) <= 50_000 * 1.001
    assert not after.breaches_limits
    kinds = [e.kind for e in ledger.events]
    assert kinds.index("greek_breach") < len(kinds) - 1  # the breach is logged before fills
    # The matched book holds: the vault took the other side of every option close.
    assert sum(ledger.cash.values()) == 0
    assert sum(q for book in ledger.positions.values() for q in book.values()) == 0
    assert execute_greek_plan(engine, ledger, "alice", ts=HOUR_MS) == []


def test_option_trades_must_pass_the_margin_rule_on_the_combined_book():
    engine, ledger = venue()
    engine.deposit("carol", usd("1000"), ts=0)
    call, put = straddle()
    for s in (call, put):
        ledger.list_series(s, ts=0)
    # Carol's 1,000 USD cannot carry a short straddle on 5 BTC: refused, nothing changes.
    with pytest.raises(InsufficientMarginError):
        admission.trade(engine, ledger, "bob", "carol", call, qty("5"), price("1900"), ts=0)
    assert ledger.cash == {} and ledger.lots("carol") == {}
    # Alice's 100,000 USD can, and closing it again reduces risk, so that passes too.
    admission.trade(engine, ledger, "bob", "alice", call, qty("5"), price("1900"), ts=0)
    state = admission.margin_state(engine, ledger, "alice", 0)
    assert state.equity >= state.initial > state.maintenance > 0
    admission.trade(engine, ledger, "alice", "bob", call, qty("5"), price("1900"), ts=0)
    assert ledger.lots("alice") == {} and sum(ledger.cash.values()) == 0
