"""The split IM/MM option: maintenance rules, per-scenario maintenance paths and ramps."""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from liquidation.simulate import (
    MAINTENANCE_RULES,
    ReplayConfig,
    ReplayInputError,
    ReplaySeries,
    Scenario,
    constant_multiplier,
    maintenance_multipliers,
    simulate,
)
from pipelines.flows.config import replay_config_from_toml
from tests.liquidation.replay_builders import flat_market, random_walk_market, small_config

HOUR = 3_600_000


def assert_same_series(left: ReplaySeries, right: ReplaySeries) -> None:
    for f in fields(ReplaySeries):
        a, b = getattr(left, f.name), getattr(right, f.name)
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            # Same positions, other slots of the shared book: only the summation order of
            # the per-scenario totals differs.
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-6, err_msg=f.name)
        elif isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b, err_msg=f.name)
        elif f.name != "label":
            assert a == b, f.name


@settings(max_examples=150, deadline=None)
@given(
    path=arrays(np.float64, st.integers(1, 60), elements=st.floats(0.3, 6.0)),
    rule=st.sampled_from(MAINTENANCE_RULES),
    threshold=st.floats(1.0, 5.0),
)
def test_maintenance_is_bounded_by_the_multiplier_and_monotone(path, rule, threshold):
    mm = maintenance_multipliers(path, rule, threshold)
    if rule == "follow":
        assert mm is None
        return
    assert mm.shape == path.shape
    assert np.all(mm <= path)  # never a higher MM / IM ratio than the static policy's
    np.testing.assert_array_equal(mm[path <= 1.0], path[path <= 1.0])  # relaxations pass
    order = np.argsort(path, kind="stable")
    assert np.all(np.diff(mm[order]) >= 0)  # a higher multiplier never lowers maintenance
    stressed = path >= threshold
    if rule == "stress":
        np.testing.assert_array_equal(mm[stressed], path[stressed])
        assert np.all(mm[~stressed] <= 1.0)
    else:
        assert np.all(mm <= 1.0)


def test_unknown_rule_and_bad_threshold_are_refused() -> None:
    with pytest.raises(ReplayInputError, match="unknown maintenance rule"):
        maintenance_multipliers(np.ones(3), "sometimes")
    with pytest.raises(ReplayInputError, match="stress_threshold"):
        maintenance_multipliers(np.ones(3), "stress", 0.5)
    with pytest.raises(ReplayInputError, match="maintenance_rule"):
        ReplayConfig(maintenance_rule="sometimes")
    with pytest.raises(ReplayInputError, match="ramp_ms"):
        market = flat_market(1, 10)
        simulate(market, [Scenario("x", 0, constant_multiplier(market, 1.0), ramp_ms=-1)])


def test_maintenance_rule_is_read_from_the_replay_toml(tmp_path) -> None:
    path = tmp_path / "replay.toml"
    path.write_text('[replay]\nmaintenance_rule = "stress"\nstress_threshold = 2.5\n')
    config = replay_config_from_toml(path)
    assert (config.maintenance_rule, config.stress_threshold) == ("stress", 2.5)
    assert ReplayConfig().maintenance_rule == "follow"  # the engine's rule stays the default


def test_a_split_with_the_same_path_and_ramp_is_the_default_replay() -> None:
    market = random_walk_market(4)
    path = constant_multiplier(market, 1.0)
    path[:, 200:260] = 2.0
    path[:, 400:] = 1.4
    default, split = simulate(
        market,
        [
            Scenario("default", 2, path),
            Scenario("split", 2, path, maintenance=path.copy(), ramp_ms=ReplayConfig().ramp_ms),
        ],
        small_config(),
    )
    assert default.liquidations.sum() > 0
    assert_same_series(default, split)


