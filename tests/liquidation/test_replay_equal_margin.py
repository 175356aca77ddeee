"""The replay's equal-margin bisection, stress windows and summary ratios."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from liquidation.equal_margin import EqualMarginConfig, equal_margin_levels
from liquidation.replay_metrics import (
    STRESS_WINDOWS,
    Window,
    parse_window,
    series_metrics,
    window_metrics,
)
from liquidation.replay_summary import compare_policies, paired_ratios, ratios
from liquidation.simulate import (
    ReplayConfig,
    ReplayInputError,
    Scenario,
    constant_multiplier,
    simulate,
)
from tests.liquidation.replay_builders import random_walk_market

SEEDS = [0, 1, 2]


def replay_config(n_traders: int) -> ReplayConfig:
    base = ReplayConfig()
    return replace(base, book=replace(base.book, n_traders=n_traders))


def test_bisection_hits_the_target_mean_im() -> None:
    market = random_walk_market(5, n_bars=400)
    replay = replay_config(2_000)
    runs = simulate(
        market, [Scenario("ref", s, constant_multiplier(market, 1.7)) for s in SEEDS], replay
    )
    target = float(np.mean([window_metrics(r)["mean_im"] for r in runs]))
    config = EqualMarginConfig(tolerance=0.002)
    found = equal_margin_levels(market, {"ref": target}, SEEDS, replay, config)
    assert abs(found["ref"].achieved / target - 1) <= 0.002
    assert found["ref"].level == pytest.approx(1.7, rel=0.03)
    assert len(found["ref"].series) == len(SEEDS)


def test_stress_windows_score_only_their_bars() -> None:
    market = random_walk_market(6, n_bars=500)
    [run] = simulate(
        market, [Scenario("s", 0, constant_multiplier(market, 1.0))], replay_config(3_000)
    )
    start = pd.Timestamp(int(market.ts_ms[100]), unit="ms", tz="UTC")
    window = Window("mid", start, start + pd.Timedelta(hours=300))
    inside = window_metrics(run, window)
    assert inside["n_bars"] == 300
    assert inside["waterfall_steps"] == run.liquidations[100:400].sum()
    assert inside["positions_liquidated"] == run.positions_liquidated[100:400].sum()
    assert inside["bad_debt"] == pytest.approx(run.bad_debt[100:400].sum())
    assert inside["mean_im"] == pytest.approx(run.initial_margin[100:400].mean())
    blocks = series_metrics(run, STRESS_WINDOWS)
    assert set(blocks["windows"]) == {w.name for w in STRESS_WINDOWS}
    assert all(b["n_bars"] == 0 for b in blocks["windows"].values())  # 1970 has no crash
    assert parse_window("luna=2022-05-09..2022-05-12").end == pd.Timestamp("2022-05-13", tz="UTC")
    with pytest.raises(ReplayInputError, match="expected NAME"):
        parse_window("2022-05-09")


def test_ratios_are_policy_over_static_and_paired_per_seed() -> None:
    static = {"bad_debt": 10.0, "positions_liquidated": 4.0, "n_bars": 5}
    policy = {"bad_debt": 5.0, "positions_liquidated": 0.0, "n_bars": 5}
    keys = ("waterfall_steps", "liquidated_notional", "insurance_drawdown", "adl_events")
    full = {k: 1.0 for k in (*keys, "topups", "topup_collateral", "fee_income", "mean_im")}
    got = ratios({**full, **policy}, {**full, **static})
    assert got["bad_debt"] == 0.5 and got["positions_liquidated"] == 0.0
    assert got["mean_im"] == 1.0
    seeds = [{**full, "bad_debt": b, "positions_liquidated": 1.0} for b in (2.0, 4.0)]
    base = [{**full, "bad_debt": 4.0, "positions_liquidated": 1.0}] * 2
    paired = paired_ratios({"seeds": seeds}, {"seeds": base})
    assert paired["bad_debt"]["mean"] == pytest.approx(0.75)
    assert paired["bad_debt"]["min"] == 0.5 and paired["bad_debt"]["max"] == 1.0


def test_the_comparison_counts_paired_seeds_and_sets_no_target() -> None:
    equal = {
        n: {"ratio": {"bad_debt": r, "positions_liquidated": 1.0}}
        for n, r in (("model", 0.9), ("ewma", 0.95))
    }
    policies = {
        "model": {"seeds": [{"bad_debt": 1.0}, {"bad_debt": 3.0}]},
        "ewma": {"seeds": [{"bad_debt": 2.0}, {"bad_debt": 2.0}]},
    }
    out = compare_policies(equal, policies, "model", "ewma")
    assert out["model_lower_bad_debt_seeds"] == 1 and out["seeds"] == 2
    assert not any("target" in key for key in out)
    assert compare_policies({}, {}, "model", "ewma")["evaluated"] is False
