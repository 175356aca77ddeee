"""Incremental features: after each bar close, compute the new rows only, as a rebuild would.

A full rebuild (:func:`features.build.build_features`) recomputes every row of the history,
so its cost grows with the history. Every feature at row ``t`` depends only on a bounded
past (rolling windows, lags, the funding as-of join), except the EWMA variance, whose
memory decays as ``lambda ** n``. :class:`IncrementalFeatures` therefore rebuilds over a
fixed *warm-up* window before the first row that changed and keeps only the rows from there
on: the cost per update is constant, and the new rows equal a full rebuild's (the test
compares them on real data, row for row, within floating-point summation order).

Which rows change? New data are not always the newest: a late bar or a backfilled hole
lands between stored ones, and a row whose bar was missing (a NaN row on the grid) gets its
values. The builder remembers every ``(dataset, asset, ts)`` it has seen and recomputes from
the oldest one that is new (a funding event from the bar it closes into), so an update
after a backfill still equals the rebuild.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from features.bars import interval_to_timedelta
from features.build import (
    FeatureConfig,
    FeatureSet,
    build_features,
    feature_catalog,
    feature_set_hash,
)
from features.errors import FeatureInputError
from features.market import MarketData
from features.sources.side_data import SideData, StoreSideData
from features.store import MarketStore

DEFAULT_KEEP = pd.Timedelta(days=120)
"""History the builder keeps by default (the policy's forecast history needs far less)."""
DEFAULT_SLACK = pd.Timedelta(days=2)
"""How far before the newest row a backfilled bar may land and still be applied incrementally."""
EWMA_TOLERANCE = 1e-16
"""The EWMA's weight on anything before the warm-up window is below this (relative)."""


def warmup_bars(config: FeatureConfig, interval: str = "1h") -> int:
    """Bars of history a feature row needs for its value to equal a full rebuild's.

    The larger of the longest chain of windows (a window over a window's output, as the
    long order-flow normalisers are) and the bars after which the EWMA's start no longer
    matters at :data:`EWMA_TOLERANCE`, plus the longest lag.

    Parameters
    ----------
    config
        The feature configuration.
    interval
        Bar interval.

    Returns
    -------
    int
        Number of bars.
    """
    step_hours = interval_to_timedelta(interval) / pd.Timedelta(hours=1)
    windows = [
        *config.rv_windows_hours,
        *config.har_windows_hours,
        *config.range_windows_hours,
        config.jump_window_hours,
        config.flow_window_hours,
        config.flow_long_window_hours,
        config.cross_window_hours,
        config.funding_max_age_hours,
    ]
    longest = max(windows) / step_hours
    chained = 2 * longest  # a window over a window's output
    ewma = math.log(EWMA_TOLERANCE) / math.log(config.ewma_lambda) + config.ewma_min_bars
    lags = max(config.spillover_lags_bars, default=0)
    # The needs overlap (they all count back from the same row): the largest one, plus lags.
    return math.ceil(max(chained, ewma) + lags) + 1


@dataclass(frozen=True)
class FeatureUpdate:
    """The outcome of one incremental update.

    Attributes
    ----------
    feature_set
        Every kept row (the previous rows before ``recomputed_from``, the new ones after).
    new_rows
        The rows computed in this update (``ts >= recomputed_from``).
    recomputed_from
        The oldest row that changed; ``None`` when nothing did.
    full
        True when the update was a full build (the first one, or history too short).
    seconds
        Wall-clock duration.
    """

    feature_set: FeatureSet
    new_rows: pd.DataFrame
    recomputed_from: pd.Timestamp | None
    full: bool
    seconds: float


class IncrementalFeatures:
    """Keep a feature matrix up to date, computing only the rows new data changed.

    Parameters
    ----------
    config
        Feature configuration (the same as the rebuild it must equal).
    interval
        Bar interval.
    keep
        Rows older than this before the newest are dropped from the kept matrix (the
        forecasts and the policy need a bounded history); ``None`` keeps everything.
    side
        Where :meth:`read` takes positioning and the macro calendar from, cut at the bar
        close (:func:`features.sources.side_data.known_at`); ``None``: the side tables of
        the store it reads.

    Examples
    --------
    >>> builder = IncrementalFeatures()  # doctest: +SKIP
    >>> update = builder.update(builder.read(store, ["BTCUSDT"]))  # doctest: +SKIP
    >>> update.new_rows["ts"].min() == update.recomputed_from  # doctest: +SKIP
    True
    """

    def __init__(
        self,
        config: FeatureConfig | None = None,
        interval: str = "1h",
        keep: pd.Timedelta | None = DEFAULT_KEEP,
        side: SideData | None = None,
    ) -> None:
        self.config = config or FeatureConfig()
        self.side = side
        self.interval = interval
        self.step = interval_to_timedelta(interval)
        self.keep = keep
        self.warmup = self.step * warmup_bars(self.config, interval)
        self._frame: pd.DataFrame | None = None
        self._seen: dict[tuple[str, str], np.ndarray] = {}
        self._catalog = feature_catalog(self.config, interval)
        self._hash = feature_set_hash(self.config, interval)
        self._horizon = pd.Timestamp.min.tz_localize("UTC")
        self._first_bar = pd.Timestamp.min.tz_localize("UTC")
        self._whole_history_from: pd.Timestamp | None = None
        self._source = ""

    @property
    def feature_set(self) -> FeatureSet | None:
        """The kept matrix (``None`` before the first update)."""
        if self._frame is None:
            return None
        return self._assemble(self._frame)

    def read(
        self,
        store: MarketStore,
        assets: Sequence[str] | None = None,
        *,
        slack: pd.Timedelta = DEFAULT_SLACK,
        end: pd.Timestamp | None = None,
    ) -> MarketData:
        """The market an update needs from ``store``: warm-up plus ``slack`` before the newest row.

        ``slack`` bounds how far back a backfilled bar may land and still be applied
        incrementally (the live ingest accepts a hole as a venue gap after a day). The
        first read (nothing kept yet) takes the whole history. Positioning and the macro
        calendar come from ``side`` (default: the store's side tables) as known at the
        close of the newest bar read (``end``, or the newest stored bar's close), so the
        live row sees exactly what the batch row of the same time sees.
        """
        chosen = list(assets) if assets else None
        start = None
        if self._frame is None or self._frame.empty:
            # The first read takes the whole history: one full build at start-up, after
            # which a window that starts at its first bar is known to be the whole history.
            market = store.read_market(self.interval, chosen, None, end)
            self._whole_history_from = market.bars["ts"].min() if len(market.bars) else None
        else:
            start = self._frame["ts"].max() - slack - self.warmup
            market = store.read_market(self.interval, chosen, start, end)
        if not len(market.bars):
            return market
        # Everything known at the newest bar's close, that instant included (no row of the
        # window closes later): a funding event settled at the close (the store's ``end``
        # bound excludes it), the positioning and the calendar.
        close = market.bars["ts"].max() + self.step
        funding = store.read_funding(market.assets, start, None)
        funding = funding.loc[funding["ts"] <= close].reset_index(drop=True)
        side = self.side if self.side is not None else StoreSideData(store)
        positioning, events = side.as_of(close, market.assets)
        return replace(market, funding=funding, positioning=positioning, events=events)

    def update(self, market: MarketData) -> FeatureUpdate:
        """Fold ``market`` (a window ending at the newest bar) into the kept matrix.

        Parameters
        ----------
        market
            Bars, funding and perp bars from at least ``warmup`` before the oldest new
            observation to the newest bar (:meth:`read` picks that window).

        Returns
        -------
        FeatureUpdate

        Raises
        ------
        FeatureInputError
            If ``market`` has another interval, or starts too late for the oldest new
            observation to be computed exactly.
        """
        started = time.perf_counter()
        if market.interval != self.interval:
            raise FeatureInputError(
                f"incremental features are at {self.interval}, the market is at {market.interval}"
            )
        floor = self._horizon.value
        observed = _observations(market, self.step, floor)
        fresh = []
        for key, stamps in observed.items():
            # Observations older than the remembered horizon were folded in long ago.
            new = np.setdiff1d(stamps[stamps >= floor], self._seen.get(key, _NONE))
            if len(new):
                fresh.append(pd.Timestamp(int(new.min()), tz="UTC"))
        if self._frame is None:
            feature_set = build_features(market, self.config)
            self._frame = feature_set.frame
            if len(market.bars) and self._whole_history_from == market.bars["ts"].min():
                self._first_bar = self._whole_history_from
            self._source = market.source
            self._remember(observed)
            self._trim()
            return FeatureUpdate(
                self._assemble(self._frame),
                feature_set.frame,
                feature_set.frame["ts"].min() if len(feature_set.frame) else None,
                True,
                time.perf_counter() - started,
            )
        if not fresh:
            return FeatureUpdate(
                self._assemble(self._frame),
                self._frame.iloc[0:0],
                None,
                False,
                time.perf_counter() - started,
            )
        changed_from = min(fresh)
        first = market.bars["ts"].min()
        # A window that starts at the first bar ever seen is the whole history: exact too.
        if first > changed_from - self.warmup and first > self._first_bar:
            raise FeatureInputError(
                f"incremental features: new data from {changed_from} need bars from "
                f"{changed_from - self.warmup} (a warm-up of {self.warmup}), the market given "
                f"starts {first}; read a longer window (IncrementalFeatures.read)"
            )
        rebuilt = build_features(market, self.config).frame
        new_rows = rebuilt[rebuilt["ts"] >= changed_from]
        kept = self._frame[self._frame["ts"] < changed_from]
        frame = pd.concat([kept, new_rows], ignore_index=True)
        self._frame = frame.sort_values(["asset", "ts"], kind="stable").reset_index(drop=True)
        self._remember(observed)
        self._trim()
        return FeatureUpdate(
            self._assemble(self._frame),
            new_rows.reset_index(drop=True),
            changed_from,
            False,
            time.perf_counter() - started,
        )

    # --- helpers -------------------------------------------------------------------------

    def _assemble(self, frame: pd.DataFrame) -> FeatureSet:
        # The frame comes from build_features: catalog columns, sorted by asset and time.
        return FeatureSet(
            frame=frame,
            catalog=self._catalog,
            config=self.config,
            interval=self.interval,
            feature_set_hash=self._hash,
            source=self._source,
        )

    def _remember(self, observed: dict[tuple[str, str], np.ndarray]) -> None:
        if self._frame is not None and len(self._frame):
            horizon = self._frame["ts"].max() - self.warmup - pd.Timedelta(days=7)
            self._horizon = max(self._horizon, horizon)
        floor = self._horizon.value
        for key, stamps in observed.items():
            merged = np.union1d(self._seen.get(key, _NONE), stamps)
            self._seen[key] = merged[merged >= floor]

    def _trim(self) -> None:
        if self.keep is None or self._frame is None or self._frame.empty:
            return
        start = self._frame["ts"].max() - self.keep
        self._frame = self._frame[self._frame["ts"] >= start].reset_index(drop=True)


_NONE = np.empty(0, dtype="int64")


def _observations(
    market: MarketData, step: pd.Timedelta, floor: int
) -> dict[tuple[str, str], np.ndarray]:
    """Every observation of ``market``: per ``(dataset, asset)``, the first rows it changes.

    A bar changes its own row onwards; a funding event stamped at ``ts``, a positioning row
    known at ``ts`` and a calendar row known from ``known_from`` are first seen by the bar
    whose close is at or after that instant, so they change that bar's row onwards (the
    calendar is market-wide: one key for every asset). Times are epoch nanoseconds, for set
    operations on arrays; those before ``floor`` (folded in long ago) are left out.
    """
    out: dict[tuple[str, str], np.ndarray] = {}
    sources = (
        ("bars", market.bars, "ts"),
        ("perp", market.perp, "ts"),
        ("funding", market.funding, "ts"),
        ("positioning", market.positioning, "ts"),
        ("events", market.events, "known_from"),
    )
    for name, frame, column in sources:
        if frame is None or frame.empty or column not in frame.columns:
            continue
        ts = pd.DatetimeIndex(frame[column])
        if name not in ("bars", "perp"):
            # The row of the bar whose close is at or after the instant sees it first.
            ts = (ts - step).ceil(step)
        stamps = ts.as_unit("ns").asi8
        recent = stamps >= floor
        stamps = stamps[recent]
        if name == "events":
            out[(name, "*")] = np.unique(stamps)
            continue
        assets = frame["asset"].astype(str).to_numpy()[recent]
        for asset in np.unique(assets):
            out[(name, str(asset))] = np.unique(stamps[assets == asset])
    return out


__all__ = ["EWMA_TOLERANCE", "FeatureUpdate", "IncrementalFeatures", "warmup_bars"]
