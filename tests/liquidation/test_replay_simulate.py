"""Sanity and property tests of the vectorised replay and its trader book."""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liquidation.config import AssetConfig
from liquidation.fills import segments
from liquidation.money import MICRO
from liquidation.rules.margin import position_fraction
from liquidation.simulate import (
    ReplayConfig,
    ReplayInputError,
    ReplaySeries,
    Scenario,
    _one_segment,
    constant_multiplier,
    position_fractions,
    simulate,
    simulate_ledger,
)
from liquidation.trader_book import BookConfig, draw_book
from tests.liquidation.replay_builders import flat_market, random_walk_market, small_config

HOUR = 3_600_000


def test_zero_volatility_gives_no_liquidations() -> None:
    market = flat_market()
    path = constant_multiplier(market, 1.0)
    rising = path.copy()
    rising[:, 100:] = 1.2  # a tightening on a flat market: the ramp must not liquidate
    runs = simulate(
        market,
        [Scenario("static", 0, path), Scenario("dynamic", 0, rising)],
        small_config(),
    )
    for run in runs:
        assert run.opened.sum() == 3_000
        assert run.liquidations.sum() == 0
        assert run.bad_debt.sum() == 0.0
        assert run.fund[-1] == pytest.approx(ReplayConfig().fund_seed_usd)


def test_same_seed_gives_identical_results_and_other_seeds_differ() -> None:
    market = random_walk_market(1)
    path = constant_multiplier(market, 1.0)
    scenarios = [Scenario("a", 3, path), Scenario("b", 4, path)]
    first = simulate(market, scenarios, small_config())
    again = simulate(market, scenarios, small_config())
    for f in fields(ReplaySeries):
        left, right = getattr(first[0], f.name), getattr(again[0], f.name)
        if isinstance(left, np.ndarray):
            np.testing.assert_array_equal(left, right, err_msg=f.name)
        else:
            assert left == right
    assert first[0].liquidations.sum() > 0
    assert not np.array_equal(first[0].liquidations, first[1].liquidations)


def test_scenarios_are_independent_of_what_runs_beside_them() -> None:
    # Stacking scenarios in one pass is an optimisation; it must not change any result beyond
    # the order of float summation (slots are shared, so bincount sums in another order).
    market = random_walk_market(2)
    alone = simulate(market, [Scenario("x", 1, constant_multiplier(market, 1.5))], small_config())
    stacked = simulate(
        market,
        [
            Scenario("y", 2, constant_multiplier(market, 0.8)),
            Scenario("x", 1, constant_multiplier(market, 1.5)),
        ],
        small_config(),
    )
    np.testing.assert_array_equal(alone[0].liquidations, stacked[1].liquidations)
    np.testing.assert_allclose(alone[0].bad_debt, stacked[1].bad_debt, rtol=1e-9)
    np.testing.assert_allclose(alone[0].initial_margin, stacked[1].initial_margin, rtol=1e-9)


def test_tighter_static_margin_lowers_leverage_and_losses() -> None:
    market = random_walk_market(3)
    loose, tight = simulate(
        market,
        [
            Scenario("loose", 0, constant_multiplier(market, 1.0)),
            Scenario("tight", 0, constant_multiplier(market, 3.0)),
        ],
        small_config(),
    )
    assert tight.open_notional.mean() < loose.open_notional.mean()
    assert tight.bad_debt.sum() < loose.bad_debt.sum()
    assert tight.positions_liquidated.sum() < loose.positions_liquidated.sum()


def test_crash_bar_concentrates_liquidations_on_longs() -> None:
    market = random_walk_market(4)
    [run] = simulate(market, [Scenario("s", 0, constant_multiplier(market, 1.0))], small_config())
    crash = market.n_bars // 2
    assert run.liquidations[crash] == run.liquidations.max()
    assert run.bad_debt[crash] > 0


