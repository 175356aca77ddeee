"""Historical bars as the replay's arrays, and the realized-volatility bound (the oracle).

Turns a long bar frame (the Bars contract, plain data: this package imports nothing of the
data layer) into the :class:`~liquidation.simulate.MarketPaths` the replay takes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from liquidation.simulate import MarketPaths, ReplayInputError


def market_paths(
    bars: pd.DataFrame,
    funding: pd.DataFrame,
    interval: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    source: str = "",
) -> MarketPaths:
    """Spot bars of ``[start, end)`` on a common grid, with funding, as replay arrays.

    Exchange outages (missing bars inside an asset's history) become flat bars at the previous
    close with zero volume: no trading happened, so no price moved and nobody could be
    liquidated against the book. An asset without any bar at ``start`` cannot be replayed
    from there.

    Parameters
    ----------
    bars
        Spot bars in the Bars contract (``ts, asset, open, high, low, close, quote_volume``).
    funding
        Funding events ``ts, asset, funding_rate`` (may be empty).
    interval
        Bar interval, e.g. ``"1h"``.
    start, end
        Replay window ``[start, end)``, UTC.
    source
        Where the bars came from, for error messages.

    Raises
    ------
    ReplayInputError
        If the window holds no bars or an asset starts after ``start``.
    """
    bars = bars.loc[(bars["ts"] >= start) & (bars["ts"] < end)]
    if bars.empty:
        raise ReplayInputError(f"no bars in [{start}, {end}) of {source or 'the market'}")
    step = pd.Timedelta(interval)
    grid = pd.date_range(bars["ts"].min(), bars["ts"].max(), freq=step)
    assets = tuple(sorted(bars["asset"].astype(str).unique()))
    frames = {}
    for col in ("open", "high", "low", "close", "quote_volume"):
        wide = bars.pivot_table(index="ts", columns="asset", values=col, aggfunc="first")
        frames[col] = wide.reindex(index=grid, columns=list(assets))
    first_close = frames["close"].iloc[0]
    late = [a for a in assets if not np.isfinite(first_close[a])]
    if late:
        raise ReplayInputError(
            f"assets {late} have no bar at the replay start {grid[0]}; start the replay at "
            "their listing or drop them"
        )
    close = frames["close"].ffill()
    for col in ("open", "high", "low"):
        frames[col] = frames[col].fillna(close)
    frames["close"] = close
    frames["quote_volume"] = frames["quote_volume"].fillna(0.0)
    rates = pd.DataFrame(0.0, index=grid, columns=list(assets))
    if not funding.empty:
        f = funding.loc[funding["asset"].astype(str).isin(assets)].copy()
        f["bar"] = f["ts"].dt.floor(step)
        f = f.loc[f["bar"].isin(grid)]
        wide = f.pivot_table(index="bar", columns="asset", values="funding_rate", aggfunc="sum")
        rates.update(wide.reindex(columns=list(assets)))
    return MarketPaths(
        assets=assets,
        ts_ms=np.asarray(grid.as_unit("ms").asi8, dtype=np.int64),
        interval_ms=int(step / pd.Timedelta(milliseconds=1)),
        open=frames["open"].to_numpy().T.copy(),
        high=frames["high"].to_numpy().T.copy(),
        low=frames["low"].to_numpy().T.copy(),
        close=frames["close"].to_numpy().T.copy(),
        quote_volume=frames["quote_volume"].to_numpy().T.copy(),
        funding_rate=rates.fillna(0.0).to_numpy().T.copy(),
    )


def grid_index(paths: MarketPaths) -> pd.DatetimeIndex:
    """Bar open times of ``paths`` as a UTC index."""
    return pd.DatetimeIndex(pd.to_datetime(paths.ts_ms, unit="ms", utc=True))


def oracle_sigma(paths: MarketPaths, horizon: int) -> np.ndarray:
    """Realized std of the log return over bars ``t+1 .. t+H`` (NaN where the data ends)."""
    logp = np.log(paths.close)
    r = np.diff(logp, axis=1, prepend=logp[:, :1])
    cum = np.cumsum(r**2, axis=1)
    out = np.full(paths.close.shape, np.nan)
    n = paths.n_bars
    if n > horizon:
        out[:, : n - horizon] = np.sqrt(np.maximum(cum[:, horizon:] - cum[:, : n - horizon], 0))
    return out
