"""The Bars contract shared by every market-data source, the store and the feature builders.

Bars are a long DataFrame, one row per ``(ts, asset)``. ``ts`` is the UTC bar *open*
(tz-aware); a bar's information becomes known at ``ts + interval``, its close.
"""

from __future__ import annotations

from typing import Final

import pandas as pd

REQUIRED_COLUMNS: Final[tuple[str, ...]] = (
    "ts",
    "asset",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "trades",
    "taker_buy_volume",
    "taker_buy_quote_volume",
)
"""Columns every Bars frame carries, in canonical order."""

OPTIONAL_COLUMNS: Final[tuple[str, ...]] = ("funding_rate", "open_interest")
"""Columns a source may add; absent means unknown, never zero."""

FLOAT_COLUMNS: Final[tuple[str, ...]] = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "taker_buy_volume",
    "taker_buy_quote_volume",
)

KEY: Final[tuple[str, str]] = ("ts", "asset")


def interval_to_timedelta(interval: str) -> pd.Timedelta:
    """Convert a Binance interval string such as ``"1h"`` or ``"2h"`` to a Timedelta.

    Parameters
    ----------
    interval
        Binance kline interval: a count followed by ``m``, ``h`` or ``d``.

    Returns
    -------
    pandas.Timedelta
        The bar length.

    Raises
    ------
    ValueError
        If the interval is not of that form.
    """
    units = {"m": "min", "h": "h", "d": "D"}
    count, unit = interval[:-1], interval[-1:]
    if not count.isdigit() or unit not in units or int(count) <= 0:
        raise ValueError(f"interval {interval!r} is not of the form <N>m, <N>h or <N>d, e.g. '1h'")
    return pd.Timedelta(int(count), unit=units[unit])


def empty_bars() -> pd.DataFrame:
    """Return an empty frame with the Bars columns and dtypes."""
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in REQUIRED_COLUMNS})
    frame["ts"] = pd.Series(dtype="datetime64[ns, UTC]")
    frame["asset"] = pd.Series(dtype="string")
    frame["trades"] = pd.Series(dtype="int64")
    return frame[list(REQUIRED_COLUMNS)]
