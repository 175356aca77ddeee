"""Unit tests of the pure parts: money, snapshot parsing, oracle guard, margin, portfolio."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liquidation.accounts import Position
from liquidation.config import (
    AssetConfig,
    EngineConfig,
    InsuranceConfig,
    MarkConfig,
    OracleGuardConfig,
    PortfolioMarginConfig,
)
from liquidation.errors import ConfigError, SnapshotValidationError, UnknownAssetError
from liquidation.fills import fill_events, segments
from liquidation.funding import funding_payments
from liquidation.insurance import historical_stressed_loss, review
from liquidation.mark import decayed_basis, mark_price, updated_basis
from liquidation.money import (
    MICRO,
    charge,
    div_trunc,
    price,
    qty,
    split_pro_rata,
    to_usd,
    usd,
    value,
)
from liquidation.portfolio import portfolio_requirement, scenario_directions, scenario_returns
from liquidation.rules.adl import AdlCandidate, AdlFill, allocate, rank_candidates
from liquidation.rules.closeout import slippage_rate
from liquidation.rules.margin import (
    MarginState,
    initial_requirement,
    maintenance_requirement,
    may_update,
    oi_scaled_fraction,
    position_fraction,
)
from liquidation.rules.multiplier import target_multiplier
from liquidation.rules.oracle_guard import (
    PriceObservation,
    ReferenceQuote,
    check_observation,
    is_stale,
    reference_price,
    update_twap,
)
from liquidation.rules.ramp import RampState, classes, multiplier, ramped_multiplier, retarget
from liquidation.rules.socialization import socialize
from liquidation.snapshot import MarginParameters, check_bounds
from tests.liquidation.liq_builders import HOUR_MS, snapshot

BTC = AssetConfig("BTCUSDT")


# -- money ------------------------------------------------------------------------------------
def test_fixed_point_conversions() -> None:
    assert usd("1.25") == 1_250_000
    assert qty("0.00000001") == 1
    assert price("60000") == 60_000 * MICRO
    assert to_usd(1_250_000) == Decimal("1.25")
    with pytest.raises(TypeError, match="not float"):
        usd(1.25)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a decimal"):
        usd("abc")


def test_value_truncates_toward_zero_symmetrically() -> None:
    assert div_trunc(-7, 2) == -3 and div_trunc(7, 2) == 3 and div_trunc(7, -2) == -3
    # 1 lot (1e-8 units) at 150 USD is worth 1.5 micro-USD: truncated to 1 either side.
    assert value(1, 150_000_000) == 1 and value(-1, 150_000_000) == -1
    assert value(qty("2"), price("50000")) == usd("100000")
    assert charge(10, 0.15) == 2  # 1.5 rounded up: charges favour the venue


@given(total=st.integers(0, 10**12), weights=st.lists(st.integers(0, 10**9), min_size=1))
def test_split_pro_rata_is_exact(total: int, weights: list[int]) -> None:
    if sum(weights) == 0:
        with pytest.raises(ValueError):
            split_pro_rata(total, weights)
        return
    parts = split_pro_rata(total, weights)
    assert sum(parts) == total
    assert all(p >= 0 for p in parts)
    # Each part is within one unit of its exact share.
    for part, w in zip(parts, weights, strict=True):
        assert abs(part - total * w / sum(weights)) <= 1


# -- config -----------------------------------------------------------------------------------
def test_config_validation_names_the_field() -> None:
    with pytest.raises(ConfigError, match="maintenance_fraction"):
        AssetConfig("X", maintenance_fraction=1.5)
    with pytest.raises(ConfigError, match="repeats"):
        EngineConfig(assets=(BTC, BTC))
    with pytest.raises(ConfigError, match="2x2"):
        EngineConfig(
            assets=(BTC, AssetConfig("ETHUSDT")),
            portfolio=PortfolioMarginConfig(correlation=((1.0,),)),
        )
    with pytest.raises(UnknownAssetError, match="DOGE"):
        EngineConfig(assets=(BTC,)).asset("DOGE")


# -- snapshot ---------------------------------------------------------------------------------
def test_snapshot_parses_the_v1_shape() -> None:
    params = MarginParameters.from_risk_snapshot(snapshot("BTCUSDT", 42, 1.25, as_of_ms=HOUR_MS))
    assert params.update_id == 42 and params.multiplier == 1.25
    assert params.as_of_ms == HOUR_MS and params.valid_until_ms == 25 * HOUR_MS
    assert params.slippage_bps == 8.0 and params.sigma == 0.03
    assert MarginParameters.from_dict(params.to_dict()) == params


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.update(schema="dynamargin.risk/9"), "schema"),
        (lambda s: s.pop("sigma"), "'sigma' must be a number"),
        (lambda s: s.update(status="maybe"), "status"),
        (lambda s: s["margin"].update(multiplier=-1.0), "multiplier"),
        (lambda s: s.update(valid_until=s["as_of"]), "valid_until"),
        (lambda s: s.update(as_of="yesterday"), "as_of"),
        (lambda s: s.pop("liquidity"), "liquidity"),
        (lambda s: s["margin"].update(base_mmf=0.9), "base_mmf"),
    ],
)
def test_snapshot_validation_errors(mutate, message: str) -> None:
    data = snapshot("BTCUSDT", 1, 1.0)
    mutate(data)
    with pytest.raises(SnapshotValidationError, match=message):
        MarginParameters.from_risk_snapshot(data)


def test_target_multiplier_falls_back_conservatively() -> None:
    ok = MarginParameters.from_risk_snapshot(snapshot("BTCUSDT", 1, 1.25))
    assert target_multiplier(ok, BTC, 0) == 1.25
    # Absent -> configured fallback 2.0.
    assert target_multiplier(None, BTC, 0) == 2.0
    # Expired -> max(fallback, last multiplier).
    assert target_multiplier(ok, BTC, 25 * HOUR_MS) == 2.0
    high = MarginParameters.from_risk_snapshot(snapshot("BTCUSDT", 2, 3.0))
    assert target_multiplier(high, BTC, 25 * HOUR_MS) == 3.0
    for status in ("stale", "halted"):
        bad = MarginParameters.from_risk_snapshot(snapshot("BTCUSDT", 3, 1.0, status=status))
        assert target_multiplier(bad, BTC, 0) == 2.0
    fallback = MarginParameters.from_risk_snapshot(snapshot("BTCUSDT", 4, 1.7, status="fallback"))
    assert target_multiplier(fallback, BTC, 0) == 1.7
    with pytest.raises(SnapshotValidationError, match="outside"):
        check_bounds(MarginParameters.from_risk_snapshot(snapshot("BTCUSDT", 5, 9.0)), BTC)


# -- oracle guard -----------------------------------------------------------------------------
def test_guard_rejects_wide_band_and_deviation() -> None:
    cfg = OracleGuardConfig(max_deviation=0.05, max_confidence_ratio=0.01)
    px = price("100")
    ok = check_observation(PriceObservation("X", px, 0, confidence=px // 200), None, (), cfg)
    assert ok.accepted
    wide = check_observation(PriceObservation("X", px, 0, confidence=px // 50), None, (), cfg)
    assert (wide.accepted, wide.reason) == (False, "confidence")
    far = check_observation(PriceObservation("X", px, 0, reference=price("90")), None, (), cfg)
    assert (far.accepted, far.reason) == (False, "deviation")
    twap = check_observation(PriceObservation("X", px, 0), price("94"), (), cfg)
    assert not twap.accepted and "TWAP" in twap.detail
    # A reference overrides the TWAP: a confirmed large move is accepted.
    confirmed = PriceObservation("X", px, 0, reference=px)
    assert check_observation(confirmed, price("80"), (), cfg).accepted


def test_guard_reanchors_after_a_consistent_run_but_not_against_a_reference() -> None:
    cfg = OracleGuardConfig(max_deviation=0.05, reanchor_prints=3, reanchor_band=0.02)
    twap, run = price("100"), (price("90"), price("90.5"))
    third = PriceObservation("X", price("90.2"), 0)
    verdict = check_observation(third, twap, run, cfg)
    assert verdict.accepted and verdict.reanchored
    # One print short of the run, or a run wider than the band: still guarded.
    assert not check_observation(third, twap, run[1:], cfg).accepted
    assert not check_observation(third, twap, (price("85"), price("90.5")), cfg).accepted
    # A fresh reference quorum that disagrees decides: no re-anchoring against it.
    against = PriceObservation("X", price("90.2"), 0, reference=price("100"))
    assert not check_observation(against, twap, run, cfg).accepted


def test_reference_median_of_fresh_feeds() -> None:
    cfg = OracleGuardConfig(reference_heartbeat_ms=1_000, min_reference_feeds=2)
    quotes = {
        "a": ReferenceQuote("a", 100, 9_500),
        "b": ReferenceQuote("b", 104, 9_900),
        "c": ReferenceQuote("c", 300, 8_000),  # stale: ignored
    }
    assert reference_price(quotes, 10_000, cfg) == 102
    assert reference_price({"a": quotes["a"]}, 10_000, cfg) is None  # below the quorum
    quotes["d"] = ReferenceQuote("d", 101, 10_000)
    assert reference_price(quotes, 10_000, cfg) == 101


def test_staleness_and_twap() -> None:
    cfg = OracleGuardConfig(heartbeat_ms=1_000, twap_window_ms=10_000)
    assert is_stale(None, 0, cfg)
    assert not is_stale(0, 1_000, cfg) and is_stale(0, 1_001, cfg)
    assert update_twap(None, None, 100, 0, 10_000) == 100
    assert update_twap(100, 0, 200, 5_000, 10_000) == 150  # weight dt / window
    assert update_twap(100, 0, 200, 20_000, 10_000) == 200


# -- margin -----------------------------------------------------------------------------------
def test_margin_fractions_scale_with_size_and_open_interest() -> None:
    asset = AssetConfig("X", size_imf_factor=0.02, oi_lower_usd=1e6, oi_upper_usd=3e6)
    # Below the size threshold the base fraction applies: 0.05 * 1.5.
    assert position_fraction(1e5, 1.5, asset) == pytest.approx(0.075)
    # 0.02 * sqrt(25e6 / 1e6) = 0.1 > 0.075: size scaling binds.
    assert position_fraction(25e6, 1.5, asset) == pytest.approx(0.1)
    assert position_fraction(1e12, 1.0, asset) == asset.imf_cap
    # OI: unchanged below the lower cap, oi_imf_max at the upper, linear in between.
    assert oi_scaled_fraction(0.05, 0.5e6, asset) == 0.05
    assert oi_scaled_fraction(0.05, 2e6, asset) == pytest.approx(0.125)
    assert oi_scaled_fraction(0.05, 9e6, asset) == pytest.approx(0.2)
    notional = usd("100000")
    assert initial_requirement(notional, 1.0, 0.0, asset) == usd("5000")
    assert maintenance_requirement(notional, 1.0, asset) == usd("3000")


@given(
    start=st.floats(0.5, 3.0),
    target=st.floats(0.5, 3.0),
    t0=st.integers(0, 10**6),
    ramp=st.integers(0, 10**6),
    dt=st.integers(-(10**6), 3 * 10**6),
)
def test_ramp_never_exceeds_target_nor_lags_past_its_end(
    start: float, target: float, t0: int, ramp: int, dt: int
) -> None:
    value_now = ramped_multiplier(start, target, t0, ramp, t0 + dt)
    assert value_now <= target
    if dt >= ramp:
        assert value_now == target
    if target > start and 0 <= dt < ramp:
        assert start <= value_now
        later = ramped_multiplier(start, target, t0, ramp, t0 + dt + 1)
        assert later >= value_now


def test_slippage_follows_the_square_root_law_and_is_capped() -> None:
    # 2 bps spread -> 1 bps half spread; 8 bps at the 1M standard size, 16 bps at 4M.
    assert slippage_rate(1e6, 2.0, 8.0, 1e6, 500.0) == pytest.approx(9e-4)
    assert slippage_rate(4e6, 2.0, 8.0, 1e6, 500.0) == pytest.approx(17e-4)
    assert slippage_rate(1e12, 2.0, 8.0, 1e6, 500.0) == pytest.approx(0.05)


# -- portfolio --------------------------------------------------------------------------------
def test_portfolio_grid_hedge_and_determinism() -> None:
    corr = np.array([[1.0, 0.9], [0.9, 1.0]])
    cfg = PortfolioMarginConfig(correlation=((1.0, 0.9), (0.9, 1.0)))
    directions = scenario_directions(corr)
    assert directions.shape == (2, 8)
    np.testing.assert_array_equal(directions, scenario_directions(corr.copy()))
    returns, vol = scenario_returns(np.array([0.03, 0.03]), corr, cfg)
    assert returns.shape == (2, 8 * 7 * 3) and vol.shape == (8 * 7 * 3,)
    liquidity = np.zeros(2)
    book = np.array([50_000.0, -50_000.0])
    hedged = portfolio_requirement(book, np.abs(book), liquidity, returns, vol, 0.0)
    single = np.array([50_000.0, 0.0])
    long_only = portfolio_requirement(single, single, liquidity, returns, vol, 0.0)
    # One asset alone: 3 sigma x vol 1.5 x 50,000 = 6,750.
    assert long_only == pytest.approx(50_000 * 0.03 * 4.5)
    # Spread risk only: sqrt(2 (1 - 0.9)) sigma of each leg = 3,018.6.
    assert hedged == pytest.approx(50_000 * math.sqrt(0.2) * 0.03 * 4.5)
    assert hedged < long_only
    assert portfolio_requirement(np.zeros(2), np.zeros(2), liquidity, returns, vol, 123.0) == 123.0
    # Liquidity cost: 9 bps on the gross notional at the 1.5 vol level, on top of the move.
    with_cost = portfolio_requirement(single, single, np.full(2, 9e-4), returns, vol, 0.0)
    assert with_cost == pytest.approx(long_only + 1.5 * 50_000 * 9e-4)


# -- insurance governance ---------------------------------------------------------------------
@given(
    steps=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 10**9)), max_size=30),
)
@settings(max_examples=50)
def test_governance_stays_in_bounds(steps: list[tuple[int, int]]) -> None:
    cfg = InsuranceConfig()
    share, addon = cfg.initial_fund_share, 0.0
    for fund, stressed in steps:
        decision = review(fund, stressed, share, addon, cfg)
        assert cfg.fund_share_min <= decision.fund_share <= cfg.fund_share_max
        assert 0.0 <= decision.fee_addon_bps <= cfg.fee_addon_max_bps
        assert abs(decision.fund_share - share) <= cfg.share_step + 1e-12
        if decision.coverage is not None and decision.coverage < cfg.target_coverage:
            assert decision.fund_share >= share and decision.fee_addon_bps >= addon
        share, addon = decision.fund_share, decision.fee_addon_bps


def test_historical_stressed_loss_quantile() -> None:
    assert historical_stressed_loss([], 0.99) == 0
    assert historical_stressed_loss([10, 20, 30, 40, 1000], 0.5) == 30


# -- ramp -------------------------------------------------------------------------------------
@given(
    changes=st.lists(
        st.tuples(st.sampled_from([0.5, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0]), st.integers(1, 5_000)),
        min_size=1,
        max_size=12,
    ),
    ramp=st.sampled_from([0, 1_000, 4_000]),
)
def test_ramp_classes_never_fall_and_never_exceed_the_target(
    changes: list[tuple[float, int]], ramp: int
) -> None:
    state, ts = RampState.start(2.0), 0
    for target, gap in changes:
        before = classes(state, ts, ramp)[1]
        paid = {s: multiplier(state, s, ts, ramp) for s in range(0, ts + 1, max(1, ts // 7 or 1))}
        new = retarget(state, target, ts, ramp, max_classes=5)
        if target == state.target:
            assert new is state  # republishing changes nothing
        for since, old in paid.items():
            now = multiplier(new, since, ts, ramp)
            # A tightening keeps what each position paid; a relaxation caps it at the target.
            assert now == pytest.approx(min(old, target)) or (target > state.target and now >= old)
        assert len(classes(new, ts, ramp)[0]) <= 5 and before
        mults = classes(new, ts + gap, ramp)[1]
        assert all(m <= target + 1e-12 for m in mults) and list(mults) == sorted(mults)
        assert classes(new, ts + ramp, ramp)[1] == (target,) * len(mults)
        state, ts = new, ts + gap


# -- ADL, socialization, funding -------------------------------------------------------------
candidate = st.builds(
    AdlCandidate,
    bucket=st.sampled_from(["p", "q", "r", "s", "t"]),
    lots=st.integers(1, 10**9),
    cost=st.integers(1, 10**11),
    upnl=st.integers(-(10**9), 10**10),
    notional=st.integers(1, 10**11),
    equity=st.integers(-(10**9), 10**10),
)


@given(
    candidates=st.lists(candidate, min_size=1, max_size=5, unique_by=lambda c: c.bucket),
    quantity=st.integers(1, 10**9),
    deficit=st.integers(0, 10**10),
)
def test_adl_allocation_respects_every_capacity(
    candidates: list[AdlCandidate], quantity: int, deficit: int
) -> None:
    fills, left = allocate(candidates, quantity, deficit)
    by_bucket = {c.bucket: c for c in candidates}
    taken: dict[str, int] = {}
    for fill in fills:
        c = by_bucket[fill.bucket]
        taken[fill.bucket] = taken.get(fill.bucket, 0) + fill.lots
        assert fill.lots > 0 and fill.concession >= 0
        if fill.concession:
            assert c.eligible
            assert fill.concession <= c.upnl * fill.lots // abs(c.lots)
            assert fill.concession <= c.equity
    assert all(taken[b] <= abs(by_bucket[b].lots) for b in taken)
    held = sum(abs(c.lots) for c in candidates)
    assert sum(taken.values()) == min(quantity, held)
    assert 0 <= left <= deficit
    assert sum(f.concession for f in fills) == deficit - left


def test_adl_low_equity_counterparty_takes_only_what_it_can_absorb() -> None:
    poor = AdlCandidate("poor", lots=-100, cost=-5_000, upnl=300, notional=4_700, equity=10)
    rich = AdlCandidate("rich", lots=-100, cost=-5_180, upnl=480, notional=4_700, equity=2_000)
    fills, left = allocate([rich, poor], quantity=200, deficit=80)
    assert rank_candidates([rich, poor])[0].bucket == "poor"
    assert fills[0] == AdlFill("poor", 25, 10, 0)  # 10 of equity covers 25 lots at 0.4 each
    assert fills[1].bucket == "rich" and fills[1].concession == 70 and left == 0


@given(
    amount=st.integers(0, 10**12),
    holders=st.lists(
        st.tuples(st.text(min_size=1, max_size=3), st.integers(-(10**9), 10**10)),
        unique_by=lambda h: h[0],
    ),
)
def test_socialized_charges_stay_within_each_holders_equity(
    amount: int, holders: list[tuple[str, int]]
) -> None:
    charges, written_off = socialize(amount, holders)
    equity = dict(holders)
    assert sum(c for _, c in charges) + written_off == amount
    assert all(0 < c <= equity[b] for b, c in charges)
    assert written_off == max(0, amount - sum(max(e, 0) for _, e in holders))


@given(
    lots=st.lists(st.integers(-(10**10), 10**10), min_size=1, max_size=8),
    mark=st.integers(1, 10**12),
    rate=st.floats(-0.04, 0.04),
)
def test_funding_is_zero_sum_and_longs_pay_a_positive_rate(
    lots: list[int], mark: int, rate: float
) -> None:
    positions = [(f"b{i}", q) for i, q in enumerate(lots)]
    payments = funding_payments(positions, mark, rate)
    assert sum(a for _, a in payments) == 0
    side = dict(positions)
    for bucket, amount in payments:
        assert (amount < 0) == ((side[bucket] > 0) == (rate > 0))


# -- fills, the dYdX rule, the mark ------------------------------------------------------------
@given(
    dq=st.integers(-(10**9), 10**9).filter(bool),
    taker=st.integers(-(10**9), 10**9),
    maker=st.integers(-(10**9), 10**9),
    px=st.integers(1, 10**12),
)
def test_matched_fills_never_flip_a_leg_and_are_zero_sum(
    dq: int, taker: int, maker: int, px: int
) -> None:
    parts = segments(dq, taker, maker)
    assert sum(parts) == dq and len(parts) <= 3
    t = Position("X", taker, value(taker, px), 0) if taker else None
    m = Position("X", maker, value(maker, px), 0) if maker else None
    for data in fill_events("X", dq, px, 1, taker=("t", t), maker=("m", m), reason="trade"):
        legs = data["legs"]
        assert sum(leg["dq"] for leg in legs) == 0
        assert sum(leg["realized_pnl"] - leg["cost_delta"] for leg in legs) == 0


def test_dydx_rule() -> None:
    above_im = MarginState(equity=120, initial=100, maintenance=60)
    assert may_update(MarginState(50, 100, 60), above_im)
    # Below IM after: only a change that lowers MM without lowering equity / MM.
    assert may_update(MarginState(50, 100, 60), MarginState(45, 80, 50))
    assert not may_update(MarginState(50, 100, 60), MarginState(40, 80, 50))
    assert not may_update(MarginState(50, 100, 60), MarginState(70, 140, 80))  # MM rises
    assert not may_update(MarginState(-5, 0, 0), MarginState(-5, 0, 0))
    assert may_update(MarginState(-5, 0, 0), MarginState(-4, 0, 0))


def test_mark_is_the_oracle_plus_a_capped_decaying_basis() -> None:
    cfg = MarkConfig(basis_cap=0.005, basis_weight=0.5, basis_window_ms=1_000)
    assert mark_price(100_000, 10_000, cfg) == 100_500
    assert mark_price(100_000, -200, cfg) == 99_800
    assert updated_basis(0, 300, cfg) == 150
    assert decayed_basis(150, 0, 500, cfg) == 75 and decayed_basis(150, 0, 1_000, cfg) == 0