def test_a_scenario_ramp_equals_the_same_config_ramp() -> None:
    market = random_walk_market(5)
    path = constant_multiplier(market, 1.0)
    path[:, 300:] = 2.5
    cfg = small_config()
    [by_scenario] = simulate(market, [Scenario("s", 1, path, ramp_ms=0)], cfg)
    [by_config] = simulate(market, [Scenario("s", 1, path)], replace(cfg, ramp_ms=0))
    assert_same_series(by_scenario, by_config)


def test_initial_only_tightening_shrinks_new_risk_without_liquidating_anyone() -> None:
    """On a flat market a large tightening under ``follow`` liquidates the 20x positions
    already open (their maintenance rises above their equity); under ``initial-only`` nobody
    is liquidated, yet positions opened after the tightening are smaller under both rules."""
    market = flat_market(1, 300)
    path = constant_multiplier(market, 1.0)
    path[:, 100:] = 3.0
    split = maintenance_multipliers(path, "initial-only")
    follow, initial_only, static = simulate(
        market,
        [
            Scenario("follow", 0, path),
            Scenario("initial-only", 0, path, maintenance=split),
            Scenario("static", 0, constant_multiplier(market, 1.0)),
        ],
        small_config(),
    )
    assert follow.liquidations.sum() > 0
    assert initial_only.liquidations.sum() == 0
    assert initial_only.bad_debt.sum() == 0.0
    late = slice(150, 300)
    for run in (follow, initial_only):
        assert run.open_notional[late].mean() < static.open_notional[late].mean()
    # Below the threshold the stress rule is initial-only; at it, it is the engine's rule.
    np.testing.assert_array_equal(maintenance_multipliers(path, "stress", 3.5), split)
    np.testing.assert_array_equal(maintenance_multipliers(path, "stress", 3.0), path)


def test_zero_volatility_gives_no_liquidations_under_every_rule() -> None:
    market = flat_market()
    path = constant_multiplier(market, 1.0)
    path[:, 100:] = 1.2
    path[:, 150:] = 0.8
    scenarios = [
        Scenario(rule, 0, path, maintenance_multipliers(path, rule, 1.1))
        for rule in MAINTENANCE_RULES
    ]
    for run in simulate(market, scenarios, small_config()):
        assert run.liquidations.sum() == 0, run.label
        assert run.bad_debt.sum() == 0.0, run.label


def test_pinned_forecasts_land_on_the_grid_and_errors_name_the_file(tmp_path) -> None:
    import pandas as pd

    from liquidation.market_paths import grid_index
    from models.replay_forecasts import PinnedForecastsError, SigmaGrid, pinned_sigma

    market = random_walk_market(7, n_assets=2, n_bars=50)
    index = grid_index(market)
    rng = np.random.default_rng(0)
    rows = [
        {"ts": ts, "asset": asset, "model": model, "sigma": float(rng.uniform(0.01, 0.05))}
        for model in ("ewma", "lgbm")
        for asset in market.assets
        for ts in index[5:]  # the first bars have no forecast: NaN, the policy's fallback
    ]
    frame = pd.DataFrame(rows)
    path = tmp_path / "pinned.parquet"
    frame.to_parquet(path)
    grid = SigmaGrid(market.assets, index)
    sigma, info = pinned_sigma(path, grid, ("lgbm",))
    assert set(sigma) == {"lgbm"} and info["pinned"] is True
    assert sigma["lgbm"].shape == market.open.shape
    assert np.isnan(sigma["lgbm"][:, :5]).all()
    expected = frame.loc[(frame["model"] == "lgbm") & (frame["asset"] == market.assets[1])]
    np.testing.assert_array_equal(sigma["lgbm"][1, 5:], expected["sigma"].to_numpy())
    frame.loc[frame["asset"] != market.assets[0]].to_parquet(path)
    with pytest.raises(PinnedForecastsError, match=r"pinned\.parquet.*A0USDT"):
        pinned_sigma(path, grid, ("ewma",))
    frame.drop(columns="sigma").to_parquet(path)
    with pytest.raises(PinnedForecastsError, match=r"pinned\.parquet lack columns \['sigma'\]"):
        pinned_sigma(path, grid, ("ewma", "lgbm"))
