"""Volatility estimators against synthetic truth, the returns contract and the min-valid rule."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import volatility as vol
from features.errors import FeatureInputError
from features.volatility import log_returns

SIGMA = 0.01  # per-bar volatility of the simulated log price
WINDOW = 24
NEED = vol.min_valid_count(WINDOW, 0.8)


def constant_vol_ohlc(
    n_bars: int, sigma: float = SIGMA, drift: float = 0.0, substeps: int = 64, seed: int = 0
) -> dict[str, np.ndarray]:
    """OHLC of a driftless (or drifting) arithmetic Brownian log price with known sigma.

    Each bar is ``substeps`` Gaussian increments; inside every increment the maximum and the
    minimum of the Brownian bridge are drawn exactly, so the bar's high and low carry no
    discretisation bias (unlike the max over a grid of points).
    """
    rng = np.random.default_rng(seed)
    s = sigma / math.sqrt(substeps)
    steps = rng.normal(drift / substeps, s, (n_bars, substeps))
    # Bridge extremes given the increment b: (b +- sqrt(b^2 - 2 s^2 ln U)) / 2.
    up = 0.5 * (steps + np.sqrt(steps**2 - 2.0 * s * s * np.log(rng.random(steps.shape))))
    down = 0.5 * (steps - np.sqrt(steps**2 - 2.0 * s * s * np.log(rng.random(steps.shape))))
    level = np.cumsum(steps, axis=1)
    before = level - steps  # log price at the start of each increment, relative to the open
    open_log = np.concatenate([[0.0], np.cumsum(level[:, -1])[:-1]]) + math.log(100.0)
    high = open_log + np.max(before + up, axis=1)
    low = open_log + np.min(before + down, axis=1)
    close = open_log + level[:, -1]
    return {
        "open": np.exp(open_log),
        "high": np.exp(high),
        "low": np.exp(low),
        "close": np.exp(close),
    }


def non_overlapping(values: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Every ``window``-th value from the first full window on (independent estimates)."""
    picked = values[window::window]
    return picked[~np.isnan(picked)]


@pytest.fixture(scope="module")
def path() -> dict[str, np.ndarray]:
    return constant_vol_ohlc(WINDOW * 600, seed=1)


@pytest.fixture(scope="module")
def ret(path: dict[str, np.ndarray]) -> np.ndarray:
    return vol.close_returns(path["close"])


# --- estimator correctness on constant volatility ---------------------------------------


@pytest.mark.parametrize(
    "estimator",
    ["realized", "parkinson", "garman_klass", "rogers_satchell", "yang_zhang", "bipower"],
)
def test_every_estimator_is_unbiased_for_constant_volatility(
    path: dict[str, np.ndarray], ret: np.ndarray, estimator: str
) -> None:
    o, h, lo, c = path["open"], path["high"], path["low"], path["close"]
    windowed = {
        "realized": lambda: vol.realized_variance(ret, WINDOW, NEED),
        "parkinson": lambda: vol.window_total(vol.parkinson_variance(h, lo), WINDOW, NEED),
        "garman_klass": lambda: vol.window_total(
            vol.garman_klass_variance(o, h, lo, c), WINDOW, NEED
        ),
        "rogers_satchell": lambda: vol.window_total(
            vol.rogers_satchell_variance(o, h, lo, c), WINDOW, NEED
        ),
        "yang_zhang": lambda: vol.yang_zhang_variance(o, h, lo, c, WINDOW, NEED),
        "bipower": lambda: vol.bipower_variation(ret, WINDOW, NEED),
    }[estimator]()
    truth = WINDOW * SIGMA**2
    estimates = non_overlapping(windowed)
    assert len(estimates) > 500
    # 600 independent windows: the sampling error of the mean is below 2% for all of them.
    assert np.mean(estimates) / truth == pytest.approx(1.0, abs=0.05)


