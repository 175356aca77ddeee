"""The calendar family: cyclical encodings of the bar open time."""

from __future__ import annotations

import pandas as pd

from features import cross_asset
from features.columns.registry import Columns

__all__ = ["add_calendar_columns"]


def add_calendar_columns(cols: Columns, grid: pd.DataFrame) -> None:
    """Add the calendar columns (hour and day-of-week on the circle) of the bar opens.

    Parameters
    ----------
    cols
        The collector the columns are added to.
    grid
        The asset's complete grid; only ``ts`` is read.
    """
    encoded = cross_asset.calendar_encoding(pd.DatetimeIndex(grid["ts"]))
    definitions = {
        "hour_sin": "sin(2 pi hour/24) of the bar open (UTC)",
        "hour_cos": "cos(2 pi hour/24) of the bar open (UTC)",
        "dow_sin": "sin(2 pi (weekday + hour/24)/7) of the bar open (UTC)",
        "dow_cos": "cos(2 pi (weekday + hour/24)/7) of the bar open (UTC)",
    }
    for name, values in encoded.items():
        cols.add(name, "calendar", "none", definitions[name], values)
