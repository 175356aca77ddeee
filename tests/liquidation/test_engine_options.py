"""Options inside the engine: joint margin in the scan and the waterfall, Greek-limit
deleveraging and expiry as engine commands, persistence through the SQLite event log."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from liquidation import fuzz
from liquidation.audit import LedgerAudit
from liquidation.config import AssetConfig, EngineConfig, OracleGuardConfig, PortfolioMarginConfig
from liquidation.engine import Engine
from liquidation.errors import (
    GuardedAssetError,
    InputError,
    InsufficientMarginError,
    NotLiquidatableError,
    StaleOracleError,
)
from liquidation.events import SQLiteEventStore, split_commands
from liquidation.invariants import violations
from liquidation.liquidation_price import liquidation_prices
from liquidation.money import MICRO, price, qty, usd
from liquidation.options.config import GreekLimits, OptionsConfig
from liquidation.options.series import OptionSeries
from liquidation.options.surface import VolSurface
from liquidation.state import state_digest
from liquidation.valuation import equity, maintenance_margin
from tests.liquidation.liq_builders import HOUR_MS, snapshot

DAY_MS = 24 * HOUR_MS
EXPIRY = 7 * DAY_MS
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def config(limits: GreekLimits | None = None) -> EngineConfig:
    return EngineConfig(
        assets=tuple(AssetConfig(s) for s in SYMBOLS),
        options=OptionsConfig(limits=limits or GreekLimits()),
    )


def venue(limits: GreekLimits | None = None, store: SQLiteEventStore | None = None) -> Engine:
    engine = Engine(config(limits), store)
    prices = {"BTCUSDT": price("60000"), "ETHUSDT": price("3000")}
    for s in SYMBOLS:
        engine.update_price(s, prices[s], ts=0)
        engine.apply_snapshot(snapshot(s, 1, 1.0), ts=0)
    engine.deposit("vault", usd("10000000"), ts=0)
    engine.deposit("bob", usd("1000000"), ts=0)
    return engine


def reprice(engine: Engine, btc: str, ts: int, eth: str = "3000") -> None:
    """New prints, each confirmed by a reference quote (so the guard accepts a jump)."""
    for symbol, level in (("BTCUSDT", btc), ("ETHUSDT", eth)):
        verdict = engine.update_price(symbol, price(level), ts=ts, reference=price(level))
        assert engine.view(ts).assets[symbol].price is not None, verdict


def checked(engine: Engine) -> None:
    """Invariants, the independent audit of the whole log, and replay = live state."""
    assert violations(engine) == []
    audit = LedgerAudit()
    commands, torn = split_commands(list(engine.log))
    assert torn == []
    for command in commands:
        audit.consume(command)
    assert audit.compare(engine.state) == []
    assert Engine.replay(list(engine.log), engine.config).digest() == engine.digest()


def hedged_account(engine: Engine) -> str:
    """Alice: 10 deep in-the-money calls bought, hedged by a 10 BTC short perpetual."""
    call = engine.list_option(OptionSeries("BTCUSDT", EXPIRY, price("50000"), True), ts=0)
    mark = engine.option_mark(call)
    engine.deposit("alice", 10 * mark + usd("3000"), ts=0)
    engine.trade("alice", "BTCUSDT", -qty("10"), ts=0)
    engine.trade_option("alice", call, qty("10"), mark, ts=0)
    return call


def test_delta_hedged_account_a_perp_only_check_would_liquidate_is_not_liquidated():
    engine = venue()
    hedged_account(engine)
    alice = engine.state.buckets["alice"]
    view = engine.view()
    # The perpetual alone: its equity (collateral left after the premium) is below its
    # standard maintenance, so a perpetual-only scan would liquidate Alice...
    perp_equity = equity(alice.balance, alice.positions.values(), view)
    perp_mm = maintenance_margin(alice.positions.values(), alice.portfolio, view)
    assert perp_equity < perp_mm
    # ...but the joint grid nets the calls against the short: healthy, with room.
    assert engine.equity("alice") > 5 * engine.maintenance_margin("alice") > 0
    assert "alice" not in engine.liquidatable()
    # A 10% rally: the perpetual alone loses 60,000 USD, the calls gain about as much.
    reprice(engine, "66000", ts=HOUR_MS)
    alice = engine.state.buckets["alice"]
    assert equity(alice.balance, alice.positions.values(), engine.view()) < 0
    assert engine.run_liquidations(keeper="keeper", ts=HOUR_MS) == []
    assert engine.state.buckets["alice"].options and engine.health("alice") > 1
    checked(engine)


def carol_sells_a_straddle(engine) -> tuple[str, str]:
    """Carol (40k USD, no perpetual) sells Bob 2 BTC of the 60k straddle; the two series."""
    call, put = (
        engine.list_option(OptionSeries("BTCUSDT", EXPIRY, price("60000"), c), ts=0)
        for c in (True, False)
    )
    engine.deposit("carol", usd("40000"), ts=0)
    for name in (call, put):
        engine.trade_option("bob", name, qty("2"), engine.option_mark(name), ts=0, seller="carol")
    return call, put


def test_naked_short_options_are_found_by_the_scan_and_liquidated_through_the_waterfall():
    engine = venue()
    carol_sells_a_straddle(engine)
    assert not engine.state.buckets["carol"].positions  # no perpetual: a perp scan sees nothing
    assert "carol" not in engine.liquidatable()
    reprice(engine, "75000", ts=HOUR_MS)
    assert engine.liquidatable(HOUR_MS) == ["carol"]
    with pytest.raises(InputError):
        engine.liquidate("carol", keeper="carol", ts=HOUR_MS)
    report = engine.liquidate("carol", keeper="keeper", ts=HOUR_MS)
    assert report.equity_before < report.mm_before
    assert not engine.state.buckets["carol"].options  # the vault bought the shorts back
    assert engine.state.buckets["vault"].options
    assert engine.state.liquidations == 1
    checked(engine)


def test_liquidation_refused_at_a_guarded_price_of_an_option_underlying():
    engine = venue()
    call = engine.list_option(OptionSeries("BTCUSDT", EXPIRY, price("60000"), True), ts=0)
    engine.deposit("carol", usd("15000"), ts=0)
    engine.trade_option("bob", call, qty("1"), engine.option_mark(call), ts=0, seller="carol")
    # No BTC print for far longer than the heartbeat: stale, nothing values or liquidates it.
    engine.update_price("ETHUSDT", price("3000"), ts=DAY_MS)
    assert engine.liquidatable(DAY_MS) == []
    with pytest.raises((StaleOracleError, GuardedAssetError)):
        engine.liquidate("carol", keeper="keeper", ts=DAY_MS)


def test_option_trades_pass_the_margin_rule_on_the_combined_book_atomically():
    engine = venue()
    call = engine.list_option(OptionSeries("BTCUSDT", EXPIRY, price("60000"), True), ts=0)
    engine.deposit("carol", usd("1000"), ts=0)
    before, size = engine.digest(), len(engine.log)
    with pytest.raises(InsufficientMarginError):
        engine.trade_option("bob", call, qty("5"), price("1900"), ts=0, seller="carol")
    assert engine.digest() == before and len(engine.log) == size
    with pytest.raises(InputError):
        engine.trade_option("bob", "BTCUSDT-nope", qty("1"), price("1"), ts=0)
    with pytest.raises(InputError):
        engine.trade_option("bob", call, -qty("1"), price("1"), ts=0)


def test_greek_limit_breach_is_deleveraged_delta_first_in_one_command():
    engine = venue(GreekLimits(delta_usd=50_000, gamma_usd=1e9, vega_usd=1e9))
    call = engine.list_option(OptionSeries("BTCUSDT", 30 * DAY_MS, price("55000"), True), ts=0)
    engine.deposit("alice", usd("100000"), ts=0)
    engine.trade_option("alice", call, qty("1"), engine.option_mark(call), ts=0)
    engine.trade("alice", "BTCUSDT", qty("0.5"), ts=0)
    breached = engine.greek_breaches("alice")
    assert [(u, g) for u, g, _ in breached] == [("BTCUSDT", "delta_usd")]
    with pytest.raises(StaleOracleError):  # no fresh price a day later: nothing is logged
        engine.deleverage_greeks("alice", keeper="keeper", ts=DAY_MS)
    reprice(engine, "60000", ts=DAY_MS)
    commands = engine.state.n_commands
    steps = engine.deleverage_greeks("alice", keeper="keeper", ts=DAY_MS)
    assert engine.state.n_commands == commands + 1  # breach record and every close: one command
    assert steps and not any(s.skipped for s in steps)
    assert all(s.greek == "delta_usd" and s.lots < 0 for s in steps)
    assert engine.greek_breaches("alice") == []
    kinds = [e.kind for e in engine.log.since(0) if e.cmd == commands]
    assert kinds[0] == "greek_breach" and len(kinds) > 1
    with pytest.raises(NotLiquidatableError):
        engine.deleverage_greeks("alice", keeper="keeper", ts=DAY_MS)
    checked(engine)


def test_value_is_conserved_through_expiry_and_settlement_in_the_engine():
    engine = venue()
    engine.set_vol_surface("BTCUSDT", VolSurface(atm_vol=0.6, skew=-0.1, curvature=0.2), ts=0)
    names = [
        engine.list_option(OptionSeries("BTCUSDT", EXPIRY, price(k), c), ts=0)
        for k in ("55000", "60000", "65000")
        for c in (True, False)
    ]
    for i, account in enumerate(("alice", "carol", "dave")):
        engine.deposit(account, usd("200000"), ts=0)
        for j, name in enumerate(names):
            lots = qty("0.37") * (i + 1) + j
            engine.trade_option(account, name, lots, engine.option_mark(name), ts=0)
    engine.trade_option("bob", names[1], qty("3"), engine.option_mark(names[1]), ts=0,
                        seller="alice")  # fmt: skip
    reprice(engine, "61234.567891", ts=EXPIRY)
    buckets = sorted(b for b, x in engine.state.buckets.items() if x.options)
    before = {b: engine.equity(b) for b in buckets}
    balances = sum(x.balance for x in engine.state.buckets.values())
    assert engine.settle_options(EXPIRY, ts=EXPIRY) == len(names)
    after = {b: engine.equity(b) for b in buckets}
    # Each account's value at the settlement price is kept to one micro-USD per series it
    # held (the truncation of each value), the total exactly (premiums and payments are
    # transfers between balances).
    for b in buckets:
        assert abs(after[b] - before[b]) <= len(names) + 1
    assert sum(x.balance for x in engine.state.buckets.values()) == balances
    assert not engine.state.options.series
    assert all(not x.options for x in engine.state.buckets.values())
    assert engine.settle_options(EXPIRY, ts=EXPIRY) == 0
    checked(engine)


def test_settlement_is_refused_before_expiry_and_at_a_stale_price():
    engine = venue()
    engine.list_option(OptionSeries("BTCUSDT", EXPIRY, price("60000"), True), ts=0)
    with pytest.raises(InputError):
        engine.settle_options(EXPIRY, ts=EXPIRY - 1)
    engine.update_price("ETHUSDT", price("3000"), ts=EXPIRY)
    with pytest.raises(StaleOracleError):
        engine.settle_options(EXPIRY, ts=EXPIRY)
    assert engine.state.options.series


def _option_session(engine: Engine) -> None:
    hedged_account(engine)
    call = engine.list_option(OptionSeries("BTCUSDT", EXPIRY, price("62000"), True), ts=0)
    engine.deposit("carol", usd("20000"), ts=0)
    engine.trade_option("bob", call, qty("2"), engine.option_mark(call), ts=0, seller="carol")
    reprice(engine, "78000", ts=HOUR_MS)
    engine.run_liquidations(keeper="keeper", ts=HOUR_MS)
    reprice(engine, "61000", ts=EXPIRY)
    engine.settle_options(EXPIRY, ts=EXPIRY)


def test_options_persist_in_the_sqlite_log_and_a_restart_replays_the_same_state(
    tmp_path: Path,
):
    path = tmp_path / "engine.sqlite"
    with SQLiteEventStore(path) as store:
        live = venue(store=store)
        _option_session(live)
        digest = live.digest()
        assert any(e.kind == "option_expiry" for e in live.log)
        assert live.state.liquidations >= 1
    assert Engine.from_store(path, config()).digest() == digest
    with SQLiteEventStore(path) as store:
        resumed = Engine.resume(store, config())
        assert resumed.digest() == digest
        checked(resumed)


def test_a_crash_at_every_event_boundary_recovers_the_last_whole_command(tmp_path: Path):
    live = venue()
    _option_session(live)
    events = list(live.log)
    commands, _ = split_commands(events)
    chosen = [
        c for c in commands
        if len(c) > 1 and any(e.kind.startswith(("option", "greek")) for e in c)
    ]  # fmt: skip
    assert any(any(e.kind == "liquidation" for e in c) for c in chosen)
    # (An expiry is one event: written whole or not at all.)
    for command in chosen:
        start = command[0].seq
        expected = state_digest(Engine.replay(events[:start], config()).state, counters=False)
        for cut in range(1, len(command)):
            path = tmp_path / f"cut-{start}-{cut}.sqlite"
            with SQLiteEventStore(path) as store:
                store.append(events[: start + cut])
            with SQLiteEventStore(path) as store:
                recovered = Engine.resume(store, config())
                assert recovered.log[-1].kind == "abort" and not recovered.torn_tail
                # The torn command never happened; the state is the one before it.
                assert state_digest(recovered.state, counters=False) == expected
                assert violations(recovered) == []
            assert Engine.from_store(path, config()).digest() == recovered.digest()


def test_option_events_are_refused_for_unknown_accounts_and_expired_series():
    engine = venue()
    with pytest.raises(InputError):
        engine.list_option(OptionSeries("BTCUSDT", 0 + 1, price("1"), True), ts=HOUR_MS)
    name = engine.list_option(OptionSeries("BTCUSDT", EXPIRY, price("60000"), True), ts=0)
    with pytest.raises(InputError):
        engine.list_option(OptionSeries("BTCUSDT", EXPIRY, price("60000"), True), ts=0)
    reprice(engine, "60000", ts=EXPIRY)
    with pytest.raises(InputError):
        engine.trade_option("bob", name, qty("1"), MICRO, ts=EXPIRY)


def test_short_fuzz_run_with_option_commands_finds_no_invariant_failure():
    """The seeded fuzzer's options mode (``make fuzz`` runs the long version): invariants,
    the audit and replay after every command, with options listed, traded, closed, settled,
    deleveraged and liquidated."""
    report = fuzz.run(range(4), 250, options=True)
    assert report.failures == [], "\n".join(map(str, report.failures[:5]))
    for event in ("option_fill:trade", "option_fill:liquidation", "option_expiry"):
        assert report.events[event] > 0, f"the run never reached {event}"
    assert report.outcomes["trade_option:ok"] > 30
    assert report.outcomes["trade_option:refused"] > 0


# -- liquidation prices of accounts holding options, against the engine, to one tick --------
PRICE_START = {"BTCUSDT": price("60000"), "ETHUSDT": price("3000")}
T_EVAL = HOUR_MS

option_legs = st.lists(
    st.tuples(
        st.sampled_from(SYMBOLS),
        st.sampled_from([0.8, 0.95, 1.0, 1.05, 1.25]),  # strike / spot
        st.sampled_from([2, 7, 30]),  # days to expiry
        st.booleans(),  # call
        st.floats(min_value=0.05, max_value=3.0),  # units of BTC-equivalent notional
        st.booleans(),  # long
    ),
    min_size=1,
    max_size=3,
)
perp_legs = st.lists(
    st.tuples(st.sampled_from(SYMBOLS), st.floats(min_value=-3.0, max_value=3.0)),
    max_size=2,
    unique_by=lambda leg: leg[0],
)


def options_account(options, perps, collateral) -> Engine | None:
    engine = Engine(
        EngineConfig(
            assets=tuple(AssetConfig(s) for s in SYMBOLS),
            oracle=OracleGuardConfig(heartbeat_ms=2 * HOUR_MS),
            portfolio=PortfolioMarginConfig(correlation=((1.0, 0.8), (0.8, 1.0))),
        )
    )
    for s in SYMBOLS:
        engine.update_price(s, PRICE_START[s], ts=0)
        engine.apply_snapshot(snapshot(s, 1, 1.0), ts=0)
    engine.deposit("vault", usd("100000000"), ts=0)
    engine.deposit("alice", round(collateral * MICRO), ts=0)
    scale = {"BTCUSDT": 1.0, "ETHUSDT": 20.0}
    try:
        for symbol, units in perps:
            lots = round(units * scale[symbol] * 1e8)
            # A leg below the venue's minimum order is refused as dust (InputError): no leg.
            notional_usd = abs(lots) / 1e8 * PRICE_START[symbol] / MICRO
            if notional_usd >= engine.config.fees.min_order_notional_usd:
                engine.trade("alice", symbol, lots, ts=0)
        for symbol, moneyness, days, call, units, long in options:
            strike = round(PRICE_START[symbol] * moneyness)
            series = OptionSeries(symbol, days * DAY_MS, strike, call)
            if series.name not in engine.state.options.series:
                engine.list_option(series, ts=0)
            lots = round(units * scale[symbol] * 1e8)
            mark = engine.option_mark(series.name)
            if long:
                engine.trade_option("alice", series.name, lots, mark, ts=0)
            else:
                engine.trade_option("vault", series.name, lots, mark, ts=0, seller="alice")
    except InsufficientMarginError:
        return None
    for s in SYMBOLS:
        engine.update_price(s, PRICE_START[s], ts=T_EVAL)
    return engine


def engine_liquidates(engine: Engine, symbol: str, oracle: int) -> bool:
    """Print ``oracle`` (with an agreeing reference) on a copy and ask the engine's scan."""
    probe = copy.deepcopy(engine)
    probe.update_price(symbol, oracle, ts=T_EVAL, reference=oracle)
    assert not probe.view(T_EVAL).assets[symbol].guarded
    return "alice" in probe.liquidatable(T_EVAL)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(option_legs, perp_legs, st.floats(min_value=2_000, max_value=100_000))
