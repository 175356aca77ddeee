"""Risk metrics published with every snapshot: VaR/ES with conformal bounds, and liquidity.

VaR and ES
    Loss fractions of notional over the horizon, positive numbers. The forecast's own
    ``var_99``/``es_99`` are used when present (the model knows its tail); their conformal
    bounds scale them by ``sigma_bound / sigma``, exact for a zero-mean location-scale
    return distribution. Without them a zero-mean normal or unit-variance Student-t on the
    H-ahead log return gives ``VaR = q * sigma`` and ``ES = e * sigma``.

Liquidity (from bars, point in time)
    * Amihud illiquidity: mean ``|r_t| / quote_volume_t`` (price impact per USD traded).
    * Spread: the Abdi-Ranaldo (2017) close-high-low estimator,
      ``s^2 = 4 E[(c_t - eta_t)(c_t - eta_{t+1})]`` with ``eta`` the mid-range in logs.
    * Slippage for a standard order of ``Q`` USD: half the spread plus square-root impact
      ``Y * sigma_daily * sqrt(Q / ADV)`` (Almgren et al. 2005; Toth et al. 2011), with ``Y``
      of order one and ADV the average daily quote volume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
import pandas as pd
from scipy import special

from serving.errors import LiquidityDataError

Distribution = Literal["normal", "t"]


@dataclass(frozen=True)
class TailMetrics:
    """VaR and ES at one level with their conformal bounds (loss fractions, positive)."""

    var: float
    var_lower: float
    var_upper: float
    es: float
    es_lower: float
    es_upper: float


@dataclass(frozen=True)
class LiquidityMetrics:
    """Liquidity of one asset as published in a snapshot's ``liquidity`` block."""

    amihud: float
    spread_bps: float
    slippage_bps: float
    standard_size_usd: float


def tail_multipliers(
    level: float = 0.99, distribution: Distribution = "normal", dof: float = 5.0
) -> tuple[float, float]:
    """Return ``(q, e)`` with ``VaR = q * sigma`` and ``ES = e * sigma`` for a unit-std law.

    Parameters
    ----------
    level
        Confidence level, e.g. 0.99.
    distribution
        ``"normal"`` or ``"t"`` (Student-t rescaled to unit variance, ``dof > 2``).
    dof
        Degrees of freedom of the Student-t.
    """
    if not 0.5 < level < 1:
        raise ValueError(f"level must be in (0.5, 1), got {level}")
    tail = 1.0 - level
    if distribution == "normal":
        normal = NormalDist()
        q = normal.inv_cdf(level)
        return q, normal.pdf(q) / tail
    if dof <= 2:
        raise ValueError(f"Student-t needs dof > 2 for a finite variance, got {dof}")
    scale = math.sqrt((dof - 2) / dof)
    t = float(special.stdtrit(dof, level))
    es = _student_pdf(t, dof) * (dof + t * t) / ((dof - 1) * tail)
    return t * scale, float(es * scale)


def _student_pdf(x: float, dof: float) -> float:
    log_norm = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)
    return math.exp(log_norm - (dof + 1) / 2 * math.log1p(x * x / dof))


def tail_metrics(
    sigma: float,
    sigma_lower: float,
    sigma_upper: float,
    var: float | None = None,
    es: float | None = None,
    distribution: Distribution = "normal",
) -> TailMetrics:
    """VaR/ES at 99% with conformal bounds from a calibrated sigma forecast.

    Parameters
    ----------
    sigma, sigma_lower, sigma_upper
        Forecast std of the H-ahead log return and its conformal interval.
    var, es
        The model's own 99% VaR and ES, used when finite (else the parametric law).
    distribution
        Parametric law for the fallback computation.
    """
    q, e = tail_multipliers(0.99, distribution)
    var_point = var if var is not None and math.isfinite(var) and var > 0 else q * sigma
    es_point = es if es is not None and math.isfinite(es) and es > 0 else e * sigma
    # ES below VaR would be an incoherent pair; keep the payload coherent.
    es_point = max(es_point, var_point)
    ratio_lo = sigma_lower / sigma if sigma > 0 else 1.0
    ratio_hi = sigma_upper / sigma if sigma > 0 else 1.0
    return TailMetrics(
        var=var_point,
        var_lower=var_point * ratio_lo,
        var_upper=var_point * ratio_hi,
        es=es_point,
        es_lower=es_point * ratio_lo,
        es_upper=es_point * ratio_hi,
    )


