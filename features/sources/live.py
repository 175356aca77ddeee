"""The interface every live market-data source implements, and what it hands back.

A *source* is one venue's API (Binance REST, a ccxt venue, the public dump's daily files).
It serves one or more *feeds*: a series that lands in one dataset of the store (spot bars,
perpetual bars or funding events). A live runner (:mod:`features.live.ingest`) asks a source
for the rows of a feed in a time window; the source returns them unvalidated, in the Bars
(or funding) schema with provenance, and the runner validates and stores them through the
same functions as the dump path (:meth:`features.store.MarketStore.ingest_market`).

Two rules every source keeps:

- **only closed data**: a bar is returned only once its close (``ts + interval``) is at or
  before the venue's own clock, and a funding event only once its settlement time has passed
  on that clock. The venue's clock comes from its time endpoint (:class:`VenueClock`), never
  from the local clock, so a skewed or simulated local clock cannot make a bar look closed;
- **no silent failure**: a request that still fails after the retry policy raises
  :class:`~features.errors.SourceUnavailableError` (transient) or
  :class:`~features.errors.SourceRequestError` (refused); the runner marks the feed stale.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from features.sources.venue_clock import VenueClock

FeedDataset = Literal["bars", "perp", "funding"]
"""Store dataset a feed writes to (see :class:`features.store.MarketStore`)."""

FeedRole = Literal["required", "optional", "backfill"]
"""How a feed counts for an asset's freshness.

