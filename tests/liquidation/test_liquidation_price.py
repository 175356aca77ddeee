"""Liquidation prices agree with the engine to one micro-USD tick, over random accounts."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from liquidation.config import AssetConfig, EngineConfig, OracleGuardConfig, PortfolioMarginConfig
from liquidation.engine import Engine
from liquidation.errors import InsufficientMarginError, UnknownAccountError
from liquidation.liquidation_price import crossings, liquidation_prices
from liquidation.money import MICRO, price, usd
from tests.liquidation.liq_builders import HOUR_MS, snapshot

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
START = {"BTCUSDT": price("60000"), "ETHUSDT": price("3000"), "SOLUSDT": price("150")}
T_EVAL = 3 * HOUR_MS


def config() -> EngineConfig:
    return EngineConfig(
        assets=tuple(AssetConfig(s) for s in SYMBOLS),  # size scaling and OI scaling on
        oracle=OracleGuardConfig(heartbeat_ms=2 * HOUR_MS),
        portfolio=PortfolioMarginConfig(
            correlation=((1.0, 0.8, 0.7), (0.8, 1.0, 0.75), (0.7, 0.75, 1.0))
        ),
    )


legs = st.lists(
    st.tuples(
        st.sampled_from(SYMBOLS),
        st.floats(min_value=2_000, max_value=400_000),  # notional USD
        st.booleans(),  # long
        st.booleans(),  # opened after the multiplier rise (new risk, full target)
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda leg: leg[0],
)


def build(legs, collateral_usd, multiplier, portfolio, isolated_first) -> Engine | None:
    engine = Engine(config())
    for s in SYMBOLS:
        engine.update_price(s, START[s], ts=0)
        engine.apply_snapshot(snapshot(s, 1, 1.0), ts=0)
    engine.deposit("vault", usd("100000000"), ts=0)
    engine.deposit("alice", round(collateral_usd * MICRO), ts=0)
    late = []
    for i, (symbol, notional, long, after) in enumerate(legs):
        lots = round(notional / (START[symbol] / MICRO) * 1e8) * (1 if long else -1)
        if after:
            late.append((symbol, lots))
            continue
        isolated = isolated_first and i == 0
        margin = round(collateral_usd * MICRO / 3) if isolated else 0
        try:
            engine.trade("alice", symbol, lots, ts=0, isolated=isolated, margin=margin)
        except InsufficientMarginError:
            return None
    if portfolio:
        try:
            engine.set_margin_mode("alice", True, ts=0)
        except InsufficientMarginError:
            return None
    for s in SYMBOLS:
        engine.apply_snapshot(
            snapshot(s, 2, multiplier, as_of_ms=HOUR_MS, previous=1.0), ts=HOUR_MS
        )
    for s in SYMBOLS:
        engine.update_price(s, START[s], ts=T_EVAL - HOUR_MS)
    for symbol, lots in late:
        try:
            engine.trade("alice", symbol, lots, ts=T_EVAL - HOUR_MS)
        except InsufficientMarginError:
            return None
    for s in SYMBOLS:
        engine.update_price(s, START[s], ts=T_EVAL)
    return engine


def engine_liquidates(engine: Engine, bucket: str, symbol: str, oracle: int, funding) -> bool:
    """Print ``oracle`` (with an agreeing reference feed) on a copy and ask the engine."""
    probe = copy.deepcopy(engine)
    probe.update_price(symbol, oracle, ts=T_EVAL, reference=oracle)
    assert not probe.view(T_EVAL).assets[symbol].guarded
    for asset, rate in funding.items():
        probe.apply_funding(asset, rate, ts=T_EVAL)
    return bucket in probe.liquidatable(T_EVAL)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(
    legs,
    st.floats(min_value=5_000, max_value=200_000),
    st.floats(min_value=1.0, max_value=3.0),
    st.booleans(),
    st.booleans(),
    st.one_of(st.just(None), st.floats(min_value=-0.002, max_value=0.002)),
)
def test_engine_liquidates_one_tick_beyond_and_not_one_tick_before(
    legs, collateral, multiplier, portfolio, isolated_first, funding_rate
):
    engine = build(legs, collateral, multiplier, portfolio and not isolated_first, isolated_first)
    assume(engine is not None)
    funding = {} if funding_rate is None else {legs[0][0]: funding_rate}
    checked = 0
    for bucket in engine.buckets_of("alice"):
        if not engine.state.buckets[bucket].positions:
            continue
        for result in liquidation_prices(engine, bucket, T_EVAL, accrued_funding=funding):
            assume(not result.liquidatable_now)
            for crossing, toward_now in ((result.below, +1), (result.above, -1)):
                if crossing is None:
                    continue
                before = crossing + toward_now
                assert not engine_liquidates(engine, bucket, result.asset, before, funding)
                assert engine_liquidates(engine, bucket, result.asset, crossing, funding)
                checked += 1
            lots = engine.state.buckets[bucket].positions[result.asset].lots
            if not engine.state.buckets[bucket].portfolio:
                # Standard margin: a long falls to its price, a short rises to it.
                assert (result.above is None) if lots > 0 else (result.below is None)
    assume(checked > 0)


def test_long_liquidation_price_reflects_the_ramp_and_funding():
    legs_ = [("BTCUSDT", 300_000.0, True, False)]
    engine = build(legs_, 30_000.0, 2.0, False, False)
    assert engine is not None
    (plain,) = liquidation_prices(engine, "alice", T_EVAL)
    assert plain.above is None and plain.below is not None and plain.below < plain.oracle
    # Later in the ramp the maintenance multiplier is higher: liquidation comes sooner.
    for s in SYMBOLS:
        engine.update_price(s, START[s], ts=T_EVAL + 4 * HOUR_MS)
    (later,) = liquidation_prices(engine, "alice", T_EVAL + 4 * HOUR_MS)
    assert later.below > plain.below
    # Funding a long owes pulls its liquidation price up; funding it receives pushes it down.
    (pays,) = liquidation_prices(engine, "alice", accrued_funding={"BTCUSDT": 0.001})
    (gets,) = liquidation_prices(engine, "alice", accrued_funding={"BTCUSDT": -0.001})
    assert gets.below < later.below < pays.below


def test_crossings_and_errors():
    assert crossings(lambda p: p <= 1_000, 5_000) == (1_000, None)
    assert crossings(lambda p: p >= 7_777_777, 5_000) == (None, 7_777_777)
    engine = build([("BTCUSDT", 10_000.0, True, False)], 50_000.0, 1.0, False, False)
    with pytest.raises(UnknownAccountError):
        liquidation_prices(engine, "nobody")