def test_liquidation_prices_of_option_accounts_agree_with_the_engine_to_one_tick(
    options, perps, collateral
):
    engine = options_account(options, perps, collateral)
    assume(engine is not None)
    checked = 0
    for result in liquidation_prices(engine, "alice", T_EVAL):
        assume(not result.liquidatable_now)
        for crossing, toward_now in ((result.below, +1), (result.above, -1)):
            if crossing is None:
                continue
            assert not engine_liquidates(engine, result.asset, crossing + toward_now)
            assert engine_liquidates(engine, result.asset, crossing)
            checked += 1
    assume(checked > 0)


def test_debt_left_by_an_expiry_is_covered_by_the_fund_in_the_same_command():
    """A short call nobody liquidated before expiry (no keeper ran) expires deep in the
    money: settlement would leave debt and no position, so the fund covers it at once."""
    engine = venue()
    engine.seed_insurance(usd("50000"), ts=0)
    call = engine.list_option(OptionSeries("BTCUSDT", EXPIRY, price("60000"), True), ts=0)
    engine.deposit("carol", usd("15000"), ts=0)
    engine.trade_option("bob", call, qty("1"), engine.option_mark(call), ts=0, seller="carol")
    reprice(engine, "90000", ts=EXPIRY)
    assert "carol" in engine.liquidatable(EXPIRY)
    fund = engine.state.insurance.fund
    engine.settle_options(EXPIRY, ts=EXPIRY)
    carol = engine.state.buckets["carol"]
    assert not carol.options and carol.balance == 0
    assert engine.state.insurance.fund < fund
    kinds = [e.kind for e in engine.log.since(0) if e.cmd == engine.state.n_commands - 1]
    assert kinds == ["option_expiry", "fund_cover"]
    checked(engine)


