"""Figures that compare a liquidation series with Binance's real one (issue #19 item 4).

Plain pandas on plain frames (this package imports nothing of the data layer): daily (UTC)
series indexed by the day's open, in USD. The periods are the issue's: the book is *fitted*
on :data:`FIT_PERIOD` and *reported* on :data:`TEST_PERIOD` (the real series has a level break
on 2021-04-27, so the fit starts in May 2021). :func:`fit_window` is the one door through
which fitting code reads real data: it refuses to hand out a day of the test period.

The baseline every simulated figure is reported beside is the day's own price range,
``log(max high / min low)`` of the day's 1h spot bars (:func:`daily_log_range`): it already
correlates with real liquidations, and a simulator earns its keep only by beating it.
"""

from __future__ import annotations

import math
from typing import Final, TypeVar

import numpy as np
import pandas as pd

FIT_PERIOD: Final[tuple[pd.Timestamp, pd.Timestamp]] = (
    pd.Timestamp("2021-05-01", tz="UTC"),
    pd.Timestamp("2023-01-01", tz="UTC"),
)
"""Days ``[start, end)`` the book's behaviour and scale may be fitted on."""

TEST_PERIOD: Final[tuple[pd.Timestamp, pd.Timestamp]] = (
    pd.Timestamp("2023-01-01", tz="UTC"),
    pd.Timestamp("2025-07-01", tz="UTC"),
)
"""Days ``[start, end)`` the calibration is reported on, never fitted on."""


class TestPeriodLeakError(ValueError):
    """Fitting code asked for data of the test period."""

    __test__ = False  # not a pytest class


def fit_window(frame: pd.DataFrame, column: str = "ts") -> pd.DataFrame:
    """Rows of ``frame`` whose ``column`` lies in :data:`FIT_PERIOD` (the fit's only input).

    Raises
    ------
    TestPeriodLeakError
        If the result would hold a row at or after the test period's start (it cannot, by
        construction; the check guards a refactor that widens the window).
    """
    ts = pd.to_datetime(frame[column], utc=True)
    out = frame.loc[(ts >= FIT_PERIOD[0]) & (ts < FIT_PERIOD[1])]
    if len(out) and pd.to_datetime(out[column], utc=True).max() >= TEST_PERIOD[0]:
        raise TestPeriodLeakError("fit_window would hand out a day of the test period")
    return out


def daily_log_range(bars: pd.DataFrame) -> pd.Series:
    """``log(max high / min low)`` of each UTC day's bars (``ts`` = bar open), by day."""
    day = pd.to_datetime(bars["ts"], utc=True).dt.floor("D")
    grouped = bars.groupby(day)
    return np.log(grouped["high"].max() / grouped["low"].min()).rename("log_range")


def daily_liquidations(liq: pd.DataFrame, day_open: bool = True) -> pd.DataFrame:
    """Long, short and total liquidations by day open from a positioning frame.

    ``liq`` holds ``ts, long_liquidations_usd, short_liquidations_usd``; ``day_open`` says
    whether ``ts`` is the day's open (the raw files) or its close (the features bundle,
    which stamps each row when known: then one day is subtracted).
    """
    ts = pd.to_datetime(liq["ts"], utc=True)
    if not day_open:
        ts = ts - pd.Timedelta(days=1)
    out = pd.DataFrame(
        {
            "long": liq["long_liquidations_usd"].to_numpy(dtype=float),
            "short": liq["short_liquidations_usd"].to_numpy(dtype=float),
        },
        index=pd.DatetimeIndex(ts, name="day"),
    )
    out["total"] = out["long"] + out["short"]
    return out


def pearson(a: pd.Series, b: pd.Series) -> float:
    """Pearson correlation of two daily series on their common days (levels)."""
    joined = pd.concat([a, b], axis=1, join="inner").dropna()
    if len(joined) < 3:
        return math.nan
    return float(np.corrcoef(joined.iloc[:, 0], joined.iloc[:, 1])[0, 1])


def top_day_share(total: pd.Series, share: float = 0.01) -> float:
    """Share of the total volume on the ``floor(share * days)`` largest days."""
    values = np.sort(total.dropna().to_numpy(dtype=float))[::-1]
    k = max(1, math.floor(share * len(values)))
    s = values.sum()
    return float(values[:k].sum() / s) if s > 0 else math.nan


def long_share_of_top_days(liq: pd.DataFrame, days: int = 10) -> float:
    """Longs' share of the liquidated volume on the ``days`` largest days (by total)."""
    top = liq.nlargest(days, "total")
    return float(top["long"].sum() / top["total"].sum()) if top["total"].sum() > 0 else math.nan


FrameOrSeries = TypeVar("FrameOrSeries", pd.Series, pd.DataFrame)


def in_period(series: FrameOrSeries, period: tuple[pd.Timestamp, pd.Timestamp]) -> FrameOrSeries:
    """Rows of a day-indexed series or frame in ``[start, end)``."""
    return series.loc[(series.index >= period[0]) & (series.index < period[1])]


def liquidated_share_of_oi(liq: pd.Series, oi_usd: pd.Series) -> float:
    """Mean daily liquidated notional over open interest (both USD) on their common days."""
    both = pd.concat([liq, oi_usd], axis=1, join="inner").dropna()
    both = both.loc[both.iloc[:, 1] > 0]
    return float((both.iloc[:, 0] / both.iloc[:, 1]).mean()) if len(both) else float("nan")
