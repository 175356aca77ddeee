"""The activity family: volume and trade-count surprises against the asset's own recent norm.

A burst of activity beyond what the hour of day and the last week explain arrives before
the price moves it anticipates. Everything uses the bar's own volume and trade count, known
at its close.
"""

from __future__ import annotations

import numpy as np

from features import volatility
from features.columns.registry import ColumnNames, Columns
from features.columns.transforms import lagged, log_ratio

__all__ = ["add_activity_columns"]

FAMILY = "activity"
_SAME_HOUR_DAYS = 7
"""Days of the same hour that form the hour-of-day norm."""


def add_activity_columns(cols: Columns, names: ColumnNames, a: dict[str, np.ndarray]) -> None:
    """Add the activity columns of one asset, in catalog order.

    Parameters
    ----------
    cols
        The collector the columns are added to.
    names
        Naming and window conversion for the config and interval.
    a
        The asset's Bars columns on its complete grid (``quote_volume``, ``trades``).
    """
    day, long_h = names.day, names.config.flow_long_window_hours
    d = names.bars(day, "activity")
    lw = names.bars(long_h, "activity norm", least=2)
    quote, trades = a["quote_volume"], a["trades"]
    same_hour = np.vstack([lagged(quote, k * d) for k in range(1, _SAME_HOUR_DAYS + 1)])
    valid = np.isfinite(same_hour).sum(axis=0)
    total = np.nansum(same_hour, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(valid >= names.need(_SAME_HOUR_DAYS), total / valid, np.nan)
    cols.add(
        "volume_surprise_hod",
        FAMILY,
        f"{_SAME_HOUR_DAYS * day}h",
        f"log(quote volume / mean quote volume of the same bar of day over the last "
        f"{_SAME_HOUR_DAYS} days)",
        log_ratio(quote, norm),
    )
    for label, values in (("volume", quote), ("trades", trades)):
        recent = volatility.window_total(values, d, names.need(d))
        usual = lagged(volatility.window_mean(values, lw, names.need(lw)), d) * d
        cols.add(
            f"{label}_surprise_{day}h",
            FAMILY,
            f"{long_h + day}h",
            f"log({label} over the last {day}h / mean {day}h {label} of the {long_h}h before)",
            log_ratio(recent, usual),
        )
