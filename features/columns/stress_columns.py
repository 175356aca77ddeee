"""The funding-stress family: funding and basis extremes, their changes, perp-spot divergence.

Crowded leverage shows in the perpetual before it shows in the price: funding and the basis
stretch far from their own recent range, and perpetual volume runs ahead of spot volume.
These columns put those extremes on a scale comparable across assets. They read the
``funding_rate`` and ``perp_basis`` columns the funding family has already added (both
known at the bar close), so every value here is known at the close too; an asset without a
perpetual gets NaN throughout.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import volatility
from features.columns.inputs import AssetInputs
from features.columns.registry import ColumnNames, Columns
from features.columns.transforms import lagged_difference, log_ratio, rolling_zscore

__all__ = ["add_stress_columns"]

FAMILY = "funding_stress"


def add_stress_columns(
    cols: Columns, names: ColumnNames, grid: pd.DataFrame, inputs: AssetInputs
) -> None:
    """Add the funding-stress columns of one asset, in catalog order.

    Parameters
    ----------
    cols
        The collector; it must already hold ``funding_rate`` and ``perp_basis``.
    names
        Naming and window conversion for the config and interval.
    grid
        The asset's bars on its complete grid (``volume`` is read).
    inputs
        The asset's perp bars (their ``volume`` is read).
    """
    cfg = names.config
    day, month = names.day, cfg.har_windows_hours[2]
    long_h = cfg.flow_long_window_hours
    d = names.bars(day, "funding-stress change")
    m = names.bars(month, "funding-stress z-score", least=2)
    w = names.bars(long_h, "basis z-score", least=2)
    funding, basis = cols.values["funding_rate"], cols.values["perp_basis"]
    cols.add(
        f"funding_z_{month}h",
        FAMILY,
        f"{month}h",
        f"funding_rate as a z-score of its own last {month}h (extreme funding = crowding)",
        rolling_zscore(funding, m, names.need(m)),
    )
    cols.add(
        f"funding_chg_{day}h",
        FAMILY,
        f"{2 * day}h",
        f"funding_rate minus its value {day}h earlier",
        lagged_difference(funding, d),
    )
    cols.add(
        f"basis_z_{long_h}h",
        FAMILY,
        f"{long_h}h",
        f"perp-spot divergence: perp_basis as a z-score of its own last {long_h}h",
        rolling_zscore(basis, w, names.need(w)),
    )
    cols.add(
        f"basis_chg_{day}h",
        FAMILY,
        f"{2 * day}h",
        f"perp_basis minus its value {day}h earlier (perp minus spot log return over {day}h)",
        lagged_difference(basis, d),
    )
    spot_volume = volatility.window_total(
        grid["volume"].to_numpy(dtype="float64"), d, names.need(d)
    )
    perp_volume = volatility.window_total(_perp_volume(grid, inputs), d, names.need(d))
    ratio = log_ratio(perp_volume, spot_volume)
    cols.add(
        f"perp_spot_volume_z_{long_h}h",
        FAMILY,
        f"{long_h}h",
        f"log(perp/spot base volume over {day}h) as a z-score of its last {long_h}h "
        "(leverage running ahead of spot); NaN without perp volume",
        rolling_zscore(ratio, w, names.need(w)),
    )


def _perp_volume(grid: pd.DataFrame, inputs: AssetInputs) -> np.ndarray:
    perp = inputs.perp
    if perp is None or not len(perp) or "volume" not in perp.columns:
        return np.full(len(grid), np.nan)
    series = pd.Series(perp["volume"].to_numpy(dtype="float64"), index=pd.DatetimeIndex(perp["ts"]))
    series = series[~series.index.duplicated()]
    return series.reindex(pd.DatetimeIndex(grid["ts"])).to_numpy(dtype="float64")
