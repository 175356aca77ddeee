"""Evaluation statistics against hand-computed values and known properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from models.evaluation import (
    EvaluationError,
    acerbi_szekely_z2,
    basel_zone,
    christoffersen_independence,
    conditional_coverage,
    diebold_mariano,
    kupiec_pof,
    mincer_zarnowitz,
    model_confidence_set,
    mse_log,
    qlike,
    var_backtest,
)


def test_qlike_matches_the_formula_and_is_zero_at_the_truth() -> None:
    losses = qlike([1.0, 2.0, 0.5], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(losses, [0.0, 1 - np.log(2), 0.5 - np.log(0.5) - 1])
    assert np.isnan(qlike([0.0], [1.0])[0])


@settings(max_examples=50, deadline=None)
@given(st.floats(1e-6, 10), st.floats(1e-6, 10))
def test_qlike_is_nonnegative_and_minimised_by_the_realized_value(rv: float, h: float) -> None:
    assert qlike([rv], [h])[0] >= -1e-12
    assert qlike([rv], [rv])[0] == pytest.approx(0.0, abs=1e-12)


def test_mse_log_and_mincer_zarnowitz() -> None:
    assert mse_log([np.e], [1.0])[0] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    h = np.exp(rng.normal(size=500))
    mz = mincer_zarnowitz(h, h)
    assert (mz.intercept, mz.slope, mz.r2) == pytest.approx((0.0, 1.0, 1.0), abs=1e-9)


def test_diebold_mariano_hand_computed_with_lag_zero() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([1.0, 1.0, 1.0, 1.0])
    result = diebold_mariano(a, b, horizon=1, lag=0)
    d = a - b  # mean 1.5, population variance 1.25
    expected = 1.5 / np.sqrt(1.25 / 4)
    assert result.statistic == pytest.approx(expected)
    assert result.pvalue == pytest.approx(2 * stats.norm.sf(expected))
    assert result.mean_difference == pytest.approx(d.mean())


def test_diebold_mariano_detects_a_better_model_and_not_an_equal_one() -> None:
    rng = np.random.default_rng(1)
    noise = rng.normal(size=3000)
    better = diebold_mariano(np.abs(noise) * 0.8, np.abs(noise) + 0.2, horizon=24)
    assert better.statistic < 0 and better.pvalue < 1e-6
    same = diebold_mariano(np.abs(noise), np.abs(rng.permutation(noise)), horizon=24)
    assert same.pvalue > 0.01
    with pytest.raises(EvaluationError, match="below horizon"):
        diebold_mariano(noise, noise, horizon=24, lag=3)


def test_kupiec_hand_computed() -> None:
    x, n, p = 5, 250, 0.01
    lr = -2 * ((n - x) * np.log(1 - p) + x * np.log(p)) + 2 * (
        (n - x) * np.log(1 - x / n) + x * np.log(x / n)
    )
    result = kupiec_pof(x, n, p)
    assert result.statistic == pytest.approx(lr)
    assert result.pvalue == pytest.approx(stats.chi2.sf(lr, 1))
    assert kupiec_pof(0, 250).pvalue < kupiec_pof(2, 250).pvalue


def test_christoffersen_flags_clustered_exceptions() -> None:
    spread = np.zeros(500, dtype=bool)
    spread[::100] = True
    clustered = np.zeros(500, dtype=bool)
    clustered[200:205] = True
    assert christoffersen_independence(spread).pvalue > 0.5
    assert christoffersen_independence(clustered).pvalue < 0.01
    assert conditional_coverage(clustered).pvalue < 0.01


@pytest.mark.parametrize(
    ("exceptions", "zone"),
    [(0, "green"), (4, "green"), (5, "yellow"), (9, "yellow"), (10, "red"), (25, "red")],
)
def test_basel_zone_matches_the_basel_table_at_250(exceptions: int, zone: str) -> None:
    assert basel_zone(exceptions, 250) == zone


def test_z2_is_near_zero_for_a_correct_es_and_negative_when_risk_is_underestimated() -> None:
    rng = np.random.default_rng(2)
    losses = stats.t.rvs(df=5, size=6_000, random_state=rng)
    q = stats.t.ppf(0.99, df=5)
    sample = stats.t.rvs(df=5, size=200_000, random_state=rng)
    es = sample[sample > q].mean()
    ok = acerbi_szekely_z2(losses, np.full_like(losses, q), np.full_like(losses, es))
    assert abs(ok.statistic) < 0.15 and ok.pvalue > 0.05
    low = acerbi_szekely_z2(losses, np.full_like(losses, q / 2), np.full_like(losses, es / 2))
    assert low.statistic < -0.5 and low.pvalue < 0.01


def test_var_backtest_collects_the_tests() -> None:
    losses = np.r_[np.zeros(248), 5.0, 5.0]
    out = var_backtest(losses, np.ones(250))
    assert out["exceptions"] == 2 and out["zone"] == "green" and out["n"] == 250
    assert out["kupiec_p"] == pytest.approx(kupiec_pof(2, 250).pvalue)


def test_model_confidence_set_drops_a_clearly_worse_model() -> None:
    rng = np.random.default_rng(3)
    base = np.abs(rng.normal(size=800))
    losses = {"good": base, "twin": base + rng.normal(0, 0.01, 800), "bad": base + 1.0}
    included = model_confidence_set(losses, size=0.1, block_size=24)
    assert "bad" not in included and "good" in included
