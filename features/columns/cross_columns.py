"""Stage 3: one asset's cross-asset columns, read from the market context."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import cross_asset
from features.columns.config import FeatureConfig
from features.columns.inputs import MarketContext
from features.columns.lead_columns import add_lead_columns
from features.columns.registry import ColumnNames, Columns

__all__ = ["cross_columns"]


def cross_columns(
    frame: pd.DataFrame, context: MarketContext, config: FeatureConfig, interval: str
) -> Columns:
    """Stage 3 columns of one asset: betas, market factors, spillover, dispersion, rank.

    Parameters
    ----------
    frame
        The asset's stage-1 frame (``ts``, ``asset`` and its return column).
    context
        The cross-sectional panels of the market.
    config
        Windows and parameters.
    interval
        Bar interval.

    Returns
    -------
    Columns
        The cross-asset columns with their specs; NaN where a reference asset is absent.
    """
    names = ColumnNames(config, interval)
    cols = Columns()
    index = pd.DatetimeIndex(frame["ts"])
    ret = frame[names.ret].to_numpy(dtype="float64")
    ch, day = config.cross_window_hours, names.day
    n = names.bars(ch, "cross-asset", least=2)
    need = names.need(n)
    references = {
        "btc": _column(context.ret, context.btc_asset),
        "mkt": context.market_ret,
    }
    for label, series in references.items():
        beta, corr = cross_asset.rolling_beta_correlation(ret, _on(series, index), n, need)
        what = "BTC" if label == "btc" else "the equal-weight market index"
        cols.add(
            f"beta_{label}_{ch}h", "cross_asset", f"{ch}h", f"OLS beta of ret on {what} ret", beta
        )
        cols.add(
            f"corr_{label}_{ch}h",
            "cross_asset",
            f"{ch}h",
            f"correlation of ret with {what} ret",
            corr,
        )
    cols.add(
        "mkt_ret",
        "cross_asset",
        "1 bar",
        "equal-weight mean of all assets' bar returns",
        _on(context.market_ret, index),
    )
    cols.add(
        f"mkt_log_rv_{day}h",
        "cross_asset",
        f"{day}h",
        f"market volatility factor: cross-sectional mean of log rv_{day}h",
        _on(context.market_log_rv, index),
    )
    for label, asset in (("btc", context.btc_asset), ("eth", context.eth_asset)):
        series = _column(context.log_rv, asset)
        for lag in config.spillover_lags_bars:
            lagged = _lag_in_time(series, lag, names.step)
            cols.add(
                f"{label}_log_rv_{day}h_lag{lag}",
                "cross_asset",
                f"{day}h, lag {lag} bars",
                f"log rv_{day}h of {label.upper()} {lag} bar(s) earlier (spillover); NaN if absent",
                _on(lagged, index),
            )
    cols.add(
        "xs_ret_dispersion",
        "cross_asset",
        "1 bar",
        f"cross-sectional std of bar returns (>= {config.min_dispersion_assets} assets)",
        _on(context.ret_dispersion, index),
    )
    cols.add(
        f"xs_log_rv_dispersion_{day}h",
        "cross_asset",
        f"{day}h",
        f"cross-sectional std of log rv_{day}h",
        _on(context.log_rv_dispersion, index),
    )
    asset = str(frame["asset"].iloc[0]) if len(frame) else None
    cols.add(
        f"vol_rank_{day}h",
        "cross_asset",
        f"{day}h",
        f"rank of rv_{day}h across assets, 0 lowest .. 1 highest",
        _on(_column(context.vol_rank, asset), index),
    )
    add_lead_columns(cols, names, index, context)
    return cols


def _column(wide: pd.DataFrame, asset: str | None) -> pd.Series:
    if asset is None or asset not in wide.columns:
        return pd.Series(dtype="float64", index=pd.DatetimeIndex([], tz="UTC"))
    return wide[asset]


def _on(series: pd.Series, index: pd.DatetimeIndex) -> np.ndarray:
    if series.empty:
        return np.full(len(index), np.nan)
    return series.reindex(index).to_numpy(dtype="float64")


def _lag_in_time(series: pd.Series, lag: int, step: pd.Timedelta) -> pd.Series:
    """Value ``lag`` bars earlier in *time* (a missing earlier bar gives NaN)."""
    if series.empty:
        return series
    return pd.Series(series.to_numpy(), index=series.index + lag * step)
