"""Stage 1: the columns of one asset that need only its own data, family by family."""

from __future__ import annotations

import pandas as pd

from features import volatility
from features.bars import REQUIRED_COLUMNS
from features.columns.activity_columns import add_activity_columns
from features.columns.calendar_columns import add_calendar_columns
from features.columns.config import FeatureConfig
from features.columns.event_columns import add_event_columns
from features.columns.funding_columns import add_funding_columns
from features.columns.inputs import AssetInputs
from features.columns.orderflow_columns import add_orderflow_columns
from features.columns.positioning_columns import add_positioning_columns
from features.columns.registry import ColumnNames, Columns
from features.columns.stress_columns import add_stress_columns
from features.columns.volatility_columns import add_volatility_columns

__all__ = ["asset_columns"]


def asset_columns(
    grid: pd.DataFrame, inputs: AssetInputs, config: FeatureConfig, interval: str
) -> Columns:
    """Stage 1 columns of one asset: every family that needs only its own data.

    Parameters
    ----------
    grid
        The asset's bars on its complete grid (:func:`features.volatility.complete_grid`).
    inputs
        The asset's funding events, perp bars, positioning and the macro calendar.
    config
        Windows and parameters.
    interval
        Bar interval.

    Returns
    -------
    Columns
        Volatility, order-flow, funding, basis, calendar, funding-stress, activity,
        positioning and macro-event columns with their specs.
    """
    names = ColumnNames(config, interval)
    cols = Columns()
    arrays = {c: grid[c].to_numpy(dtype="float64") for c in REQUIRED_COLUMNS[2:]}
    ret = volatility.close_returns(arrays["close"])
    add_volatility_columns(cols, names, arrays, ret)
    add_orderflow_columns(cols, names, arrays, ret)
    add_funding_columns(cols, names, grid, inputs)
    add_calendar_columns(cols, grid)
    # Information that arrives ahead of the volatility it anticipates.
    add_stress_columns(cols, names, grid, inputs)
    add_activity_columns(cols, names, arrays)
    add_positioning_columns(cols, names, grid, inputs)
    add_event_columns(cols, names, grid, inputs)
    return cols