def test_rogers_satchell_and_yang_zhang_ignore_drift_where_parkinson_does_not() -> None:
    drift = 3.0 * SIGMA  # a strong trend: three sigmas per bar
    p = constant_vol_ohlc(WINDOW * 400, drift=drift, seed=2)
    o, h, lo, c = p["open"], p["high"], p["low"], p["close"]
    truth = WINDOW * SIGMA**2
    rs = non_overlapping(vol.window_total(vol.rogers_satchell_variance(o, h, lo, c), WINDOW, NEED))
    yz = non_overlapping(vol.yang_zhang_variance(o, h, lo, c, WINDOW, NEED))
    park = non_overlapping(vol.window_total(vol.parkinson_variance(h, lo), WINDOW, NEED))
    assert np.mean(rs) / truth == pytest.approx(1.0, abs=0.05)
    assert np.mean(yz) / truth == pytest.approx(1.0, abs=0.05)
    assert np.mean(park) / truth > 1.5


def test_parkinson_has_a_smaller_estimation_variance_than_close_to_close(
    path: dict[str, np.ndarray], ret: np.ndarray
) -> None:
    park = non_overlapping(
        vol.window_total(vol.parkinson_variance(path["high"], path["low"]), WINDOW, NEED)
    )
    rv = non_overlapping(vol.realized_variance(ret, WINDOW, NEED))
    # Theory: var(RV)/IV^2 = 2/n, var(Parkinson)/IV^2 ~ 0.41/n, about five times smaller.
    assert np.var(park) < 0.4 * np.var(rv)


def test_realized_quarticity_estimates_squared_integrated_variance(ret: np.ndarray) -> None:
    rq = non_overlapping(vol.realized_quarticity(ret, WINDOW, NEED))
    assert np.mean(rq) / (WINDOW * SIGMA**2) ** 2 == pytest.approx(1.0, abs=0.1)


def test_semivariances_add_up_to_realized_variance(ret: np.ndarray) -> None:
    up, down = vol.realized_semivariances(ret, WINDOW, NEED)
    rv = vol.realized_variance(ret, WINDOW, NEED)
    ok = ~np.isnan(rv)
    np.testing.assert_allclose(up[ok] + down[ok], rv[ok], rtol=1e-12)
    assert np.mean(non_overlapping(up)) / np.mean(non_overlapping(rv)) == pytest.approx(
        0.5, abs=0.05
    )


def test_jump_component_is_near_zero_without_jumps_and_catches_planted_jumps() -> None:
    rng = np.random.default_rng(5)
    clean = rng.normal(0.0, SIGMA, WINDOW * 600)
    no_jump = non_overlapping(vol.jump_variation(clean, WINDOW, NEED))
    rv = non_overlapping(vol.realized_variance(clean, WINDOW, NEED))
    # max(RV - BV, 0) of pure diffusion is sampling noise: a few percent of RV.
    assert np.mean(no_jump) < 0.1 * np.mean(rv)

    size = 15.0 * SIGMA
    jumped = clean.copy()
    jump_at = np.arange(WINDOW + 11, jumped.size, 4 * WINDOW)  # inside every 4th window
    jumped[jump_at] += size * rng.choice([-1.0, 1.0], jump_at.size)
    jump = vol.jump_variation(jumped, WINDOW, NEED)
    window_end = jump_at - 11 + WINDOW - 1  # last bar of the window holding the jump
    caught = jump[window_end] / size**2
    # BV itself picks up |J| times its two neighbours, E|r| = sigma sqrt(2/pi) each:
    # E[jump] ~ J^2 - (pi/2) (n/(n-1)) 2 |J| sigma sqrt(2/pi), i.e. 83% of J^2 at J = 15 sigma.
    contamination = math.pi / 2 * WINDOW / (WINDOW - 1) * 2 * SIGMA * math.sqrt(2 / math.pi)
    assert np.median(caught) == pytest.approx(1.0 - contamination / size, abs=0.08)
    assert np.mean(caught > 0.5) > 0.9
    quiet = np.setdiff1d(np.arange(2 * WINDOW - 1, jumped.size, WINDOW), window_end)
    quiet = quiet[np.all(np.abs(quiet[:, None] - jump_at[None, :]) >= WINDOW, axis=1)]
    assert np.nanmean(jump[quiet]) < 0.1 * WINDOW * SIGMA**2


