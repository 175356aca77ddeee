"""Unit tests of the pure parts: money, snapshot parsing, oracle guard, margin, portfolio."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liquidation.config import (
    AssetConfig,
    EngineConfig,
    InsuranceConfig,
    OracleGuardConfig,
    PortfolioMarginConfig,
)
from liquidation.errors import ConfigError, SnapshotValidationError, UnknownAssetError
from liquidation.insurance import historical_stressed_loss, review
from liquidation.margin import (
    initial_requirement,
    maintenance_requirement,
    oi_scaled_fraction,
    position_fraction,
    ramped_multiplier,
    slippage_rate,
)
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
from liquidation.oracle import (
    PriceObservation,
    ReferenceQuote,
    check_observation,
    is_stale,
    reference_price,
    update_twap,
)
from liquidation.portfolio import portfolio_requirement, scenario_directions, scenario_returns
from liquidation.snapshot import MarginParameters, check_bounds, target_multiplier
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
        (lambda s: s.update(schema="dynamargin.risk/2"), "schema"),
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
