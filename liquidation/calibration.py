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


def daily_replay(
    ts_ms: np.ndarray,
    liquidated: np.ndarray,
    liquidated_long: np.ndarray,
    open_notional: np.ndarray,
    close: np.ndarray,
) -> pd.DataFrame:
    """A one-asset replay's bars by UTC day: liquidated notional (``total``, ``long``,
    ``short``, USD), the day's mean open notional (``open_notional``) and last ``close``."""
    frame = pd.DataFrame(
        {
            "total": np.asarray(liquidated, dtype=float),
            "long": np.asarray(liquidated_long, dtype=float),
            "open_notional": np.asarray(open_notional, dtype=float),
            "close": np.asarray(close, dtype=float),
        },
        index=pd.DatetimeIndex(pd.to_datetime(ts_ms, unit="ms", utc=True)),
    )
    daily = frame.resample("1D").agg(
        {"total": "sum", "long": "sum", "open_notional": "mean", "close": "last"}
    )
    daily["short"] = daily["total"] - daily["long"]
    return daily.rename_axis("day")


def fit_days(series: FrameOrSeries) -> FrameOrSeries:
    """Rows of a day-indexed series or frame in :data:`FIT_PERIOD`, through :func:`fit_window`
    (the one door of fitting code to real data)."""
    frame = pd.DataFrame({"ts": series.index, "row": np.arange(len(series))})
    return series.iloc[fit_window(frame)["row"].to_numpy()]


def fit_level_scale(real: pd.Series, simulated: pd.Series) -> float:
    """Ratio of the mean real to the mean simulated daily notional on their common fit days.

    The book's size is arbitrary (``n_traders``); this one number puts its liquidated
    notional on the venue's level in USD. It reads the fit period only (:func:`fit_days`).
    """
    both = pd.concat([fit_days(real), fit_days(simulated)], axis=1, join="inner").dropna()
    sim_mean = float(both.iloc[:, 1].mean()) if len(both) else 0.0
    if not sim_mean > 0:
        return math.nan
    return float(both.iloc[:, 0].mean()) / sim_mean


def fit_range_baseline(real: pd.Series, log_range: pd.Series) -> tuple[float, float]:
    """OLS ``real = a + b * log_range`` on the common fit days (the baseline's level).

    The range baseline's correlation needs no fit; its level, top-day share and share of
    open interest do, and they get the same treatment as the book's scale: fitted on
    :data:`FIT_PERIOD` only (:func:`fit_days`)."""
    both = pd.concat([fit_days(real), fit_days(log_range)], axis=1, join="inner").dropna()
    if len(both) < 3:
        return math.nan, math.nan
    b, a = np.polyfit(both.iloc[:, 1].to_numpy(), both.iloc[:, 0].to_numpy(), 1)
    return float(a), float(b)


SIDES: Final[tuple[str, ...]] = ("total", "long", "short")
"""Rows of the calibration table per asset and period: both sides, then each."""


def calibration_rows(
    asset: str,
    real: pd.DataFrame,
    simulated: pd.DataFrame,
    log_range: pd.Series,
    down_day: pd.Series,
    oi_usd: pd.Series | None = None,
) -> list[dict[str, object]]:
    """The calibration table's rows of one asset: per period (fit, test) and side (total,
    long, short), the real, simulated and range-baseline figures.

    Parameters
    ----------
    asset : str
    real : DataFrame
        Real daily liquidations (:func:`daily_liquidations`), by day open.
    simulated : DataFrame
        The replay by day (:func:`daily_replay`).
    log_range : Series
        ``log(high / low)`` of each day (:func:`daily_log_range`): the baseline.
    down_day : Series of bool
        Whether the day closed below its open: the baseline's long/short split (a fall
        liquidates longs), for the split on the ten largest days.
    oi_usd : Series, optional
        Real open interest in USD at the day's end (BTC, ETH from 2022).

    Returns
    -------
    list of dict
        Keys: ``asset, period, side, days, first_day``; ``corr_sim`` (Pearson, levels, of the
        simulated with the real side) beside ``corr_baseline`` (of the day's log range with
        it); ``top1_real, top1_sim, top1_baseline`` (share on the top ``floor(1% x days)``
        days); ``long_top10_real, _sim, _baseline`` (total rows only); ``level_real``,
        ``level_sim``, ``level_baseline`` (mean daily USD: the simulated one times the
        level scale, the baseline from its fitted line, both fitted on the fit days only);
        ``liq_oi_real``, ``liq_oi_sim`` (against the book's own open notional),
        ``liq_oi_baseline`` (total rows with open interest only); ``scale``.
    """
    scale = fit_level_scale(real["total"], simulated["total"])
    a, b = fit_range_baseline(real["total"], log_range)
    predicted = (a + b * log_range).clip(lower=0.0)
    # The baseline's sides: the whole predicted notional goes to longs on a down day.
    base = pd.DataFrame(
        {
            "total": predicted,
            "long": predicted.where(down_day.reindex(predicted.index, fill_value=False), 0.0),
        }
    )
    base["short"] = base["total"] - base["long"]
    rows: list[dict[str, object]] = []
    for name, period in (("fit", FIT_PERIOD), ("test", TEST_PERIOD)):
        days = in_period(real, period).index
        days = days.intersection(in_period(simulated, period).index).intersection(
            log_range.dropna().index
        )
        r, s, bl = real.loc[days], simulated.loc[days], base.loc[days]
        for side in SIDES:
            row: dict[str, object] = {
                "asset": asset,
                "period": name,
                "side": side,
                "days": len(days),
                "first_day": str(days.min().date()) if len(days) else None,
                "corr_sim": pearson(s[side], r[side]),
                "corr_baseline": pearson(log_range.loc[days], r[side]),
                "top1_real": top_day_share(r[side]),
                "top1_sim": top_day_share(s[side]),
                "top1_baseline": top_day_share(bl[side]),
                "level_real": float(r[side].mean()) if len(days) else math.nan,
                "level_sim": float(s[side].mean() * scale) if len(days) else math.nan,
                "level_baseline": float(bl[side].mean()) if len(days) else math.nan,
                "scale": scale,
            }
            if side == "total":
                row |= {
                    "long_top10_real": long_share_of_top_days(r),
                    "long_top10_sim": long_share_of_top_days(s),
                    "long_top10_baseline": long_share_of_top_days(bl),
                }
                oi = oi_usd.loc[oi_usd.index.intersection(days)] if oi_usd is not None else None
                if oi is not None and len(oi.dropna()):
                    # The book's share on the same days as the real one (those with OI).
                    s_oi = s.loc[oi.dropna().index]
                    row |= {
                        "liq_oi_real": liquidated_share_of_oi(r["total"], oi),
                        "liq_oi_sim": liquidated_share_of_oi(s_oi["total"], s_oi["open_notional"]),
                        "liq_oi_baseline": liquidated_share_of_oi(bl["total"], oi),
                    }
            rows.append(row)
    return rows