# -- the engine's scan, summary and stressed loss cover option holders -----------------------
def _exact_holders(engine: Engine, ts: int) -> dict[str, tuple[int, int]]:
    return {
        b: (engine.equity(b, ts), engine.maintenance_margin(b, ts))
        for b, bucket in engine.state.buckets.items()
        if bucket.options
    }


def test_the_scan_values_option_holders_on_their_joint_grid():
    engine = venue()
    hedged_account(engine)
    carol_sells_a_straddle(engine)
    engine.deposit("dave", usd("5000"), ts=0)
    engine.trade("dave", "BTCUSDT", qty("1"), ts=0)  # perpetuals only: the perpetual scan
    ids = engine.state.book.bucket_ids
    for ts, btc in ((0, None), (HOUR_MS, "75000")):
        if btc is not None:
            reprice(engine, btc, ts=ts)
        scan = engine.scan(ts)
        for bucket, (eq, mm) in _exact_holders(engine, ts).items():
            i = ids.index(bucket)
            assert scan.equity[i] == pytest.approx(eq / MICRO, abs=1e-3)
            assert scan.maintenance[i] == pytest.approx(mm / MICRO, rel=1e-9, abs=1e-3)
        flagged = {ids[i] for i in scan.liquidatable}
        exact = set(engine.liquidatable(ts))
        assert exact <= flagged
        assert {ids[i] for i in engine.scan(ts, detail=False).liquidatable} >= exact
        assert ("alice" in flagged) == (
            scan.equity[ids.index("alice")] < scan.maintenance[ids.index("alice")]
        )
    # After the rally: Carol's naked shorts are found, the hedged Alice is not, Dave (a
    # long perpetual) gains and stays healthy.
    assert engine.liquidatable(HOUR_MS) == ["carol"]
    assert "alice" not in {ids[i] for i in engine.scan(HOUR_MS).liquidatable}


