"""The order-flow and liquidity families of one asset, from its bars' taker flow."""

from __future__ import annotations

import numpy as np

from features import orderflow, volatility
from features.columns.registry import ColumnNames, Columns

__all__ = ["add_orderflow_columns"]


def add_orderflow_columns(
    cols: Columns, names: ColumnNames, a: dict[str, np.ndarray], ret: np.ndarray
) -> None:
    """Add the order-flow and liquidity columns of one asset, in catalog order.

    Parameters
    ----------
    cols
        The collector the columns are added to.
    names
        Naming and window conversion for the config and interval.
    a
        The asset's Bars columns (``open`` .. ``taker_buy_quote_volume``) on its complete grid.
    ret
        Log close-to-close returns on the same grid.
    """
    cfg = names.config
    fh, lh = cfg.flow_window_hours, cfg.flow_long_window_hours
    f = names.bars(fh, "order-flow")
    lw = names.bars(lh, "long order-flow", least=2)
    fn, ln = names.need(f), names.need(lw)
    unit = f"1/{cfg.flow_scale:g} quote"
    volume, buy = a["volume"], a["taker_buy_volume"]
    imbalance = orderflow.taker_imbalance(volume, buy)
    window_imb = orderflow.window_taker_imbalance(volume, buy, f, fn)
    cols.add(
        "taker_imbalance",
        "orderflow",
        "1 bar",
        "(taker buy - taker sell)/volume in [-1, 1]",
        imbalance,
    )
    cols.add(
        "taker_imbalance_chg",
        "orderflow",
        "2 bars",
        "taker_imbalance minus its previous bar",
        _diff(imbalance, 1),
    )
    cols.add(
        f"taker_imbalance_{fh}h",
        "orderflow",
        f"{fh}h",
        "volume-weighted taker imbalance over the window",
        window_imb,
    )
    cols.add(
        f"taker_imbalance_{fh}h_chg",
        "orderflow",
        f"{2 * fh}h",
        f"taker_imbalance_{fh}h minus its value {fh}h earlier",
        _diff(window_imb, f),
    )
    signed = (
        orderflow.signed_volume(a["quote_volume"], a["taker_buy_quote_volume"]) / cfg.flow_scale
    )
    cvd = orderflow.cumulative_volume_delta(signed, f, fn)
    typical = volatility.window_mean(a["quote_volume"], lw, ln) * f / cfg.flow_scale
    with np.errstate(divide="ignore", invalid="ignore"):
        cvd_rel = np.where(typical > 0, cvd / typical, np.nan)
    cols.add(
        "signed_volume", "orderflow", "1 bar", f"taker buy minus sell quote volume ({unit})", signed
    )
    cols.add(
        f"cvd_{fh}h",
        "orderflow",
        f"{fh}h",
        f"cumulative volume delta over the window ({unit})",
        cvd,
    )
    cols.add(
        f"cvd_{fh}h_rel",
        "orderflow",
        f"{lh}h",
        f"cvd_{fh}h over the mean {fh}h quote volume of the last {lh}h",
        cvd_rel,
    )
    trades = a["trades"]
    cols.add(
        "trades_log", "orderflow", "1 bar", "log(1 + trade count) of the bar", np.log1p(trades)
    )
    cols.add(
        f"trade_surprise_{lh}h",
        "orderflow",
        f"{lh}h",
        f"log((1+trades)/(1+mean trades of previous {lh}h))",
        orderflow.trade_surprise(trades, lw, ln),
    )
    cols.add(
        f"avg_trade_size_{fh}h",
        "liquidity",
        f"{fh}h",
        "quote volume per trade over the window",
        orderflow.average_trade_size(a["quote_volume"], trades, f, fn),
    )
    cols.add(
        f"amihud_{fh}h",
        "liquidity",
        f"{fh}h",
        f"mean |ret| per {unit} volume (Amihud)",
        orderflow.amihud_illiquidity(ret, a["quote_volume"], f, fn, cfg.flow_scale),
    )
    cols.add(
        f"kyle_lambda_{lh}h",
        "liquidity",
        f"{lh}h",
        f"OLS slope of ret on signed volume ({unit}), with intercept",
        orderflow.kyle_lambda(ret, signed, lw, ln),
    )
    cols.add(
        f"roll_spread_{lh}h",
        "liquidity",
        f"{lh}h",
        "Roll 2 sqrt(-cov(r_t, r_t-1)), 0 if cov >= 0",
        orderflow.roll_spread(ret, lw, ln),
    )
    cols.add(
        f"corwin_schultz_{fh}h",
        "liquidity",
        f"{fh}h",
        "Corwin-Schultz high-low spread, window mean, floored at 0",
        orderflow.corwin_schultz_spread(a["high"], a["low"], f, fn),
    )
    cols.add(
        f"vpin_{fh}h",
        "orderflow",
        f"{fh}h",
        f"VPIN, bulk volume classification with trailing {lh}h sigma, in [0, 1]",
        orderflow.vpin_bvc(ret, volume, f, lw, fn, ln),
    )


def _diff(values: np.ndarray, lag: int) -> np.ndarray:
    out = np.full(values.shape, np.nan)
    if values.size > lag:
        out[lag:] = values[lag:] - values[:-lag]
    return out