def liquidity_metrics(
    bars: pd.DataFrame,
    as_of: pd.Timestamp | None = None,
    window_hours: float = 24.0 * 30,
    standard_size_usd: float = 1_000_000.0,
    impact_coefficient: float = 1.0,
    min_bars: int = 48,
) -> pd.DataFrame:
    """Amihud, spread and standard-size slippage per asset from Bars.

    Parameters
    ----------
    bars
        Bars contract frame (``ts, asset, high, low, close, quote_volume`` are used).
    as_of
        Only bars with ``ts <= as_of`` are used (point in time); ``None`` uses all.
    window_hours
        Trailing window of bars.
    standard_size_usd
        Order size the slippage refers to.
    impact_coefficient
        ``Y`` of the square-root law.
    min_bars
        Fewest bars per asset required.

    Returns
    -------
    pandas.DataFrame
        Indexed by asset, columns ``amihud, spread_bps, slippage_bps, standard_size_usd``.

    Raises
    ------
    LiquidityDataError
        If a column is missing or an asset has fewer than ``min_bars`` bars in the window.
    """
    needed = ["ts", "asset", "high", "low", "close", "quote_volume"]
    missing = [c for c in needed if c not in bars.columns]
    if missing:
        raise LiquidityDataError(f"bars lack columns {missing} needed for liquidity metrics")
    frame = bars[needed].copy()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    end = frame["ts"].max() if as_of is None else pd.Timestamp(as_of)
    frame = frame[(frame["ts"] <= end) & (frame["ts"] > end - pd.Timedelta(hours=window_hours))]
    rows = {}
    for asset, group in frame.sort_values("ts").groupby("asset", sort=True):
        if len(group) < min_bars:
            raise LiquidityDataError(
                f"{asset}: only {len(group)} bars in the {window_hours:g}h window ending "
                f"{end}; need {min_bars} for liquidity metrics"
            )
        rows[asset] = asdict_liquidity(
            _asset_liquidity(group, standard_size_usd, impact_coefficient)
        )
    return pd.DataFrame.from_dict(rows, orient="index")


def asdict_liquidity(metrics: LiquidityMetrics) -> dict[str, float]:
    """The ``liquidity`` block of a snapshot as a plain dict."""
    return {
        "amihud": metrics.amihud,
        "spread_bps": metrics.spread_bps,
        "slippage_bps": metrics.slippage_bps,
        "standard_size_usd": metrics.standard_size_usd,
    }


def _asset_liquidity(
    group: pd.DataFrame, standard_size_usd: float, impact_coefficient: float
) -> LiquidityMetrics:
    close = np.log(group["close"].to_numpy(float))
    high = np.log(group["high"].to_numpy(float))
    low = np.log(group["low"].to_numpy(float))
    quote = group["quote_volume"].to_numpy(float)
    returns = np.diff(close)
    traded = quote[1:] > 0
    amihud = float(np.mean(np.abs(returns[traded]) / quote[1:][traded])) if traded.any() else 0.0

    mid = 0.5 * (high + low)
    products = (close[:-1] - mid[:-1]) * (close[:-1] - mid[1:])
    spread = math.sqrt(max(4.0 * float(np.mean(products)), 0.0))

    span_days = max(
        (group["ts"].iloc[-1] - group["ts"].iloc[0]).total_seconds() / 86400.0, 1.0 / 24
    )
    bars_per_day = (len(group) - 1) / span_days if len(group) > 1 else 24.0
    sigma_daily = float(np.std(returns, ddof=1)) * math.sqrt(bars_per_day)
    adv = float(quote.sum()) / span_days
    impact = impact_coefficient * sigma_daily * math.sqrt(standard_size_usd / adv) if adv else 1.0
    return LiquidityMetrics(
        amihud=amihud,
        spread_bps=spread * 1e4,
        slippage_bps=(0.5 * spread + impact) * 1e4,
        standard_size_usd=standard_size_usd,
    )
