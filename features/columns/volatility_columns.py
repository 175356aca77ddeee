"""The volatility families of one asset: RV, HAR, jump, range estimators and EWMA."""

from __future__ import annotations

import numpy as np

from features import volatility
from features.columns.registry import ColumnNames, Columns

__all__ = ["add_volatility_columns"]


def add_volatility_columns(
    cols: Columns, names: ColumnNames, a: dict[str, np.ndarray], ret: np.ndarray
) -> None:
    """Add the volatility, HAR, jump, range and EWMA columns of one asset, in catalog order.

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
    frac = f"NaN if < {cfg.min_valid_fraction:g} of the window is valid; rescaled to full window"
    cols.add(names.ret, "volatility", "1 bar", "log close-to-close return; NaN across a gap", ret)
    rv_cache: dict[int, np.ndarray] = {}

    def rv(hours: int) -> np.ndarray:
        if hours not in rv_cache:
            n = names.bars(hours, "realized variance")
            rv_cache[hours] = volatility.realized_variance(ret, n, names.need(n))
        return rv_cache[hours]

    for hours in cfg.rv_windows_hours:
        cols.add(
            names.rv(hours), "volatility", f"{hours}h", f"sum of squared returns; {frac}", rv(hours)
        )
    day, week, month = cfg.har_windows_hours
    for label, hours in (("d", day), ("w", week), ("m", month)):
        days = hours / day
        cols.add(
            f"har_{label}",
            "har",
            f"{hours}h",
            f"HAR component: RV over {hours}h divided by {days:g} (per-{day}h units)",
            rv(hours) / days,
        )
    j = names.bars(cfg.jump_window_hours, "jump", least=2)
    jn, jh = names.need(j), cfg.jump_window_hours
    up, down = volatility.realized_semivariances(ret, j, jn)
    cols.add(
        f"rq_{jh}h",
        "jump",
        f"{jh}h",
        "realized quarticity (n/3) sum r^4 (HARQ)",
        volatility.realized_quarticity(ret, j, jn),
    )
    cols.add(
        f"bv_{jh}h",
        "jump",
        f"{jh}h",
        "bipower variation (pi/2) n/(n-1) sum |r_t||r_t-1|",
        volatility.bipower_variation(ret, j, jn),
    )
    cols.add(
        f"jump_{jh}h",
        "jump",
        f"{jh}h",
        "jump variation max(RV - BV, 0)",
        volatility.jump_variation(ret, j, jn),
    )
    cols.add(f"rsv_up_{jh}h", "jump", f"{jh}h", "upside realized semivariance sum r^2 1{r>0}", up)
    cols.add(
        f"rsv_down_{jh}h", "jump", f"{jh}h", "downside realized semivariance sum r^2 1{r<0}", down
    )
    o, h, lo, c = a["open"], a["high"], a["low"], a["close"]
    park = volatility.parkinson_variance(h, lo)
    gk = volatility.garman_klass_variance(o, h, lo, c)
    rs = volatility.rogers_satchell_variance(o, h, lo, c)
    for hours in cfg.range_windows_hours:
        n = names.bars(hours, "range estimator", least=2)
        need = names.need(n)
        scale = f"per-bar estimate averaged over {hours}h times n (RV scale)"
        cols.add(
            f"parkinson_{hours}h",
            "range",
            f"{hours}h",
            f"Parkinson (ln H/L)^2/(4 ln 2), {scale}",
            volatility.window_total(park, n, need),
        )
        cols.add(
            f"garman_klass_{hours}h",
            "range",
            f"{hours}h",
            f"Garman-Klass, {scale}",
            volatility.window_total(gk, n, need),
        )
        cols.add(
            f"rogers_satchell_{hours}h",
            "range",
            f"{hours}h",
            f"Rogers-Satchell (drift-free), {scale}",
            volatility.window_total(rs, n, need),
        )
        cols.add(
            f"yang_zhang_{hours}h",
            "range",
            f"{hours}h",
            "Yang-Zhang open-jump + open-close + RS mix, RV scale",
            volatility.yang_zhang_variance(o, h, lo, c, n, need),
        )
    cols.add(
        "ewma_var",
        "volatility",
        f"lambda {cfg.ewma_lambda:g}",
        f"RiskMetrics per-bar variance; NaN before {cfg.ewma_min_bars} returns and when none "
        f"in the last {cfg.ewma_min_bars} bars",
        volatility.ewma_variance(ret, cfg.ewma_lambda, cfg.ewma_min_bars, cfg.ewma_min_bars),
    )
