"""Split-conformal VaR/ES and intervals: finite-sample rule and out-of-sample coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.conformal import CalibrationError, calibrate, calibration_window, conformal_quantile


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-100, 100), min_size=5, max_size=200), st.floats(0.05, 0.95))
def test_conformal_quantile_covers_at_least_the_level(scores: list[float], level: float) -> None:
    q = conformal_quantile(scores, level)
    n = len(scores)
    # At least ceil((n+1) level) of the n scores are <= q (or q is infinite).
    assert np.isinf(q) or np.sum(np.asarray(scores) <= q) >= np.ceil((n + 1) * level) - 1e-9


def _simulate(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h = np.exp(rng.normal(-6, 0.5, n))  # a correct variance forecast
    ret = rng.standard_t(5, n) * np.sqrt(h * 3 / 5)
    rv = h * np.exp(rng.normal(-0.1, 0.45, n))
    return h, rv, ret


def test_var_exception_rate_holds_out_of_sample() -> None:
    rng = np.random.default_rng(5)
    cal = calibrate(*_simulate(20_000, rng), alpha=0.01, coverage=0.9)
    h, rv, ret = _simulate(50_000, rng)
    out = cal.apply(h)
    loss = -np.expm1(ret)
    assert np.mean(loss > out["var_99"]) == pytest.approx(0.01, abs=0.003)
    inside = (np.sqrt(rv) >= out["sigma_lower"]) & (np.sqrt(rv) <= out["sigma_upper"])
    assert inside.mean() == pytest.approx(0.9, abs=0.01)
    assert np.all(out["es_99"] >= out["var_99"])
    # ES: the mean loss beyond VaR.
    tail = loss > out["var_99"]
    assert np.mean(loss[tail]) == pytest.approx(np.mean(out["es_99"][tail]), rel=0.15)


def test_calibration_needs_enough_scores() -> None:
    with pytest.raises(CalibrationError, match="only 3 usable"):
        calibrate([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.1, 0.2, 0.3])


def test_calibration_window_uses_only_known_outcomes() -> None:
    ts = pd.Series(pd.date_range("2024-01-01", periods=100, freq="1h", tz="UTC"))
    as_of = pd.Timestamp("2024-01-04 00:00", tz="UTC")
    mask = calibration_window(ts, as_of, 24, pd.Timedelta("1h"), days=30)
    assert (ts[mask] + pd.Timedelta(hours=24) <= as_of).all()
    assert ts[mask].max() == as_of - pd.Timedelta(hours=24)


def test_adaptive_conformal_corrects_a_calibration_that_underestimates_risk() -> None:
    from models.conformal import adaptive_var

    rng = np.random.default_rng(7)
    n = 6000
    ts = pd.Series(pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC"))
    # Calibrated on calm scores; the test period is 40% more volatile than that.
    cal = calibrate(*_simulate(20_000, rng))
    scores = rng.standard_t(5, n) * np.sqrt(3 / 5) * 1.4
    sigma = np.full(n, 0.02)
    plain = cal.var_score
    adapted = adaptive_var(
        ts, sigma, scores, np.zeros(n, dtype=int), [cal], 1, pd.Timedelta("1h"), gamma=0.002
    )
    adaptive_rate = np.mean(scores > -np.log1p(-adapted["var_99"].to_numpy()) / sigma)
    assert np.mean(scores > plain) > 0.02  # split conformal under-covers after the shift
    assert abs(adaptive_rate - 0.01) < abs(np.mean(scores > plain) - 0.01)
    assert adapted["alpha_t"].iloc[-1] < 0.01 and (adapted["es_99"] >= adapted["var_99"]).all()