``required`` feeds decide the asset's status (a stale required feed makes the asset stale);
``optional`` feeds are reported per feed but do not change the asset's status; ``backfill``
feeds only fill history (e.g. the dump's daily files, published a day late) and are never
stale.
"""


@dataclass(frozen=True)
class Feed:
    """One series a source serves.

    Attributes
    ----------
    name
        Unique name, e.g. ``"binance-spot"``, ``"bybit-linear"``.
    dataset
        Store dataset it lands in.
    venue
        Venue name, e.g. ``"binance"``.
    asset_suffix
        Appended to the asset in the store: ``""`` for the primary venue, ``"@BYBIT"`` for a
        second venue, so that one instrument on two venues is two series and never a
        conflicting duplicate (upper case: the store upper-cases asset labels).
    price
        Its bar close is a price feed of the multi-source oracle median.
    role
        How it counts for freshness (:data:`FeedRole`).
    """

    name: str
    dataset: FeedDataset
    venue: str
    asset_suffix: str = ""
    price: bool = False
    role: FeedRole = "optional"

    def store_asset(self, asset: str) -> str:
        """The asset label this feed's rows carry in the store."""
        return f"{asset}{self.asset_suffix}"

    @property
    def is_bars(self) -> bool:
        """True for bar feeds (spot or perp), False for event feeds (funding)."""
        return self.dataset != "funding"


@dataclass(frozen=True)
class FeedBatch:
    """The rows one fetch returned, unvalidated.

    Attributes
    ----------
    feed
        The feed fetched.
    asset
        The venue-neutral symbol asked for, e.g. ``"BTCUSDT"``.
    frame
        Bars (or funding) schema plus ``source_file``/``source_row`` provenance; ``asset``
        holds :meth:`Feed.store_asset`. Rows with ``ts`` outside the window, and bars not yet
        closed on the venue's clock, are already removed.
    rejected
        Rows that could not be parsed at all, in quarantine form.
    source
        Provenance label: the request and the venue time it was answered at. Unique per
        fetch, so quarantine files of different fetches never replace each other.
    server_time
        The venue's time when it answered.
    unclosed
        Bars the venue returned that had not closed yet (dropped, never ingested).
    """

    feed: Feed
    asset: str
    frame: pd.DataFrame
    rejected: pd.DataFrame
    source: str
    server_time: pd.Timestamp
    unclosed: int = 0


@dataclass(frozen=True)
class PerpSnapshot:
    """A perpetual's live state at one venue time: open interest, mark, index, funding.

    Any field a venue does not provide is ``None``.

    Attributes
    ----------
    venue
        Venue name.
    asset
        Symbol, e.g. ``"BTCUSDT"``.
    ts
        Venue time of the snapshot.
    open_interest
        Open interest in base units (coins).
    mark_price, index_price
        The venue's mark price and index (spot composite) price.
    funding_rate_estimate
        The funding rate the venue currently shows for the next settlement.
    next_funding_time
        When that settlement happens.
    """

    venue: str
    asset: str
    ts: pd.Timestamp
    open_interest: float | None = None
    mark_price: float | None = None
    index_price: float | None = None
    funding_rate_estimate: float | None = None
    next_funding_time: pd.Timestamp | None = None


@runtime_checkable
class LiveSource(Protocol):
    """What the live runner needs from a venue.

    Attributes
    ----------
    name
        Source name used in logs and metrics, e.g. ``"binance"``.
    feeds
        The feeds it serves.
    clock
        The venue's clock, kept in step by :meth:`sync_time`.
    """

    name: str
    feeds: tuple[Feed, ...]
    clock: VenueClock

    def sync_time(self) -> pd.Timestamp:
        """Ask the venue for its time, update :attr:`clock`, return the venue time."""
        ...

    def listed(self, feed: Feed) -> frozenset[str]:
        """Symbols the venue lists for a feed (an asset not listed has no such feed)."""
        ...

    def fetch(self, feed: Feed, asset: str, start: pd.Timestamp, end: pd.Timestamp) -> FeedBatch:
        """Closed rows of ``feed`` for ``asset`` with ``start <= ts < end``, paging as needed."""
        ...

    def snapshots(self, assets: Sequence[str]) -> list[PerpSnapshot]:
        """The current perpetual state of each listed asset (empty when not supported)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


EMPTY_REJECTED: Final[tuple[str, ...]] = (
    "source_file",
    "source_row",
    "asset",
    "dataset",
    "interval",
    "reason",
    "raw",
)


def empty_rejected() -> pd.DataFrame:
    """An empty frame of rejected rows (quarantine form)."""
    return pd.DataFrame({c: pd.Series(dtype="object") for c in EMPTY_REJECTED})


def closed_rows(
    frame: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    known_at: pd.Timedelta,
    venue_now: pd.Timestamp,
) -> tuple[pd.DataFrame, int]:
    """Keep rows with ``start <= ts < end`` whose information is known by ``venue_now``.

    Parameters
    ----------
    frame
        Rows with a ``ts`` column (NaT rows are kept: validation quarantines them).
    start, end
        The requested window.
    known_at
        Delay from ``ts`` to when the row is final: the interval for bars (a bar is known at
        its close), zero for funding events (known at settlement).
    venue_now
        The venue's time.

    Returns
    -------
    kept : pandas.DataFrame
        The rows to hand to validation.
    unclosed : int
        Rows dropped because they were not final yet on the venue's clock.
    """
    ts = frame["ts"]
    undated = ts.isna().to_numpy()
    in_window = ((ts >= start) & (ts < end)).to_numpy() | undated
    final = ((ts + known_at) <= venue_now).to_numpy() | undated
    unclosed = int(np.count_nonzero(in_window & ~final))
    keep = in_window & final
    return frame[keep].reset_index(drop=True), unclosed


_FETCHES = itertools.count(1)


def fetch_label(request: str, venue_time: pd.Timestamp) -> str:
    """Provenance of one fetch: the request, the venue time and a fetch number.

    The number makes the label unique within the process even when two fetches repeat the
    same request at the same venue time (a re-poll on a paused clock), so the quarantine
    file of one fetch never replaces another's.
    """
    return f"{request} (venue time {pd.Timestamp(venue_time).isoformat()}, fetch {next(_FETCHES)})"


def epoch_ms(ts: pd.Timestamp) -> int:
    """Milliseconds since the epoch of a tz-aware timestamp."""
    return int(pd.Timestamp(ts).value // 1_000_000)


__all__ = [
    "Feed",
    "FeedBatch",
    "FeedDataset",
    "FeedRole",
    "LiveSource",
    "PerpSnapshot",
    "closed_rows",
    "empty_rejected",
    "epoch_ms",
    "fetch_label",
]