def test_bad_multiplier_paths_are_refused_with_the_scenario_named() -> None:
    market = flat_market()
    with pytest.raises(ReplayInputError, match="'broken'"):
        simulate(market, [Scenario("broken", 0, np.ones((1, 5)))])
    bad = constant_multiplier(market, 1.0)
    bad[0, 3] = np.nan
    with pytest.raises(ReplayInputError, match="finite"):
        simulate(market, [Scenario("nan", 0, bad)])


def test_market_paths_name_the_asset_and_time_of_a_bad_bar() -> None:
    market = flat_market()
    low = market.low.copy()
    low[1, 7] = 101.0  # above open and close
    with pytest.raises(ReplayInputError, match=r"A1USDT at 1970-01-01T07:00"):
        replace(market, low=low)


@settings(max_examples=40, deadline=None)
@given(
    notional=st.floats(0.0, 5e8),
    multiplier=st.floats(0.5, 5.0),
    size_factor=st.floats(0.0, 0.05),
)
def test_position_fractions_equal_the_engine_rule(
    notional: float, multiplier: float, size_factor: float
) -> None:
    asset = AssetConfig("X", size_imf_factor=size_factor)
    vector = position_fractions(np.array([notional]), np.array([multiplier]), asset)[0]
    assert vector == pytest.approx(position_fraction(notional, multiplier, asset), rel=1e-12)


def test_book_is_seeded_and_capped() -> None:
    config = BookConfig(n_traders=5_000)
    a = draw_book(config, 1_000, 3, seed=9)
    b = draw_book(config, 1_000, 3, seed=9)
    np.testing.assert_array_equal(a.collateral, b.collateral)
    assert (np.diff(a.arrival) >= 0).all()
    assert a.leverage.max() <= config.leverage_max
    assert a.leverage.min() >= config.leverage_min
    assert 0.25 < a.topup.mean() < 0.35
    # The heavy tail: a sizeable share wants more than the 20x a 5% IMF allows.
    assert (a.leverage > 20).mean() > 0.1


def test_the_replay_refuses_what_it_does_not_model() -> None:
    # Open-interest scaling: the synthetic book's open interest is not the venue's.
    with pytest.raises(ReplayInputError, match="open-interest"):
        ReplayConfig(asset=AssetConfig("REPLAY", oi_lower_usd=1e9, oi_upper_usd=2e9))
    # A vault too small to take the book's fills: the replay stops instead of diverging from
    # the engine (which would then backstop partially and deleverage).
    market = random_walk_market(2)
    shallow = replace(small_config(), vault_usd=1.0)
    with pytest.raises(ReplayInputError, match="vault"):
        simulate(market, [Scenario("s", 0, constant_multiplier(market, 1.0))], shallow)


@given(
    st.integers(-(10**12), 10**12).filter(bool),
    st.integers(-(10**12), 10**12),
    st.integers(-(10**12), 10**12),
)
def test_the_one_segment_fast_test_agrees_with_segments(dq: int, taker: int, maker: int) -> None:
    assert _one_segment(dq, taker, maker) == (segments(dq, taker, maker) == [dq])


def test_topup_collateral_and_fee_income_add_up_to_the_ledger() -> None:
    market = random_walk_market(4)
    cfg = small_config()
    [run], [ledger] = simulate_ledger(
        market, [Scenario("s", 0, constant_multiplier(market, 1.0))], cfg
    )
    assert run.topups.sum() > 0
    # Each top-up's amount, exactly: deposits = fund seed + vault + first deposits + top-ups.
    book = draw_book(cfg.book, market.n_bars, 2, 0, 1.0, market.quote_volume.mean(axis=1))
    first = int(np.round(book.collateral * MICRO).astype(np.int64).sum())
    seeded = round(cfg.fund_seed_usd * MICRO) + round(cfg.vault_usd * MICRO)
    topped = ledger.deposits - seeded - first
    assert topped > 0
    assert run.topup_collateral.sum() == pytest.approx(topped / MICRO, rel=1e-12)
    assert (run.topup_collateral[run.topups == 0] == 0).all()
    assert run.fee_income.sum() == pytest.approx(ledger.fees / MICRO, rel=1e-12)
    assert (run.fee_income >= 0).all() and run.fee_income[run.opened > 0].min() > 0
