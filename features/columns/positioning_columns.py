"""The positioning family: open-interest growth and liquidation flow, as of the bar close.

Rows of the positioning frame are stamped at the instant they become known (a daily value
at its day's close, :mod:`features.positioning`). A bar takes the newest row known at its
close, and nothing older than :data:`MAX_AGE`; daily changes compare a row with the row
exactly one (or seven) days before it, so a missing day gives NaN rather than a two-day
change. An asset the source does not cover (open interest exists for BTC and ETH only,
liquidations for four assets) gets NaN: missing, never filled.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

from features.columns.inputs import AssetInputs
from features.columns.registry import ColumnNames, Columns
from features.columns.transforms import log_ratio

__all__ = ["MAX_AGE", "add_positioning_columns"]

FAMILY = "positioning"
MAX_AGE: Final[pd.Timedelta] = pd.Timedelta(hours=48)
"""A positioning row older than this at the bar close is stale: NaN, not carried on."""
_DAY: Final[pd.Timedelta] = pd.Timedelta(days=1)
_LIQ_NORM_DAYS: Final[int] = 30
_USD_SCALE: Final[float] = 1e6


def add_positioning_columns(
    cols: Columns, names: ColumnNames, grid: pd.DataFrame, inputs: AssetInputs
) -> None:
    """Add the positioning columns of one asset, in catalog order.

    Parameters
    ----------
    cols
        The collector the columns are added to.
    names
        Naming and window conversion for the config and interval.
    grid
        The asset's complete grid; only ``ts`` is read.
    inputs
        The asset's positioning rows (``ts`` = when known).
    """
    close = pd.DatetimeIndex(grid["ts"]) + names.step
    daily = _daily_measures(inputs.positioning)
    on_bars = _asof(daily, close)
    specs = (
        (
            "oi_growth_1d",
            "log(open interest / open interest one day earlier), daily, known "
            "at the day's close; NaN without open interest",
        ),
        ("oi_growth_7d", "log(open interest / open interest seven days earlier)"),
        (
            "liq_log_1d",
            f"log(1 + liquidated notional of the last day, 1/{_USD_SCALE:g} USD); "
            "NaN without liquidation data",
        ),
        (
            f"liq_surprise_{_LIQ_NORM_DAYS}d",
            f"log((1 + last day's liquidations) / (1 + their "
            f"mean over the {_LIQ_NORM_DAYS} days before))",
        ),
        ("liq_imbalance_1d", "(long - short liquidations) / (long + short), last day"),
    )
    for name, definition in specs:
        cols.add(
            name,
            FAMILY,
            f"as-of <= {MAX_AGE / pd.Timedelta(hours=1):g}h",
            definition,
            on_bars[name],
        )


def _daily_measures(frame: pd.DataFrame) -> pd.DataFrame:
    """Per known-at time: the family's measures from the rows at and before it."""
    columns = [
        "oi_growth_1d",
        "oi_growth_7d",
        "liq_log_1d",
        f"liq_surprise_{_LIQ_NORM_DAYS}d",
        "liq_imbalance_1d",
    ]
    if frame is None or not len(frame):
        return pd.DataFrame(columns=columns, index=pd.DatetimeIndex([], tz="UTC"), dtype="float64")
    index = pd.DatetimeIndex(frame["ts"])
    oi = pd.Series(frame["open_interest"].to_numpy(dtype="float64"), index=index)
    long_ = frame["long_liquidations_usd"].to_numpy(dtype="float64")
    short = frame["short_liquidations_usd"].to_numpy(dtype="float64")
    total = pd.Series((long_ + short) / _USD_SCALE, index=index)
    # The norm is a time window of earlier days only, so a gap shortens it instead of
    # reaching further back; it needs most of its days.
    norm = total.rolling(
        f"{_LIQ_NORM_DAYS}D", closed="left", min_periods=int(0.8 * _LIQ_NORM_DAYS)
    ).mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        imbalance = np.where(long_ + short > 0, (long_ - short) / (long_ + short), np.nan)
    out = pd.DataFrame(
        {
            "oi_growth_1d": log_ratio(oi.to_numpy(), oi.reindex(index - _DAY).to_numpy()),
            "oi_growth_7d": log_ratio(oi.to_numpy(), oi.reindex(index - 7 * _DAY).to_numpy()),
            "liq_log_1d": np.log1p(total.to_numpy()),
            f"liq_surprise_{_LIQ_NORM_DAYS}d": np.log1p(total.to_numpy())
            - np.log1p(norm.to_numpy()),
            "liq_imbalance_1d": imbalance,
        },
        index=index,
    )
    return out[columns]


def _asof(daily: pd.DataFrame, close: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    """The newest row known at each close (``known <= close``), if not older than MAX_AGE."""
    if daily.empty or not len(close):
        return {c: np.full(len(close), np.nan) for c in daily.columns}
    known = daily.index.asi8
    pos = np.searchsorted(known, close.asi8, side="right") - 1
    fresh = pos >= 0
    fresh[fresh] = (close.asi8[fresh] - known[pos[fresh]]) <= MAX_AGE.value
    out = {}
    for column in daily.columns:
        values = daily[column].to_numpy(dtype="float64")
        out[column] = np.where(fresh, values[np.clip(pos, 0, None)], np.nan)
    return out
