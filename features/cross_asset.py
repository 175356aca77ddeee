"""Cross-asset, funding, basis and calendar features, all point in time.

Cross-sectional statistics (market index, volatility factor, dispersion, rank) are taken
over the assets that have a valid value at the same bar ``ts``; they never use a later bar.
Funding events are joined strictly as of the bar's close: an event stamped ``T`` is known
from ``T`` on, so bar ``ts`` sees the last event with ``T <= ts + interval`` and never a
later one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.volatility import FeatureInputError, FloatArray, rolling_covariance

__all__ = [
    "calendar_encoding",
    "cross_sectional_dispersion",
    "cross_sectional_mean",
    "cross_sectional_rank",
    "funding_asof",
    "perp_basis",
    "rolling_beta_correlation",
]


def cross_sectional_mean(wide: pd.DataFrame, min_assets: int = 1) -> pd.Series:
    """Equal-weight mean across assets (columns) at each time; NaN below ``min_assets``."""
    count = wide.notna().sum(axis=1)
    return wide.mean(axis=1, skipna=True).where(count >= min_assets)


def cross_sectional_dispersion(wide: pd.DataFrame, min_assets: int = 3) -> pd.Series:
    """Cross-sectional standard deviation (ddof=1) at each time; NaN below ``min_assets``."""
    count = wide.notna().sum(axis=1)
    return wide.std(axis=1, ddof=1, skipna=True).where(count >= max(min_assets, 2))


def cross_sectional_rank(wide: pd.DataFrame) -> pd.DataFrame:
    """Each asset's rank at each time scaled to [0, 1] (0 lowest, 1 highest; ties averaged).

    NaN where the asset's value is missing or fewer than two assets have a value.
    """
    ranks = wide.rank(axis=1, method="average", na_option="keep")
    count = wide.notna().sum(axis=1)
    scaled = ranks.sub(1.0).div((count - 1).where(count >= 2), axis=0)
    return scaled


def rolling_beta_correlation(
    ret: FloatArray, reference: FloatArray, window: int, min_valid: int
) -> tuple[FloatArray, FloatArray]:
    """Trailing beta and correlation of ``ret`` on ``reference`` over valid pairs.

    Returns
    -------
    tuple of arrays
        ``(beta, corr)``; NaN where the window has too few pairs or a zero variance.
    """
    cov, var_asset, var_ref = rolling_covariance(ret, reference, window, min_valid)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.where(var_ref > 0, cov / var_ref, np.nan)
        corr = np.where((var_ref > 0) & (var_asset > 0), cov / np.sqrt(var_asset * var_ref), np.nan)
    return beta, np.clip(corr, -1.0, 1.0)


def funding_asof(
    known_at: pd.DatetimeIndex,
    event_ts: pd.DatetimeIndex,
    rates: FloatArray,
    max_age: pd.Timedelta,
    asset: str = "",
) -> tuple[FloatArray, FloatArray]:
    """Last funding rate known at each time, and its change from the event before.

    Parameters
    ----------
    known_at
        Times at which the feature is evaluated (bar closes, ``ts + interval``).
    event_ts
        Funding event times; an event is known from its own time on.
    rates
        Funding rate of each event.
    max_age
        An event older than this at ``known_at`` is stale and gives NaN rather than an
        indefinitely carried value.
    asset
        For error messages.

    Returns
    -------
    tuple of arrays
        ``(level, change)`` aligned with ``known_at``; NaN before the first event, when
        stale, and (for ``change``) at the first event.

    Raises
    ------
    FeatureInputError
        If two events share a time but disagree on the rate.
    """
    order = np.argsort(event_ts.asi8, kind="stable")
    times = event_ts.asi8[order]
    values = np.asarray(rates, dtype="float64")[order]
    keep = ~np.isnan(values)
    times, values = times[keep], values[keep]
    same = np.flatnonzero(times[1:] == times[:-1])
    if same.size:
        clash = same[values[same] != values[same + 1]]
        if clash.size:
            when = pd.Timestamp(times[clash[0]], tz="UTC")
            raise FeatureInputError(
                f"asset {asset} funding event {when}: two rates "
                f"{values[clash[0]]} and {values[clash[0] + 1]}; deduplicate the funding "
                "history in the data layer"
            )
        unique = np.concatenate([[True], times[1:] != times[:-1]])
        times, values = times[unique], values[unique]
    now = known_at.asi8
    # side="right": an event stamped exactly at the bar close is known at that close.
    position = np.searchsorted(times, now, side="right") - 1
    level = np.full(now.shape, np.nan)
    change = np.full(now.shape, np.nan)
    seen = position >= 0
    fresh = seen.copy()
    fresh[seen] = (now[seen] - times[position[seen]]) <= max_age.value
    level[fresh] = values[position[fresh]]
    has_previous = fresh & (position >= 1)
    change[has_previous] = values[position[has_previous]] - values[position[has_previous] - 1]
    return level, change


def perp_basis(spot_close: FloatArray, perp_close: FloatArray) -> FloatArray:
    """Log perp-minus-spot basis ``ln(perp_close / spot_close)`` at the same bar close."""
    with np.errstate(divide="ignore", invalid="ignore"):
        basis = np.log(perp_close / spot_close)
    return np.where((perp_close > 0) & (spot_close > 0), basis, np.nan)


def calendar_encoding(ts: pd.DatetimeIndex) -> dict[str, FloatArray]:
    """Cyclical hour-of-day and weekday encoding of the bar open (UTC).

    Returns
    -------
    dict
        ``hour_sin``, ``hour_cos``, ``dow_sin``, ``dow_cos``; the fractional hour keeps
        sub-hourly bars distinct.
    """
    utc = ts.tz_convert("UTC")
    hour = utc.hour.to_numpy() + utc.minute.to_numpy() / 60.0
    day = utc.dayofweek.to_numpy() + hour / 24.0
    hour_angle = 2.0 * np.pi * hour / 24.0
    day_angle = 2.0 * np.pi * day / 7.0
    return {
        "hour_sin": np.sin(hour_angle),
        "hour_cos": np.cos(hour_angle),
        "dow_sin": np.sin(day_angle),
        "dow_cos": np.cos(day_angle),
    }
