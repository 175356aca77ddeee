"""Forecast-evaluation statistics: losses, Diebold–Mariano, VaR and ES backtests.

Pure functions on numpy arrays. Variance forecasts are compared with realized variance
(QLIKE, the primary loss, is robust to noise in the realized proxy; Patton 2011). VaR and
ES are positive loss numbers in the same units as the losses they are tested against.

The registry review imports :func:`qlike`, :func:`diebold_mariano` and :func:`basel_zone`
from here: keep those names and signatures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats
from scipy.special import xlogy

from models.errors import ModelsError

Zone = Literal["green", "yellow", "red"]


class EvaluationError(ModelsError, ValueError):
    """Inputs to an evaluation statistic are unusable (shape, sign, too few points)."""


@dataclass(frozen=True)
class DMResult:
    """Diebold–Mariano test of equal predictive accuracy.

    ``statistic < 0`` means model A has the lower mean loss; ``pvalue`` is two-sided.
    """

    statistic: float
    pvalue: float
    mean_difference: float
    lag: int
    n: int


@dataclass(frozen=True)
class StatTest:
    """A likelihood-ratio or simulation test: statistic and p-value."""

    statistic: float
    pvalue: float


@dataclass(frozen=True)
class MZResult:
    """Mincer–Zarnowitz regression ``realized = a + b * forecast``; unbiased iff a=0, b=1."""

    intercept: float
    slope: float
    r2: float


# -- losses ---------------------------------------------------------------------------------


def qlike(realized: ArrayLike, forecast: ArrayLike) -> np.ndarray:
    """Per-observation QLIKE loss of a variance forecast.

    ``L = RV / h - log(RV / h) - 1``: zero for a perfect forecast, always >= 0, and it
    punishes under-prediction of risk more than over-prediction.

    Parameters
    ----------
    realized
        Realized variance (> 0).
    forecast
        Forecast variance (> 0), same shape.

    Returns
    -------
    numpy.ndarray
        The losses; NaN where either input is NaN or not positive.

    Examples
    --------
    >>> round(float(qlike([2.0], [1.0])[0]), 6)  # 2 - log 2 - 1
    0.306853
    """
    rv, h = _pair(realized, forecast)
    ratio = np.full(rv.shape, np.nan)
    ok = (rv > 0) & (h > 0)
    ratio[ok] = rv[ok] / h[ok]
    return ratio - np.log(ratio) - 1.0


def mse_log(realized: ArrayLike, forecast: ArrayLike) -> np.ndarray:
    """Per-observation squared error of log variance, ``(log RV - log h)^2``."""
    rv, h = _pair(realized, forecast)
    out = np.full(rv.shape, np.nan)
    ok = (rv > 0) & (h > 0)
    out[ok] = (np.log(rv[ok]) - np.log(h[ok])) ** 2
    return out


def mincer_zarnowitz(realized: ArrayLike, forecast: ArrayLike, log: bool = True) -> MZResult:
    """Mincer–Zarnowitz regression of realized on forecast variance (logs by default).

    Parameters
    ----------
    realized, forecast
        Realized and forecast variances; NaN and non-positive pairs are dropped.
    log
        Regress logs (robust to the heavy right tail of RV) rather than levels.
    """
    rv, h = _pair(realized, forecast)
    ok = np.isfinite(rv) & np.isfinite(h) & (rv > 0) & (h > 0)
    y, x = rv[ok], h[ok]
    if log:
        y, x = np.log(y), np.log(x)
    if y.size < 3 or np.ptp(x) == 0:
        raise EvaluationError(f"Mincer–Zarnowitz needs >= 3 varying forecasts, got {y.size}")
    slope, intercept, r, _, _ = stats.linregress(x, y)
    return MZResult(float(intercept), float(slope), float(r**2))


def pinball_loss(realized: ArrayLike, quantile: ArrayLike, level: float) -> np.ndarray:
    """Per-observation pinball (quantile) loss of a ``level`` quantile forecast.

    ``L = (level - 1{y < q}) (y - q)``: zero at ``q = y``, and its expectation is smallest
    at the true ``level`` quantile (the loss LightGBM's quantile objective minimises).

    Examples
    --------
    >>> pinball_loss([1.0, 3.0], [2.0, 2.0], 0.9).round(2).tolist()
    [0.1, 0.9]
    """
    if not 0.0 < level < 1.0:
        raise EvaluationError(f"quantile level must be in (0, 1), got {level}")
    y, q = _pair(realized, quantile)
    diff = y - q
    return np.where(diff >= 0, level * diff, (level - 1.0) * diff)


# -- comparing forecasts --------------------------------------------------------------------


def diebold_mariano(
    loss_a: ArrayLike, loss_b: ArrayLike, horizon: int, lag: int | None = None
) -> DMResult:
    """Diebold–Mariano test on loss differences with Newey–West (Bartlett) HAC variance.

    Overlapping ``H``-bar targets make the loss differences MA(H-1) at least, so the HAC
    lag is ``max(H - 1, floor(1.5 n^(1/3)))`` unless given; it may not be below ``H - 1``.

    Parameters
    ----------
    loss_a, loss_b
        Per-observation losses of models A and B on the same targets (NaN pairs dropped).
    horizon
        Forecast horizon in observations (bars).
    lag
        HAC truncation lag; ``None`` for the rule above.

    Returns
    -------
    DMResult
        Statistic (negative: A better), two-sided normal p-value, mean difference.
    """
    a, b = _pair(loss_a, loss_b)
    d = a - b
    d = d[np.isfinite(d)]
    n = d.size
    min_lag = max(horizon - 1, 0)
    if lag is None:
        lag = max(min_lag, int(1.5 * n ** (1.0 / 3.0)))
    if lag < min_lag:
        raise EvaluationError(f"HAC lag {lag} is below horizon - 1 = {min_lag}")
    if n <= lag + 1:
        raise EvaluationError(f"Diebold–Mariano needs more than {lag + 1} loss pairs, got {n}")
    mean = float(d.mean())
    variance = _newey_west_variance(d - mean, lag)
    if variance <= 0:
        # Identical losses: no evidence either way.
        return DMResult(0.0, 1.0, mean, lag, n)
    statistic = mean / np.sqrt(variance / n)
    pvalue = 2.0 * stats.norm.sf(abs(statistic))
    return DMResult(float(statistic), float(pvalue), mean, lag, n)


def model_confidence_set(
    losses: Mapping[str, ArrayLike], size: float = 0.1, block_size: int = 24, seed: int = 0
) -> list[str]:
    """Models in the Hansen–Lunde–Nason Model Confidence Set (``arch.bootstrap.MCS``).

    Parameters
    ----------
    losses
        Model name -> per-observation losses on common targets (rows with a NaN dropped).
    size
        Test size of the MCS (0.1 keeps models not rejected at 10%).
    block_size
        Stationary-bootstrap block length; at least the horizon for overlapping targets.
    seed
        Seed of the bootstrap.
    """
    from arch.bootstrap import MCS

    frame = pd.DataFrame({k: np.asarray(v, dtype="float64") for k, v in losses.items()}).dropna()
    if len(frame) <= block_size:
        raise EvaluationError(f"MCS needs more than {block_size} common observations")
    mcs = MCS(frame, size=size, block_size=block_size, method="R", seed=seed)
    mcs.compute()
    return [str(m) for m in mcs.included]


# -- VaR and ES backtests -------------------------------------------------------------------


def kupiec_pof(exceptions: int, n: int, alpha: float = 0.01) -> StatTest:
    """Kupiec proportion-of-failures LR test of the exception rate against ``alpha``.

    ``LR = -2 log[(1-a)^(n-x) a^x] + 2 log[(1-x/n)^(n-x) (x/n)^x] ~ chi2(1)``.

    Examples
    --------
    >>> round(kupiec_pof(2, 250).pvalue, 3)  # 2 of 250 at 1%: fine
    0.742
    """
    _check_counts(exceptions, n, alpha)
    x, p_hat = exceptions, exceptions / n
    log_null = xlogy(n - x, 1 - alpha) + xlogy(x, alpha)
    log_alt = xlogy(n - x, 1 - p_hat) + xlogy(x, p_hat)
    lr = max(-2.0 * (log_null - log_alt), 0.0)
    return StatTest(float(lr), float(stats.chi2.sf(lr, 1)))


def christoffersen_independence(hits: ArrayLike) -> StatTest:
    """Christoffersen LR test that exceptions do not cluster (first-order Markov).

    Parameters
    ----------
    hits
        Exception indicators in time order (non-overlapping observations).
    """
    h = _hits(hits)
    prev, curr = h[:-1], h[1:]
    n00 = int(np.sum(~prev & ~curr))
    n01 = int(np.sum(~prev & curr))
    n10 = int(np.sum(prev & ~curr))
    n11 = int(np.sum(prev & curr))
    pi0 = n01 / max(n00 + n01, 1)
    pi1 = n11 / max(n10 + n11, 1)
    pi = (n01 + n11) / max(n00 + n01 + n10 + n11, 1)
    log_null = xlogy(n00 + n10, 1 - pi) + xlogy(n01 + n11, pi)
    log_alt = xlogy(n00, 1 - pi0) + xlogy(n01, pi0) + xlogy(n10, 1 - pi1) + xlogy(n11, pi1)
    lr = max(-2.0 * (log_null - log_alt), 0.0)
    return StatTest(float(lr), float(stats.chi2.sf(lr, 1)))


def conditional_coverage(hits: ArrayLike, alpha: float = 0.01) -> StatTest:
    """Christoffersen conditional coverage: Kupiec POF + independence, ``chi2(2)``."""
    h = _hits(hits)
    pof = kupiec_pof(int(h.sum()), h.size, alpha)
    ind = christoffersen_independence(h)
    lr = pof.statistic + ind.statistic
    return StatTest(float(lr), float(stats.chi2.sf(lr, 2)))


def basel_zone(exceptions: int, n: int = 250, alpha: float = 0.01) -> Zone:
    """Basel traffic-light zone of a VaR backtest.

    Green while the binomial probability of at most ``exceptions`` is below 95%, yellow
    below 99.99%, red beyond. For ``n=250`` at 99%: green 0–4, yellow 5–9, red >= 10.
    Use ``n`` NON-overlapping observations (one per horizon).

    Examples
    --------
    >>> [basel_zone(k) for k in (4, 5, 9, 10)]
    ['green', 'yellow', 'yellow', 'red']
    """
    _check_counts(exceptions, n, alpha)
    cdf = stats.binom.cdf(exceptions, n, alpha)
    if cdf < 0.95 - 1e-12:
        return "green"
    if cdf < 0.9999 - 1e-12:
        return "yellow"
    return "red"


def acerbi_szekely_z2(
    losses: ArrayLike,
    var: ArrayLike,
    es: ArrayLike,
    alpha: float = 0.01,
    null_scores: ArrayLike | None = None,
    n_sim: int = 2000,
    seed: int = 0,
) -> StatTest:
    """Acerbi–Székely (2014) Z2 test of Expected Shortfall.

    ``Z2 = 1 - sum_t L_t 1{L_t > VaR_t} / (T alpha ES_t)``; ``E[Z2] = 0`` under a correct ES
    and negative values mean risk is underestimated. The one-sided p-value
    ``P(Z2* <= Z2)`` is simulated from ``null_scores``, draws of the standardized loss
    under the model (default: Student-t with 5 degrees of freedom); Z2 is scale-free, so
    only their shape matters.

    Parameters
    ----------
    losses, var, es
        Realized losses and the positive VaR and ES forecasts, one per non-overlapping period.
    alpha
        Tail probability (0.01 for 99%).
    null_scores
        Standardized losses under the model's distribution.
    n_sim, seed
        Monte Carlo size and seed.
    """
    loss, v = _pair(losses, var)
    _, e = _pair(losses, es)
    ok = np.isfinite(loss) & np.isfinite(v) & np.isfinite(e) & (e > 0)
    loss, v, e = loss[ok], v[ok], e[ok]
    if loss.size < 10:
        raise EvaluationError(f"Z2 needs at least 10 observations, got {loss.size}")
    statistic = _z2(loss, v, e, alpha)
    rng = np.random.default_rng(seed)
    if null_scores is None:
        pool = stats.t.rvs(df=5, size=200_000, random_state=rng)
    else:
        pool = np.asarray(null_scores, dtype="float64")
        pool = pool[np.isfinite(pool)]
    q = np.quantile(pool, 1.0 - alpha)
    tail = pool[pool > q]
    if tail.size == 0:
        raise EvaluationError("null_scores has no tail beyond its VaR; pass more draws")
    es_null = tail.mean()
    draws = rng.choice(pool, size=(n_sim, loss.size), replace=True)
    sims = 1.0 - (draws * (draws > q)).sum(axis=1) / (loss.size * alpha * es_null)
    pvalue = (1 + np.sum(sims <= statistic)) / (n_sim + 1)
    return StatTest(float(statistic), float(pvalue))


def var_backtest(
    losses: ArrayLike, var: ArrayLike, alpha: float = 0.01
) -> dict[str, float | int | str]:
    """All VaR backtests on non-overlapping observations, as one JSON-able dict.

    Keys: ``n``, ``exceptions``, ``rate``, ``kupiec_p``, ``christoffersen_p``, ``cc_p``,
    ``zone`` (Basel, scaled to ``n``).
    """
    loss, v = _pair(losses, var)
    ok = np.isfinite(loss) & np.isfinite(v)
    hits = loss[ok] > v[ok]
    n, x = int(hits.size), int(hits.sum())
    if n < 2:
        raise EvaluationError(f"VaR backtest needs at least 2 observations, got {n}")
    return {
        "n": n,
        "exceptions": x,
        "rate": x / n,
        "kupiec_p": kupiec_pof(x, n, alpha).pvalue,
        "christoffersen_p": christoffersen_independence(hits).pvalue,
        "cc_p": conditional_coverage(hits, alpha).pvalue,
        "zone": basel_zone(x, n, alpha),
    }


# -- helpers --------------------------------------------------------------------------------


def _z2(loss: np.ndarray, var: np.ndarray, es: np.ndarray, alpha: float) -> float:
    hits = loss > var
    return float(1.0 - np.sum(loss * hits / es) / (loss.size * alpha))


def _newey_west_variance(d: np.ndarray, lag: int) -> float:
    n = d.size
    gamma0 = float(d @ d) / n
    total = gamma0
    for k in range(1, lag + 1):
        weight = 1.0 - k / (lag + 1.0)
        total += 2.0 * weight * float(d[k:] @ d[:-k]) / n
    return total


def _pair(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype="float64")
    y = np.asarray(b, dtype="float64")
    if x.shape != y.shape:
        raise EvaluationError(f"shapes differ: {x.shape} vs {y.shape}")
    return x, y


def _hits(hits: ArrayLike) -> np.ndarray:
    h = np.asarray(hits).astype(bool)
    if h.ndim != 1 or h.size < 2:
        raise EvaluationError("hits must be a 1-d sequence of at least 2 indicators")
    return h


def _check_counts(exceptions: int, n: int, alpha: float) -> None:
    if n < 1 or not 0 <= exceptions <= n:
        raise EvaluationError(f"need 0 <= exceptions <= n and n >= 1, got {exceptions}, {n}")
    if not 0.0 < alpha < 1.0:
        raise EvaluationError(f"alpha must be in (0, 1), got {alpha}")
