"""The fair comparison: one maintenance rule for every policy, one matching criterion, and
the oracle gain captured on first-jump and aftershock bars."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from liquidation.equal_margin import (
    SCALE_BRACKET,
    EqualMarginConfig,
    FrontierPoint,
    equal_margin_levels,
    margin_scenario,
    match_levels,
    mean_im,
    scaled_family,
)
from liquidation.replay_metrics import first_jump_bars, first_jump_sets, oracle_gain_captured
from liquidation.simulate import ReplayInputError, ReplaySeries, constant_multiplier, simulate
from tests.liquidation.replay_builders import HOUR, random_walk_market, small_config


def _series(seed: int, bad_debt: list[float]) -> ReplaySeries:
    n = len(bad_debt)
    zeros = np.zeros(n)
    ints = np.zeros(n, dtype=np.int64)
    return ReplaySeries(
        label="x",
        seed=seed,
        ts_ms=np.arange(n, dtype=np.int64) * HOUR,
        multiplier=np.ones((1, n)),
        liquidations=ints,
        positions_liquidated=ints,
        full_closeouts=ints,
        liquidated_notional=zeros,
        bad_debt=np.asarray(bad_debt, dtype=float),
        fund=zeros,
        adl_events=ints,
        adl_absorbed=zeros,
        socialized=zeros,
        initial_margin=zeros,
        open_notional=zeros,
        opened=ints,
        topups=ints,
        fund_seed=0.0,
    )


@pytest.mark.parametrize("rule", ["follow", "initial-only", "stress"])
def test_a_static_level_gets_the_same_maintenance_rule_as_a_dynamic_path(rule: str) -> None:
    market = random_walk_market(3, n_bars=50)
    replay = replace(small_config(100), maintenance_rule=rule, stress_threshold=2.0)
    for level in (0.8, 1.5, 2.5):
        static = margin_scenario("s", 0, constant_multiplier(market, level), replay)
        # A dynamic path that happens to sit at `level` everywhere gets the same maintenance.
        dynamic = margin_scenario("d", 0, np.full(market.open.shape, level), replay)
        np.testing.assert_array_equal(static.maintenance_path, dynamic.maintenance_path)
        expected = {
            "follow": level,
            "initial-only": min(level, 1.0),
            "stress": level if level >= 2.0 else min(level, 1.0),
        }[rule]
        assert np.all(static.maintenance_path == expected)


def test_under_initial_only_the_equal_margin_static_keeps_its_maintenance_at_base() -> None:
    # Before the fix the static kept MM = 0.6 k IMF while the dynamic side's was cut; now a
    # static level above 1 under `initial-only` liquidates no more than the base static.
    market = random_walk_market(5, n_bars=400)
    follow = small_config(2_000)
    initial_only = replace(follow, maintenance_rule="initial-only")
    level = 2.0
    runs = {
        name: simulate(
            market, [margin_scenario(name, 0, constant_multiplier(market, level), cfg)], cfg
        )[0]
        for name, cfg in (("follow", follow), ("initial-only", initial_only))
    }
    # Same IMF caps the same book's leverage; only maintenance differs.
    assert runs["initial-only"].opened.sum() == runs["follow"].opened.sum()
    assert runs["initial-only"].liquidations.sum() < runs["follow"].liquidations.sum()


def test_the_oracle_is_matched_at_a_policy_margin_by_scaling_its_path() -> None:
    market = random_walk_market(6, n_bars=400)
    replay = small_config(2_000)
    seeds = [0, 1]
    rng = np.random.default_rng(0)
    path = np.exp(rng.normal(0.0, 0.2, market.open.shape))
    runs = simulate(market, [margin_scenario("p", s, path * 1.3, replay) for s in seeds], replay)
    target = mean_im(runs)
    config = EqualMarginConfig(tolerance=0.003)
    found, tried = match_levels(
        {"p": (scaled_family(path), SCALE_BRACKET)}, {"p": target}, seeds, market, replay, config
    )
    assert abs(found["p"].achieved / target - 1) <= 0.003
    assert found["p"].level == pytest.approx(1.3, rel=0.03)
    assert len(tried) >= found["p"].iterations
    points = [FrontierPoint.of("p", level, r) for _, level, r in tried]
    # More margin posted at a larger scale: the frontier is ordered by its parameter.
    ordered = sorted(points, key=lambda p: p.level)
    assert all(a.mean_im < b.mean_im for a, b in itertools.pairwise(ordered))
    static = equal_margin_levels(market, {"p": target}, seeds, replay, config)
    assert abs(static["p"].achieved / target - 1) <= 0.003


def test_first_jump_bars_need_24_calm_hours_before_them() -> None:
    bad = [0.0] * 100
    for t in (10, 20, 50, 80):
        bad[t] = 1.0
    jumps = first_jump_bars(_series(0, bad), HOUR)
    # 20 is 10 h after 10 (an aftershock); 50 and 80 follow 30 calm hours.
    assert np.flatnonzero(jumps).tolist() == [10, 50, 80]
    assert np.flatnonzero(first_jump_bars(_series(0, bad), 2 * HOUR)).tolist() == [10, 50, 80]


def test_oracle_gain_captured_per_split_and_null_when_the_oracle_gains_nothing() -> None:
    n = 100
    static = [0.0] * n
    static[10], static[12], static[60] = 100.0, 50.0, 100.0  # first jumps at 10 and 60
    policy = list(static)
    policy[10], policy[60] = 50.0, 50.0  # half the first-jump loss saved
    oracle = list(static)
    oracle[10], oracle[60], oracle[12] = 0.0, 0.0, 49.0  # all of it, and 2% of the aftershock
    jumps = first_jump_sets([_series(0, static), _series(1, static)], HOUR)
    out = oracle_gain_captured(
        [_series(0, policy)], [_series(0, static)], [_series(0, oracle)], jumps
    )
    assert out["first_jump"]["mean"] == pytest.approx(0.5)
    assert out["first_jump"]["static"] == 200.0 and out["first_jump"]["oracle"] == 0.0
    overall = (1 - 150 / 250) / (1 - 49 / 250)
    assert out["overall"]["mean"] == pytest.approx(overall)
    # 1 - 49/50 = 0.02 < 0.05: too small a gain to divide by.
    assert out["aftershock"]["mean"] is None and out["aftershock"]["n"] == 0
    two = oracle_gain_captured(
        [_series(0, policy), _series(1, static)],
        [_series(0, static), _series(1, static)],
        [_series(0, oracle), _series(1, oracle)],
        jumps,
    )
    # Mean of the per-seed ratios: 0.5 and 0 (the second seed's policy is the static).
    assert two["first_jump"]["seeds"] == pytest.approx([0.5, 0.0])
    assert two["first_jump"]["mean"] == pytest.approx(0.25)
    # First-jump bad debt against static per seed: 100/200 and 200/200.
    assert two["first_jump"]["ratio_seeds"] == pytest.approx([0.5, 1.0])
    assert two["first_jump"]["ratio"] == pytest.approx(0.75)
    assert out["aftershock"]["ratio_seeds"] == [1.0]
    with pytest.raises(ReplayInputError, match="same seeds"):
        oracle_gain_captured(
            [_series(1, policy)], [_series(0, static)], [_series(0, oracle)], jumps
        )
    with pytest.raises(ReplayInputError, match="first-jump set"):
        oracle_gain_captured(
            [_series(2, policy)], [_series(2, static)], [_series(2, oracle)], jumps
        )


def test_one_first_jump_set_scores_every_policy_of_a_seed() -> None:
    """The split comes from the reference static, not from each policy's equal-margin static:
    two policies matched to statics whose bad debt falls on different bars still share it."""
    n = 100
    reference = [0.0] * n
    reference[10], reference[60] = 100.0, 100.0
    jumps = first_jump_sets([_series(0, reference)], HOUR)
    # This equal-margin static has its first loss at bar 12, so its own first jump would
    # be bar 12; under the shared set bar 12 is an aftershock bar.
    static = [0.0] * n
    static[12], static[60] = 100.0, 100.0
    oracle = [0.0] * n
    out = oracle_gain_captured(
        [_series(0, static)], [_series(0, static)], [_series(0, oracle)], jumps
    )
    assert out["first_jump"]["static"] == 100.0  # bar 60 only
    assert out["aftershock"]["static"] == 100.0  # bar 12
    assert out["first_jump"]["bars"] == 2.0 and out["aftershock"]["bars"] == n - 2
