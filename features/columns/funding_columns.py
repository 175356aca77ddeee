"""The funding and basis families of one asset, from its perpetual's funding and bars."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import cross_asset
from features.columns.inputs import AssetInputs
from features.columns.registry import ColumnNames, Columns
from features.errors import FeatureInputError

__all__ = ["add_funding_columns"]


def add_funding_columns(
    cols: Columns, names: ColumnNames, grid: pd.DataFrame, inputs: AssetInputs
) -> None:
    """Add the funding and perp-basis columns of one asset, in catalog order.

    Parameters
    ----------
    cols
        The collector the columns are added to.
    names
        Naming and window conversion for the config and interval.
    grid
        The asset's bars on its complete grid (``ts``, ``close``, ...).
    inputs
        The asset's funding events and perp bars.

    Raises
    ------
    FeatureInputError
        If a funding series is contradictory or a perp bar time is duplicated.
    """
    cfg = names.config
    close_times = pd.DatetimeIndex(grid["ts"]) + names.step
    funding = inputs.funding
    if funding is not None and len(funding):
        level, change = cross_asset.funding_asof(
            close_times,
            pd.DatetimeIndex(funding["ts"]),
            funding["funding_rate"].to_numpy(dtype="float64"),
            pd.Timedelta(cfg.funding_max_age_hours, unit="h"),
            inputs.asset,
        )
    else:
        level = change = np.full(len(grid), np.nan)
    asof = f"as-of <= {cfg.funding_max_age_hours}h"
    absent = "NaN if the asset has no perpetual funding"
    cols.add(
        "funding_rate",
        "funding",
        asof,
        f"last funding rate known at the bar close; {absent}",
        level,
    )
    cols.add(
        "funding_rate_chg", "funding", asof, "last funding rate minus the one before it", change
    )
    cols.add("funding_rate_abs", "funding", asof, "absolute last funding rate", np.abs(level))
    perp_close = np.full(len(grid), np.nan)
    perp = inputs.perp
    if perp is not None and len(perp):
        series = pd.Series(
            perp["close"].to_numpy(dtype="float64"), index=pd.DatetimeIndex(perp["ts"])
        )
        repeated = series.index.duplicated()
        if repeated.any():
            raise FeatureInputError(
                f"asset {inputs.asset} perp bar {series.index[repeated][0]}: duplicate bar "
                "time; deduplicate the perp bars in the data layer"
            )
        perp_close = series.reindex(pd.DatetimeIndex(grid["ts"])).to_numpy()
    spot_close = grid["close"].to_numpy(dtype="float64")
    cols.add(
        "perp_basis",
        "basis",
        "1 bar",
        "ln(perp close / spot close) of the same bar; NaN without a perp",
        cross_asset.perp_basis(spot_close, perp_close),
    )