def test_ewma_variance_follows_the_riskmetrics_recursion() -> None:
    rng = np.random.default_rng(3)
    ret = rng.normal(0.0, SIGMA, 500)
    ret[[100, 101, 300]] = np.nan
    out = vol.ewma_variance(ret, 0.94, min_bars=24)
    expected, state, seen = np.full(ret.size, np.nan), np.nan, 0
    for i, r in enumerate(ret):
        if not np.isnan(r):
            state = r * r if seen == 0 else 0.94 * state + 0.06 * r * r
            seen += 1
        if seen >= 24:
            expected[i] = state
    np.testing.assert_allclose(out, expected, rtol=1e-12, equal_nan=True)
    assert np.nanmean(out[100:]) / SIGMA**2 == pytest.approx(1.0, abs=0.15)


def test_ewma_variance_is_held_over_short_gaps_and_dropped_after_long_ones() -> None:
    ret = np.random.default_rng(4).normal(0.0, SIGMA, 200)
    ret[100:110] = np.nan  # 10 missing returns: held
    ret[150:200] = np.nan  # 50 missing returns: stale after 24
    out = vol.ewma_variance(ret, 0.94, min_bars=24, max_gap_bars=24)
    assert (out[100:110] == out[99]).all()
    assert (out[150:173] == out[149]).all()
    assert np.isnan(out[173:]).all()  # bars 150..173: 24 without a return


# --- the returns contract and the grid ---------------------------------------------------


def hand_bars(closes: dict[str, list[float | None]]) -> pd.DataFrame:
    """Bars of a few assets; ``None`` leaves the bar out (a gap)."""
    rows = []
    start = pd.Timestamp("2024-01-01", tz="UTC")
    for asset, values in closes.items():
        for i, value in enumerate(values):
            if value is not None:
                rows.append({"ts": start + pd.Timedelta(hours=i), "asset": asset, "close": value})
    return pd.DataFrame(rows)


def test_log_returns_lay_bars_on_a_complete_grid_without_filling_prices() -> None:
    bars = hand_bars({"BTC": [100.0, 110.0, None, None, 121.0, 133.1], "ETH": [10.0, 10.0]})
    out = log_returns(bars.sample(frac=1.0, random_state=0), "1h")  # input order does not matter
    btc = out[out["asset"] == "BTC"]
    assert list(btc["ts"].dt.hour) == [0, 1, 2, 3, 4, 5]
    expected = [np.nan, math.log(1.1), np.nan, np.nan, np.nan, math.log(1.1)]
    np.testing.assert_allclose(btc["ret"].to_numpy(), expected, rtol=1e-14, equal_nan=True)
    assert list(out.columns) == ["ts", "asset", "ret"]
    assert out[out["asset"] == "ETH"]["ret"].tolist()[1] == 0.0


def test_complete_grid_keeps_missing_bars_as_nan_rows() -> None:
    bars = hand_bars({"BTC": [100.0, None, 102.0]})
    grid = vol.complete_grid(bars, "1h", columns=("close",))
    assert grid["close"].isna().tolist() == [False, True, False]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: pd.concat([b, b.iloc[[0]]]), "duplicate bar time"),
        (lambda b: b.assign(ts=b["ts"] + pd.to_timedelta([0, 0, 30], unit="min")), "not on the"),
        (lambda b: b.assign(close=[1.0, -1.0, 2.0]), "not positive"),
        (lambda b: b.assign(ts=b["ts"].dt.tz_localize(None)), "tz-aware"),
        (lambda b: b.drop(columns="close"), "lack column"),
    ],
)
def test_bad_bars_raise_an_error_naming_asset_and_time(mutate, message: str) -> None:
    bars = hand_bars({"BTC": [100.0, 101.0, 102.0]})
    with pytest.raises(FeatureInputError, match=message):
        log_returns(mutate(bars))


