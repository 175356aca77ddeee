"""The live ingest runner: after each bar close, fetch what closed, validate, store, report.

:class:`LiveIngest` drives one or more :class:`~features.sources.live.LiveSource` objects. A
cycle (:meth:`LiveIngest.run_cycle`):

1. syncs each source's clock with the venue (closure is decided on the venue's clock);
2. for every feed and listed asset, fetches the window from the newest stored row (minus a
   small overlap, so that a revised bar is seen again and raises the same
   :class:`~features.errors.ConflictingDuplicateError` as the dump path) to the newest closed
   bar, extended back to any hole still open. The rows go through
   :meth:`~features.store.MarketStore.ingest_market`: the same validation, quarantine and
   conflict checks as the dump path, and the same store;
3. runs ``backfill`` feeds (the dump's daily files) only where a series is behind or has holes;
4. evaluates each asset's freshness (:mod:`features.live.freshness`) and oracle median
   (:mod:`features.oracle_price`), and writes the freshness records atomically.

A venue outage marks the affected feeds ``stale`` with the error as the reason; the next
cycle that reaches the venue fetches everything missed (the window starts at the newest
stored bar), so recovery is a backfill, never a skip. A fault costs a log line and a counter,
never the process: :meth:`LiveIngest.run` keeps going until told to stop.

The later live publish loop calls :meth:`LiveIngest.run_cycle` after each close, then reads
:attr:`CycleReport.freshness` and :attr:`CycleReport.prices` (or
:func:`~features.live.freshness.read_freshness` from another process).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

import pandas as pd

from features.bars import empty_bars, interval_to_timedelta
from features.errors import (
    ConflictingDuplicateError,
    DataValidationError,
    MarketDataError,
    SourceError,
)
from features.live.freshness import (
    AssetFreshness,
    FeedFreshness,
    FeedStatus,
    asset_status,
    classify_bars,
    classify_events,
    freshness_path,
    write_freshness,
)
from features.live.metrics import LiveMetrics
from features.market import MarketData
from features.oracle_price import FeedPrice, MedianConfig, MedianPrice, median_price
from features.sources.live import (
    Feed,
    FeedBatch,
    LiveSource,
    PerpSnapshot,
    epoch_ms,
    fetch_label,
)
from features.store import MarketStore

logger = logging.getLogger("dynamargin.live.ingest")

DEFAULT_LOOKBACK: Final[pd.Timedelta] = pd.Timedelta(days=7)
DEFAULT_SETTLE: Final[pd.Timedelta] = pd.Timedelta(seconds=2)
DEFAULT_LATE_GRACE: Final[pd.Timedelta] = pd.Timedelta(minutes=5)
DEFAULT_FUNDING_MAX_AGE: Final[pd.Timedelta] = pd.Timedelta(hours=9)
DEFAULT_HOLE_PATIENCE: Final[pd.Timedelta] = pd.Timedelta(days=1)


@dataclass(frozen=True)
class LiveIngestConfig:
    """Knobs of the live runner (times are on the venue's clock unless named seconds).

    Attributes
    ----------
    interval
        Bar interval of every bar feed.
    since
        First bar to fetch for a series the store does not hold yet; default
        ``venue now - lookback``.
    lookback
        Default history for an empty series.
    overlap_bars
        Stored bars fetched again each cycle: identical ones are no-ops, a revised one is a
        conflict (logged, counted, the store unchanged).
    settle
        How long after a close the cycle runs (venues publish a bar within seconds).
    late_grace
        A missing bar is ``late`` (waited for, re-polled) for this long after its close, then
        the feed is ``stale``.
    funding_max_age
        A funding feed is stale when its newest event is older than this.
    hole_patience
        How long a bar missing between stored ones is asked for again before it is accepted
        as a venue gap (reported, never filled).
    repoll_seconds
        Local seconds between cycles while a feed is late or stale.
    max_sleep_seconds
        Longest local wait between cycles (the clock is re-synced at least this often).
    oracle
        Guards of the oracle median; ``None`` allows two intervals of age.
    """

    interval: str = "1h"
    since: pd.Timestamp | None = None
    lookback: pd.Timedelta = DEFAULT_LOOKBACK
    overlap_bars: int = 2
    settle: pd.Timedelta = DEFAULT_SETTLE
    late_grace: pd.Timedelta = DEFAULT_LATE_GRACE
    funding_max_age: pd.Timedelta = DEFAULT_FUNDING_MAX_AGE
    hole_patience: pd.Timedelta = DEFAULT_HOLE_PATIENCE
    repoll_seconds: float = 5.0
    max_sleep_seconds: float = 60.0
    oracle: MedianConfig | None = None

    def __post_init__(self) -> None:
        interval_to_timedelta(self.interval)  # raises on a malformed interval
        if self.overlap_bars < 0:
            raise ValueError(f"overlap_bars must be >= 0, got {self.overlap_bars}")
        if self.repoll_seconds <= 0 or self.max_sleep_seconds <= 0:
            raise ValueError("repoll_seconds and max_sleep_seconds must be positive")


@dataclass(frozen=True)
class FetchOutcome:
    """What one fetch of one feed and asset did in a cycle."""

    feed: str
    asset: str
    start: pd.Timestamp
    end: pd.Timestamp
    rows_added: int = 0
    backfilled: int = 0
    quarantined: int = 0
    unclosed: int = 0
    new_holes: int = 0
    error: str = ""


@dataclass(frozen=True)
class CycleReport:
    """The outcome of one ingest cycle.

    Attributes
    ----------
    venue_time
        The primary source's venue time at the start of the cycle.
    fetches
        One outcome per feed and asset fetched.
    freshness
        Each asset's freshness after the cycle.
    prices
        Each asset's oracle median after the cycle.
    snapshots
        Perpetual snapshots collected in the cycle.
    seconds
        Wall-clock duration.
    """

    venue_time: pd.Timestamp
    fetches: tuple[FetchOutcome, ...]
    freshness: dict[str, AssetFreshness]
    prices: dict[str, MedianPrice]
    snapshots: tuple[PerpSnapshot, ...] = ()
    seconds: float = 0.0

    @property
    def rows_added(self) -> int:
        """Rows added to the store in this cycle."""
        return sum(f.rows_added for f in self.fetches)

    @property
    def pending(self) -> bool:
        """True when some feed is late or stale, or a fetch failed (re-poll soon)."""
        if any(f.error for f in self.fetches):
            return True
        return any(
            feed.status != "ok" for record in self.freshness.values() for feed in record.feeds
        )


@dataclass
class _Series:
    """What the runner knows about one feed of one asset."""

    feed: Feed
    asset: str
    loaded: bool = False
    known: set[pd.Timestamp] = field(default_factory=set)
    last_ts: pd.Timestamp | None = None
    last_close: float | None = None
    holes: dict[pd.Timestamp, pd.Timestamp] = field(default_factory=dict)
    checked_at: pd.Timestamp | None = None
    error: str = ""
    status: FeedStatus = "ok"
    late_seen: pd.Timestamp | None = None
    listed: bool = True
    new_holes: int = 0


@dataclass(frozen=True)
class _Fetched:
    """One asset's fetched batch of one feed, with the window it was asked for."""

    series: _Series
    start: pd.Timestamp
    end: pd.Timestamp
    batch: FeedBatch


_EMPTY_READBACK = pd.DataFrame({"ts": pd.Series(dtype="datetime64[ns, UTC]")})


class LiveIngest:
    """Fetch closed bars from live sources after each close, validate and store them.

    Parameters
    ----------
    store
        The market store (the same one the dump path fills).
    sources
        Live sources; the first one's clock schedules the cycles and dates the freshness
        records (put the primary venue first).
    assets
        Venue-neutral symbols, e.g. ``["BTCUSDT", "ETHUSDT"]``.
    config
        Runner knobs.
    metrics
        Shared metrics (pass the sources' instance so one registry holds everything).
    freshness_file
        Where the freshness records go; default ``<store>/_live/freshness.json``.

    Examples
    --------
    >>> runner = LiveIngest(store, [BinanceRestSource(url, url)], ["BTCUSDT"])  # doctest: +SKIP
    >>> report = runner.run_cycle()  # doctest: +SKIP
    >>> report.freshness["BTCUSDT"].status  # doctest: +SKIP
    'ok'
    """

    def __init__(
        self,
        store: MarketStore,
        sources: Sequence[LiveSource],
        assets: Sequence[str],
        config: LiveIngestConfig | None = None,
        metrics: LiveMetrics | None = None,
        freshness_file: Path | None = None,
    ) -> None:
        if not sources:
            raise ValueError("LiveIngest needs at least one source")
        if not assets:
            raise ValueError("LiveIngest needs at least one asset")
        self.store = store
        self.sources = list(sources)
        self.assets = [a.upper() for a in assets]
        self.config = config or LiveIngestConfig()
        self.step = interval_to_timedelta(self.config.interval)
        self.metrics = metrics or LiveMetrics()
        self.freshness_file = freshness_file or freshness_path(store.root)
        names = [f.name for s in self.sources for f in s.feeds]
        if len(set(names)) != len(names):
            raise ValueError(f"feed names must be unique across sources, got {names}")
        self.oracle_config = self.config.oracle or MedianConfig(
            max_age_ms=int(2 * self.step / pd.Timedelta(1, "ms"))
        )
        self._series: dict[tuple[str, str], _Series] = {}
        self._snapshots: dict[str, PerpSnapshot] = {}
        self._oracle_states: dict[tuple[str, str], str] = {}
        self._guarded: dict[str, bool] = {}
        self._last_venue_time: pd.Timestamp | None = None

    # --- public API ----------------------------------------------------------------------

    def run_cycle(self) -> CycleReport:
        """Run one cycle: sync, fetch, validate, store, evaluate freshness and the median."""
        started = time.perf_counter()
        synced: dict[str, pd.Timestamp | None] = {}
        for source in self.sources:
            try:
                synced[source.name] = source.sync_time()
            except SourceError as exc:
                synced[source.name] = None
                logger.error("%s: cannot read the venue time: %s", source.name, exc)
                for feed in source.feeds:
                    for asset in self.assets:
                        self._series_for(feed, asset).error = f"venue time unavailable: {exc}"
        now = self._venue_now(synced)
        fetches: list[FetchOutcome] = []
        snapshots: list[PerpSnapshot] = []
        for source in self.sources:
            if synced[source.name] is None:
                continue
            for feed in source.feeds:
                if feed.role == "backfill":
                    continue
                fetches += self._ingest_feed(source, feed, now)
            snapshots += self._collect_snapshots(source)
        for source in self.sources:
            if synced[source.name] is None:
                continue
            for feed in source.feeds:
                if feed.role == "backfill":
                    fetches += self._backfill_feed(source, feed, now)
        freshness = self._evaluate(now)
        prices = self._oracle(now)
        for asset, price in prices.items():
            record = freshness[asset]
            freshness[asset] = replace(record, oracle=price.to_dict())
        write_freshness(self.freshness_file, freshness, self.config.interval, now)
        self.metrics.cycles.inc()
        self._last_venue_time = now
        report = CycleReport(
            venue_time=now,
            fetches=tuple(fetches),
            freshness=freshness,
            prices=prices,
            snapshots=tuple(snapshots),
            seconds=time.perf_counter() - started,
        )
        logger.info(
            "cycle at venue time %s: %d row(s) added; %s (%.2f s)",
            now.isoformat(),
            report.rows_added,
            ", ".join(f"{a} {r.status}" for a, r in sorted(freshness.items())),
            report.seconds,
        )
        return report

    def run(
        self,
        stop: threading.Event | None = None,
        *,
        until: pd.Timestamp | None = None,
        on_cycle: Callable[[CycleReport], None] | None = None,
    ) -> CycleReport | None:
        """Run cycles after each bar close until ``stop`` is set or the venue reaches ``until``.

        Parameters
        ----------
        stop
            Set it (e.g. from a SIGTERM handler) to end the loop; waits return at once.
        until
            Venue time after which the loop ends on its own.
        on_cycle
            Called with each cycle's report.

        Returns
        -------
        CycleReport or None
            The last cycle's report (``None`` when stopped before the first).
        """
        stop = stop or threading.Event()
        last: CycleReport | None = None
        while not stop.is_set():
            try:
                last = self.run_cycle()
            except (MarketDataError, OSError) as exc:
                # A cycle-level failure (e.g. the store's disk) must not end a long-running
                # service: log it and try again after the re-poll interval.
                logger.error("live ingest cycle failed: %s; retrying", exc)
                stop.wait(self.config.repoll_seconds)
                continue
            if on_cycle is not None:
                on_cycle(last)
            if until is not None and last.venue_time >= until:
                break
            stop.wait(self.seconds_until_next_cycle(last))
        return last

    def seconds_until_next_cycle(self, report: CycleReport) -> float:
        """Local seconds to wait: until the next close plus ``settle``, sooner when pending."""
        clock = self.sources[0].clock
        if not clock.synced:
            return self.config.repoll_seconds
        next_close = report.venue_time.floor(self.step) + self.step + self.config.settle
        wait = clock.local_seconds_until(next_close)
        if report.pending:
            wait = min(wait, self.config.repoll_seconds)
        return max(0.0, min(wait, self.config.max_sleep_seconds))

    # --- one feed ------------------------------------------------------------------------

    def _ingest_feed(self, source: LiveSource, feed: Feed, now: pd.Timestamp) -> list[FetchOutcome]:
        listed = self._listed(source, feed)
        if listed is None:
            return []
        chosen = []
        for asset in self.assets:
            series = self._series_for(feed, asset)
            series.listed = asset in listed
            if series.listed:
                chosen.append(series)
        return self._run_feed(source, feed, chosen, now)

    def _backfill_feed(
        self, source: LiveSource, feed: Feed, now: pd.Timestamp
    ) -> list[FetchOutcome]:
        """Run a backfill feed for assets whose series of the same dataset is behind."""
        first = self._first(now)
        chosen: list[tuple[_Series, list[_Series]]] = []
        for asset in self.assets:
            twins = [
                s
                for s in self._series.values()
                if s.asset == asset
                and s.feed.dataset == feed.dataset
                and s.feed.role != "backfill"
                and s.feed.asset_suffix == feed.asset_suffix
            ]
            behind = any(
                s.holes
                or classify_bars(s.last_ts, self.step, now, self.config.late_grace, first)[0]
                == "stale"
                for s in twins
            )
            if behind:
                series = self._series_for(feed, asset)
                if twins:
                    series.known |= set().union(*(t.known for t in twins))
                    series.last_ts = max(
                        (t.last_ts for t in twins if t.last_ts is not None), default=None
                    )
                    series.holes = {h: t for s in twins for h, t in s.holes.items()}
                    series.loaded = True
                chosen.append((series, twins))
        outcomes = self._run_feed(source, feed, [series for series, _ in chosen], now)
        for series, twins in chosen:
            for twin in twins:
                self._absorb(twin, series)
        return outcomes

    def _run_feed(
        self, source: LiveSource, feed: Feed, chosen: list[_Series], now: pd.Timestamp
    ) -> list[FetchOutcome]:
        """Fetch each asset (failures isolated), store the batches together, account per asset."""
        outcomes: list[FetchOutcome] = []
        fetched: list[_Fetched] = []
        for series in chosen:
            result = self._fetch(source, series, now)
            if isinstance(result, FetchOutcome):
                outcomes.append(result)
            else:
                fetched.append(result)
        if not fetched:
            return outcomes
        stored = self._store(feed, fetched, now)
        good = [f for f in fetched if not isinstance(stored[f.series.asset], str)]
        readback = self._read_back(feed, good)
        for item in fetched:
            outcome = stored[item.series.asset]
            if isinstance(outcome, str):
                item.series.error = outcome
                outcomes.append(
                    FetchOutcome(feed.name, item.series.asset, item.start, item.end, error=outcome)
                )
            else:
                rows = readback.get(feed.store_asset(item.series.asset), _EMPTY_READBACK)
                outcomes.append(self._account(item, outcome, rows, now))
        return outcomes

    def _fetch(
        self, source: LiveSource, series: _Series, now: pd.Timestamp
    ) -> _Fetched | FetchOutcome:
        feed, asset = series.feed, series.asset
        self._load(series, now)
        start, end = self._window(series, now)
        if start >= end:
            series.error = ""
            series.checked_at = now
            return FetchOutcome(feed.name, asset, start, end)
        try:
            return _Fetched(series, start, end, source.fetch(feed, asset, start, end))
        except SourceError as exc:
            series.error = str(exc)
            logger.error("%s %s: fetch [%s, %s) failed: %s", feed.name, asset, start, end, exc)
            return FetchOutcome(feed.name, asset, start, end, error=str(exc))
        except Exception as exc:  # a malformed answer must not end a long-running service
            series.error = f"unexpected answer ({type(exc).__name__}: {exc})"
            self.metrics.failures.labels(feed.name, "unexpected").inc()
            logger.exception("%s %s: %s", feed.name, asset, series.error)
            return FetchOutcome(feed.name, asset, start, end, error=series.error)

    def _store(
        self, feed: Feed, fetched: list[_Fetched], now: pd.Timestamp
    ) -> dict[str, pd.DataFrame | str]:
        """Validate and store the batches of one feed; per asset its quarantined rows or error.

        All assets go through one :meth:`MarketStore.ingest_market` call (validation has a
        fixed cost per call). A conflict or a rejected batch is then isolated by storing the
        assets one by one: the store checks every partition before writing any, so the failed
        joint call left it unchanged.
        """
        if len(fetched) > 1:
            try:
                report = self._ingest(feed, fetched, now)
            except (ConflictingDuplicateError, DataValidationError):
                pass  # isolate the culprit below; the store is unchanged
            else:
                return {f.series.asset: _rows_of(report, feed, f.series.asset) for f in fetched}
        return {f.series.asset: self._store_one(feed, f, now) for f in fetched}

    def _store_one(self, feed: Feed, item: _Fetched, now: pd.Timestamp) -> pd.DataFrame | str:
        """Store one asset's batch; its quarantined rows, or the logged and counted error."""
        asset = item.series.asset
        try:
            return _rows_of(self._ingest(feed, [item], now), feed, asset)
        except ConflictingDuplicateError as exc:
            self.metrics.conflicts.labels(feed.name, asset).inc()
            message = f"conflicting revision, store unchanged: {exc}"
        except DataValidationError as exc:
            message = f"rows rejected as a whole: {exc}"
        logger.error("%s %s: %s", feed.name, asset, message)
        return message

    def _ingest(self, feed: Feed, fetched: list[_Fetched], now: pd.Timestamp) -> pd.DataFrame:
        frames = [f.batch.frame for f in fetched]
        rejected = [f.batch.rejected for f in fetched if len(f.batch.rejected)]
        label = (
            fetched[0].batch.source
            if len(fetched) == 1
            else fetch_label(f"{feed.name} batch of {len(fetched)} assets", now)
        )
        result = self.store.ingest_market(
            _as_market(pd.concat(frames, ignore_index=True), feed, self.config.interval),
            source=label,
            rejected=pd.concat(rejected, ignore_index=True) if rejected else None,
        )
        return result.report.quarantine

    def _read_back(self, feed: Feed, fetched: list[_Fetched]) -> dict[str, pd.DataFrame]:
        """The stored rows of every fetched window, one read for the feed, split by asset."""
        if not fetched:
            return {}
        labels = [feed.store_asset(f.series.asset) for f in fetched]
        start = min(f.start for f in fetched)
        end = max(f.end for f in fetched)
        rows = self._read_stored_labels(feed, labels, start, end)
        return {str(label): part for label, part in rows.groupby(rows["asset"].astype(str))}

    def _account(
        self, item: _Fetched, quarantine: pd.DataFrame, stored: pd.DataFrame, now: pd.Timestamp
    ) -> FetchOutcome:
        series, feed, asset = item.series, item.series.feed, item.series.asset
        stored = stored[(stored["ts"] >= item.start) & (stored["ts"] < item.end)]
        series.error = ""
        series.checked_at = item.batch.server_time
        quarantined = len(quarantine)
        if quarantined:
            self.metrics.quarantined.labels(feed.name, asset).inc(quarantined)
            reasons = quarantine["reason"].value_counts().to_dict()
            logger.warning(
                "%s %s: %d row(s) quarantined (%s); they are fetched again next cycle",
                feed.name,
                asset,
                quarantined,
                "; ".join(f"{r}: {n}" for r, n in reasons.items()),
            )
        added = set(stored["ts"]) - series.known
        backfilled = self._update(series, stored, item.start, now)
        if added:
            self.metrics.bars_added.labels(feed.name, asset).inc(len(added))
        if backfilled:
            self.metrics.backfilled.labels(feed.name, asset).inc(backfilled)
            logger.info("%s %s: backfilled %d row(s)", feed.name, asset, backfilled)
        return FetchOutcome(
            feed.name,
            asset,
            item.start,
            item.end,
            rows_added=len(added),
            backfilled=backfilled,
            quarantined=quarantined,
            unclosed=item.batch.unclosed,
            new_holes=series.new_holes,
        )

    def _first(self, now: pd.Timestamp) -> pd.Timestamp:
        """The first bar (or event time) asked for at all: ``since``, or the lookback."""
        first = self.config.since
        if first is None:
            first = now.floor(self.step) - self.config.lookback
        return first.ceil(self.step)

    def _window(self, series: _Series, now: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
        first = self._first(now)
        if series.feed.is_bars:
            end = now.floor(self.step)
            if series.last_ts is None:
                start = first
            else:
                start = series.last_ts + self.step * (1 - self.config.overlap_bars)
        else:
            end = now + pd.Timedelta(1, "ms")
            start = first if series.last_ts is None else series.last_ts
        if series.holes:
            start = min(start, min(series.holes))
        # Never before the first bar asked for: the overlap must not pull in older history.
        return max(start, first), end

    def _update(
        self, series: _Series, stored: pd.DataFrame, start: pd.Timestamp, now: pd.Timestamp
    ) -> int:
        """Fold a read-back window into the series; return how many rows were backfilled."""
        stamps = set(stored["ts"])
        added = stamps - series.known
        series.known |= stamps
        series.new_holes = 0
        if len(stored):
            newest = stored["ts"].max()
            if series.last_ts is None or newest >= series.last_ts:
                series.last_ts = newest
                if "close" in stored.columns:
                    series.last_close = float(stored.loc[stored["ts"] == newest, "close"].iloc[0])
        if not series.feed.is_bars:
            return 0
        first_cycle_after = now.floor(self.step)
        backfilled = sum(1 for t in added if t + self.step < first_cycle_after)
        for filled in [h for h in series.holes if h in series.known]:
            del series.holes[filled]
        if series.known:
            low = min(t for t in series.known if t >= start) if stamps else None
            if low is not None and series.last_ts is not None:
                grid = pd.date_range(low, series.last_ts, freq=self.step)
                for missing in (t for t in grid if t not in series.known):
                    if missing not in series.holes:
                        series.holes[missing] = now
                        series.new_holes += 1
                        self.metrics.gaps.labels(series.feed.name, series.asset).inc()
                        logger.warning(
                            "%s %s: bar %s missing between stored bars; asking again each "
                            "cycle for %s",
                            series.feed.name,
                            series.asset,
                            missing.isoformat(),
                            self.config.hole_patience,
                        )
        for hole, seen in list(series.holes.items()):
            if now - seen > self.config.hole_patience:
                del series.holes[hole]
                logger.warning(
                    "%s %s: bar %s still missing after %s; accepted as a venue gap (not filled)",
                    series.feed.name,
                    series.asset,
                    hole.isoformat(),
                    self.config.hole_patience,
                )
        horizon = now - max(self.config.lookback, self.config.hole_patience) - self.step
        series.known = {t for t in series.known if t >= horizon}
        return backfilled

    def _absorb(self, twin: _Series, backfill: _Series) -> None:
        """Let a primary series see what a backfill feed stored in the same store series."""
        twin.known |= backfill.known
        for hole in [h for h in twin.holes if h in twin.known]:
            del twin.holes[hole]
        if backfill.last_ts is not None and (
            twin.last_ts is None or backfill.last_ts > twin.last_ts
        ):
            twin.last_ts = backfill.last_ts
            twin.last_close = backfill.last_close

    # --- state ---------------------------------------------------------------------------

    def _series_for(self, feed: Feed, asset: str) -> _Series:
        key = (feed.name, asset)
        if key not in self._series:
            self._series[key] = _Series(feed, asset)
        return self._series[key]

    def _load(self, series: _Series, now: pd.Timestamp) -> None:
        """Seed a series from the store on first use (a restart resumes where it stopped)."""
        if series.loaded:
            return
        horizon = now - max(self.config.lookback, self.config.hole_patience) - self.step
        stored = self._read_stored(series.feed, series.asset, horizon, now + self.step)
        series.known = set(stored["ts"])
        if len(stored):
            newest = stored["ts"].max()
            series.last_ts = newest
            if "close" in stored.columns:
                series.last_close = float(stored.loc[stored["ts"] == newest, "close"].iloc[0])
        series.loaded = True

    def _read_stored(
        self, feed: Feed, asset: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame:
        return self._read_stored_labels(feed, [feed.store_asset(asset)], start, end)

    def _read_stored_labels(
        self, feed: Feed, labels: list[str], start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame:
        if feed.dataset == "bars":
            return self.store.read_bars(self.config.interval, labels, start, end)
        if feed.dataset == "perp":
            return self.store.read_perp(self.config.interval, labels, start, end)
        return self.store.read_funding(labels, start, end)

    def _listed(self, source: LiveSource, feed: Feed) -> frozenset[str] | None:
        try:
            return source.listed(feed)
        except SourceError as exc:
            logger.error("%s: cannot list the venue's symbols: %s", feed.name, exc)
            for asset in self.assets:
                self._series_for(feed, asset).error = f"symbol list unavailable: {exc}"
            return None

    def _collect_snapshots(self, source: LiveSource) -> list[PerpSnapshot]:
        try:
            found = source.snapshots(self.assets)
        except SourceError as exc:
            logger.warning("%s: no perp snapshots this cycle: %s", source.name, exc)
            return []
        for snapshot in found:
            self._snapshots[snapshot.asset] = snapshot
        return found

    def _venue_now(self, synced: dict[str, pd.Timestamp | None]) -> pd.Timestamp:
        for source in self.sources:
            moment = synced.get(source.name)
            if moment is not None:
                return moment
        for source in self.sources:
            if source.clock.synced:
                return source.clock.now()
        if self._last_venue_time is not None:
            return self._last_venue_time
        raise SourceError(
            "live ingest",
            "venue time",
            "no venue answered its time endpoint yet",
            "nothing to ingest; the next cycle tries again",
        )

    # --- evaluation ----------------------------------------------------------------------

    def _evaluate(self, now: pd.Timestamp) -> dict[str, AssetFreshness]:
        records = {}
        for asset in self.assets:
            feeds = []
            for series in self._series.values():
                if series.asset != asset or series.feed.role == "backfill" or not series.listed:
                    continue
                feeds.append(self._feed_freshness(series, now))
            status, reason = asset_status(feeds)
            required = [f for f in feeds if f.role == "required" and f.data_through is not None]
            through = min((f.data_through for f in required), default=None)
            if through is not None:
                self.metrics.data_age.labels(asset).set((now - through).total_seconds())
            snapshot = self._snapshots.get(asset)
            records[asset] = AssetFreshness(
                asset=asset,
                status=status,
                reason=reason,
                venue_time=now,
                data_through=through,
                feeds=tuple(sorted(feeds, key=lambda f: f.feed)),
                snapshot=_snapshot_json(snapshot) if snapshot is not None else None,
            )
        return records

    def _feed_freshness(self, series: _Series, now: pd.Timestamp) -> FeedFreshness:
        feed = series.feed
        first = self._first(now)
        if feed.is_bars:
            status, reason, _ = classify_bars(
                series.last_ts, self.step, now, self.config.late_grace, first
            )
            through = None if series.last_ts is None else series.last_ts + self.step
        else:
            status, reason = classify_events(
                series.last_ts, now, self.config.funding_max_age, first
            )
            through = series.last_ts
        if series.error:
            status, reason = "stale", series.error if not reason else f"{series.error}; {reason}"
        if status == "late" and series.last_ts is not None and series.late_seen != series.last_ts:
            series.late_seen = series.last_ts
            self.metrics.late.labels(feed.name, series.asset).inc()
            logger.warning("%s %s: %s; re-polling", feed.name, series.asset, reason)
        if status == "stale" and series.status != "stale":
            self.metrics.stale.labels(feed.name, series.asset).inc()
            logger.warning("%s %s: stale: %s", feed.name, series.asset, reason)
        elif status == "ok" and series.status == "stale":
            logger.info("%s %s: recovered, up to date again", feed.name, series.asset)
        series.status = status
        return FeedFreshness(
            feed=feed.name,
            dataset=feed.dataset,
            role=feed.role,
            status=status,
            reason=reason,
            last_ts=series.last_ts,
            data_through=through,
            checked_at=series.checked_at,
            missing=len(series.holes),
        )

    def _oracle(self, now: pd.Timestamp) -> dict[str, MedianPrice]:
        prices = {}
        now_ms = epoch_ms(now)
        for asset in self.assets:
            feeds = [
                FeedPrice(s.feed.name, s.last_close, epoch_ms(s.last_ts + self.step))
                for s in self._series.values()
                if s.asset == asset
                and s.feed.price
                and s.listed
                and s.last_ts is not None
                and s.last_close is not None
            ]
            result = median_price(asset, feeds, now_ms, self.oracle_config)
            for verdict in result.verdicts:
                key = (asset, verdict.feed)
                if verdict.state != "healthy":
                    self.metrics.oracle_dropped.labels(verdict.feed, verdict.state).inc()
                    if self._oracle_states.get(key) != verdict.state:
                        logger.warning(
                            "oracle %s: feed %s dropped, %s: %s",
                            asset,
                            verdict.feed,
                            verdict.state,
                            verdict.detail,
                        )
                self._oracle_states[key] = verdict.state
            if result.guarded:
                self.metrics.oracle_guarded.labels(asset).inc()
                if not self._guarded.get(asset):
                    logger.warning("oracle %s: guarded: %s", asset, result.reason)
            elif self._guarded.get(asset):
                logger.info("oracle %s: unguarded again at %.8g", asset, result.price)
            self._guarded[asset] = result.guarded
            prices[asset] = result
        return prices


def _rows_of(quarantine: pd.DataFrame, feed: Feed, asset: str) -> pd.DataFrame:
    """The quarantined rows of one asset."""
    if quarantine.empty:
        return quarantine
    return quarantine[quarantine["asset"].astype(str) == feed.store_asset(asset)]


def _as_market(frame: pd.DataFrame, feed: Feed, interval: str) -> MarketData:
    """A bundle holding ``frame`` in the dataset of ``feed`` (the others empty)."""
    if feed.dataset == "bars":
        return MarketData(bars=frame, interval=interval, source=feed.name)
    if feed.dataset == "perp":
        return MarketData(bars=empty_bars(), perp=frame, interval=interval, source=feed.name)
    return MarketData(bars=empty_bars(), funding=frame, interval=interval, source=feed.name)


def _snapshot_json(snapshot: PerpSnapshot) -> dict[str, object]:
    def iso(value: pd.Timestamp | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "venue": snapshot.venue,
        "ts": iso(snapshot.ts),
        "open_interest": snapshot.open_interest,
        "mark_price": snapshot.mark_price,
        "index_price": snapshot.index_price,
        "funding_rate_estimate": snapshot.funding_rate_estimate,
        "next_funding_time": iso(snapshot.next_funding_time),
    }


def feeds_of(sources: Iterable[LiveSource]) -> list[Feed]:
    """Every feed of some sources, in order."""
    return [feed for source in sources for feed in source.feeds]


__all__ = ["CycleReport", "FetchOutcome", "LiveIngest", "LiveIngestConfig", "feeds_of"]
