"""The cross-asset lead family: BTC and ETH moves and volatility, offered to every asset.

Alts follow the majors: a move or a volatility burst in BTC or ETH spreads to the rest within
hours. These columns give each asset the majors' latest short-horizon return and the ratio
of their short to daily realized variance (a volatility burst under way), all from bars
that closed at or before the row's close. NaN where a major is absent from the market.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

from features import volatility
from features.columns.inputs import MarketContext
from features.columns.registry import ColumnNames, Columns
from features.columns.transforms import log_ratio

__all__ = ["SHORT_HOURS", "add_lead_columns"]

FAMILY = "cross_asset_lead"
SHORT_HOURS: Final[int] = 4
"""Short window of the majors' move and volatility burst."""


def add_lead_columns(
    cols: Columns, names: ColumnNames, index: pd.DatetimeIndex, context: MarketContext
) -> None:
    """Add the lead columns of one asset, in catalog order.

    Parameters
    ----------
    cols
        The collector the columns are added to.
    names
        Naming and window conversion for the config and interval.
    index
        The asset's bar opens.
    context
        The market's wide returns and the resolved BTC/ETH names.
    """
    day = names.day
    s = names.bars(SHORT_HOURS, "lead")
    d = names.bars(day, "lead daily", least=2)
    for label, asset in (("btc", context.btc_asset), ("eth", context.eth_asset)):
        if asset is None or asset not in context.ret.columns:
            ret = np.full(len(context.ret), np.nan)
        else:
            ret = context.ret[asset].to_numpy(dtype="float64")
        move = volatility.window_total(ret, s, names.need(s))
        short = volatility.realized_variance(ret, s, names.need(s))
        daily = volatility.realized_variance(ret, d, names.need(d))
        burst = log_ratio(short * (d / s), daily)
        for name, values, definition in (
            (
                f"{label}_ret_{SHORT_HOURS}h",
                move,
                f"{label.upper()} log return over the last {SHORT_HOURS}h; NaN if absent",
            ),
            (
                f"{label}_vol_burst_{SHORT_HOURS}h",
                burst,
                f"log({label.upper()} RV over {SHORT_HOURS}h scaled to {day}h / its rv_{day}h): "
                "a volatility burst under way",
            ),
        ):
            cols.add(
                name, FAMILY, f"{SHORT_HOURS}h", definition, _on(values, context.ret.index, index)
            )


def _on(values: np.ndarray, source: pd.DatetimeIndex, index: pd.DatetimeIndex) -> np.ndarray:
    if not len(source):
        return np.full(len(index), np.nan)
    return pd.Series(values, index=source).reindex(index).to_numpy(dtype="float64")