def test_a_window_with_too_few_valid_bars_is_nan_and_a_nearly_full_one_is_rescaled() -> None:
    squared = np.arange(1.0, 11.0)
    ret = np.sqrt(squared)
    need = vol.min_valid_count(10, 0.8)
    assert need == 8
    two_missing = ret.copy()
    two_missing[[2, 5]] = np.nan
    out = vol.realized_variance(two_missing, 10, need)
    assert out[-1] == pytest.approx(10 * np.mean(np.delete(squared, [2, 5])), rel=1e-12)
    three_missing = two_missing.copy()
    three_missing[7] = np.nan
    assert np.isnan(vol.realized_variance(three_missing, 10, need)[-1])
    assert vol.realized_variance(ret, 10, need)[-1] == pytest.approx(squared.sum(), rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.none(), st.floats(-0.2, 0.2, allow_nan=False)), min_size=1, max_size=80
    ),
    window=st.integers(2, 30),
)
def test_windowed_variances_are_non_negative_and_nan_only_when_too_sparse(
    values: list[float | None], window: int
) -> None:
    ret = np.array([np.nan if v is None else v for v in values], dtype="float64")
    need = vol.min_valid_count(window, 0.8)
    rv = vol.realized_variance(ret, window, need)
    valid = pd.Series(~np.isnan(ret)).rolling(window, min_periods=1).sum().to_numpy()
    assert np.array_equal(np.isnan(rv), valid < need)
    for series in (
        rv,
        vol.bipower_variation(ret, window, need),
        vol.jump_variation(ret, window, need),
    ):
        assert (series[~np.isnan(series)] >= 0).all()


# The rolling primitives call pandas' window kernels directly (for speed); they must stay
# bit-for-bit what pandas' public rolling API returns, whatever pandas version is installed.
_VALUE = st.one_of(
    st.floats(-1e3, 1e3, allow_nan=False),
    st.just(math.nan),
    st.just(math.inf),
    st.just(0.0),
    st.just(-0.0),
)
_SERIES = st.lists(_VALUE, min_size=0, max_size=80)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.shape == b.shape
        and bool(np.array_equal(a, b, equal_nan=True))
        and bool((np.signbit(a) == np.signbit(b))[~np.isnan(a)].all())
    )


@settings(max_examples=200, deadline=None)
@given(values=_SERIES, window=st.integers(1, 30), data=st.data())
def test_window_mean_is_pandas_rolling_mean_bit_for_bit(
    values: list[float], window: int, data: st.DataObject
) -> None:
    least = data.draw(st.integers(0, window))
    x = np.asarray(values, dtype="float64")
    expected = pd.Series(x, dtype="float64").rolling(window, min_periods=least).mean().to_numpy()
    assert _same_bits(vol.window_mean(x, window, least), expected)


@settings(max_examples=200, deadline=None)
@given(pairs=st.lists(st.tuples(_VALUE, _VALUE), max_size=80), data=st.data())
def test_rolling_covariance_is_pandas_rolling_cov_and_var_bit_for_bit(
    pairs: list[tuple[float, float]], data: st.DataObject
) -> None:
    window = data.draw(st.integers(2, 30))
    least = data.draw(st.integers(1, window))
    x = np.asarray([p[0] for p in pairs], dtype="float64")
    y = np.asarray([p[1] for p in pairs], dtype="float64")
    valid = ~(np.isnan(x) | np.isnan(y))
    frame = pd.DataFrame({"x": np.where(valid, x, np.nan), "y": np.where(valid, y, np.nan)})
    roll = frame.rolling(window, min_periods=max(least, 2))
    cov, var_x, var_y = vol.rolling_covariance(x, y, window, least)
    assert _same_bits(cov, roll["x"].cov(frame["y"]).to_numpy())
    assert _same_bits(var_x, np.maximum(roll["x"].var().to_numpy(), 0.0))
    assert _same_bits(var_y, np.maximum(roll["y"].var().to_numpy(), 0.0))