def test_summary_gives_option_holders_the_nearest_exact_liquidation_price():
    engine = venue()
    carol_sells_a_straddle(engine)
    summary = engine.summary("carol")
    (row,) = liquidation_prices(engine, "carol")
    assert row.below is not None and row.above is not None
    nearest = min((row.below, row.above), key=lambda p: abs(p - row.oracle))
    assert summary.liquidation_prices == {"BTCUSDT": nearest}
    assert summary.maintenance_margin == engine.maintenance_margin("carol")


def test_the_stressed_book_loss_of_a_governance_review_includes_options():
    from liquidation.insurance import book_stressed_loss

    engine = venue()
    carol_sells_a_straddle(engine)
    engine.deposit("dave", usd("5000"), ts=0)
    engine.trade("dave", "BTCUSDT", -qty("1"), ts=0)
    k = 20.0  # 60%: Carol's short straddle loses more than her collateral either way
    # Independently: print the shocked prices on copies and ask every bucket's equity.
    sigma = engine.margin_arrays(0).sigma
    worst = 0
    for direction in (1.0, -1.0):
        probe = copy.deepcopy(engine)
        for i, symbol in enumerate(SYMBOLS):
            mark = engine.view(0).assets[symbol].price
            shocked = max(1, round(mark * max(0.0, 1.0 + direction * k * float(sigma[i]))))
            probe.update_price(symbol, shocked, ts=0, reference=shocked)
        worst = max(
            worst, sum(max(0, -probe.equity(b)) for b, x in probe.state.buckets.items()
                       if x.positions or x.options)
        )  # fmt: skip
    loss = engine.stressed_book_loss(0, k)
    assert worst > 0 and loss == pytest.approx(worst, abs=len(engine.state.buckets) + 1)
    # The perpetual-only book sees Dave, not Carol's short straddle.
    assert book_stressed_loss(engine.state.book, engine.margin_arrays(0), k) < loss
    decision = engine.review_insurance(ts=0, k_sigma=k)
    assert decision.stressed_loss >= loss


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(
    option_legs,
    perp_legs,
    st.floats(min_value=2_000, max_value=100_000),
    st.sampled_from(["42000", "57000", "60000", "66000", "90000"]),
)
def test_the_scan_equals_the_exact_check_on_random_option_accounts(options, perps, collateral, btc):
    engine = options_account(options, perps, collateral)
    assume(engine is not None)
    ts = T_EVAL + 1
    engine.update_price("BTCUSDT", price(btc), ts=ts, reference=price(btc))
    ids = engine.state.book.bucket_ids
    scan = engine.scan(ts)
    for bucket, (eq, mm) in _exact_holders(engine, ts).items():
        i = ids.index(bucket)
        assert scan.equity[i] == pytest.approx(eq / MICRO, abs=1e-3)
        assert scan.maintenance[i] == pytest.approx(mm / MICRO, rel=1e-9, abs=1e-3)
    exact = set(engine.liquidatable(ts))
    assert exact <= {ids[i] for i in scan.liquidatable}
    assert exact == {
        b for b, x in engine.state.buckets.items()
        if (x.positions or x.options) and engine.health(b, ts) < 1
    }  # fmt: skip
