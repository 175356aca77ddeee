"""Rebuild a Binance USDT-M order book from depth snapshots and diffs.

Book reconstruction follows Binance's rules for USDT-M futures: diffs that arrive before the
snapshot are buffered; diffs with ``u < lastUpdateId`` are dropped; the first applied diff
must satisfy ``U <= lastUpdateId <= u``; from then on every diff's ``pu`` must equal the
previous diff's ``u``. A violation raises :class:`BookSequenceError` (or, with
``on_gap="resync"``, discards the book until the next snapshot and counts the gap): a gap is
never silently bridged. A quantity of 0 removes the level.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from features.errors import MarketDataError
from features.l2.capture import DepthSnapshot, DepthUpdate, Event, Level

__all__ = [
    "BookLevels",
    "BookReplayer",
    "BookSequenceError",
    "OrderBook",
    "ReplayStats",
    "book_frame",
    "replay_book",
]


class BookSequenceError(MarketDataError):
    """A depth diff that does not continue the book: updates were lost or reordered.

    The book can no longer be trusted; fetch a new REST snapshot and replay from it (or
    replay with ``on_gap="resync"``, which waits for the next snapshot in the stream).
    """

    def __init__(self, symbol: str, line_no: int, ts: pd.Timestamp | None, problem: str) -> None:
        self.symbol = symbol
        self.line_no = line_no
        self.ts = ts
        when = ts.isoformat() if ts is not None else "unknown time"
        super().__init__(
            f"{symbol} depth diff at line {line_no} ({when}): {problem}; the order book has a "
            "gap: fetch a fresh depth snapshot and replay from it, or use on_gap='resync'"
        )


class OrderBook:
    """A price-level order book for one symbol, updated by Binance USDT-M depth diffs.

    Parameters
    ----------
    snapshot
        The REST depth snapshot the book starts from.

    Examples
    --------
    >>> snap = DepthSnapshot(10, ((99.0, 1.0),), ((101.0, 2.0),), None, 0, 1)
    >>> book = OrderBook(snap)
    >>> book.best_bid(), book.best_ask()
    ((99.0, 1.0), (101.0, 2.0))
    """

    def __init__(self, snapshot: DepthSnapshot) -> None:
        self._bids = _BookSide()
        self._asks = _BookSide()
        for price, quantity in snapshot.bids:
            self._bids.set(price, quantity)
        for price, quantity in snapshot.asks:
            self._asks.set(price, quantity)
        self.snapshot_update_id = snapshot.last_update_id
        self.last_update_id: int | None = None  # u of the last applied diff

    def apply(self, update: DepthUpdate) -> bool:
        """Apply one diff; return False if it predates the snapshot and was dropped.

        Raises
        ------
        BookSequenceError
            If the diff does not continue the sequence (first diff not straddling the
            snapshot's ``lastUpdateId``, or ``pu`` different from the previous ``u``).
        """
        if self.last_update_id is None:
            if update.final_update_id < self.snapshot_update_id:
                return False
            if update.first_update_id > self.snapshot_update_id:
                raise _sequence_error(
                    update,
                    f"first diff after the snapshot covers U={update.first_update_id}.."
                    f"u={update.final_update_id}, which does not include the snapshot's "
                    f"lastUpdateId={self.snapshot_update_id}",
                )
        elif update.previous_final_update_id != self.last_update_id:
            if update.final_update_id <= self.last_update_id:
                raise _sequence_error(
                    update,
                    f"diff u={update.final_update_id} is not after the last applied "
                    f"u={self.last_update_id} (duplicate or out of order)",
                )
            raise _sequence_error(
                update,
                f"pu={update.previous_final_update_id} but the last applied diff had "
                f"u={self.last_update_id}",
            )
        for price, quantity in update.bids:
            self._bids.set(price, quantity)
        for price, quantity in update.asks:
            self._asks.set(price, quantity)
        self.last_update_id = update.final_update_id
        return True

    def best_bid(self) -> Level | None:
        """Highest bid ``(price, quantity)``, or None on an empty side."""
        if not self._bids.prices:
            return None
        price = self._bids.prices[-1]
        return price, self._bids.quantities[price]

    def best_ask(self) -> Level | None:
        """Lowest ask ``(price, quantity)``, or None on an empty side."""
        if not self._asks.prices:
            return None
        price = self._asks.prices[0]
        return price, self._asks.quantities[price]

    def top(self, depth: int) -> tuple[list[Level], list[Level]]:
        """The best ``depth`` bids (descending) and asks (ascending)."""
        bid_prices = self._bids.prices[: -depth - 1 : -1]
        ask_prices = self._asks.prices[:depth]
        return (
            [(p, self._bids.quantities[p]) for p in bid_prices],
            [(p, self._asks.quantities[p]) for p in ask_prices],
        )

    def __len__(self) -> int:
        return len(self._bids.prices) + len(self._asks.prices)


class BookLevels(NamedTuple):
    """The top of the book right after one applied diff."""

    update_id: int
    transaction_ms: int
    local_ns: int
    bids: list[Level]
    asks: list[Level]


@dataclass
class ReplayStats:
    """Counters of one replay."""

    applied: int = 0
    dropped_stale: int = 0
    buffered_before_snapshot: int = 0
    snapshots: int = 0
    resyncs: int = 0
    gaps: list[str] = field(default_factory=list)


class BookReplayer:
    """Push-based book reconstruction: feed events one at a time, get the new book tops.

    Diffs that arrive while no valid book exists (before the first snapshot, or after a gap
    in ``"resync"`` mode) are buffered and replayed, under the same rules, against the next
    snapshot. Trades and book tickers are ignored.

    Parameters
    ----------
    depth
        Number of levels per side to report.
    on_gap
        ``"raise"``: a sequence gap raises :class:`BookSequenceError`. ``"resync"``: the
        book is discarded, the gap recorded in :attr:`stats`, and reconstruction resumes
        from the next snapshot in the stream.
    """

    def __init__(self, depth: int = 10, on_gap: Literal["raise", "resync"] = "raise") -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if on_gap not in ("raise", "resync"):
            raise ValueError(f"on_gap must be 'raise' or 'resync', got {on_gap!r}")
        self.depth = depth
        self.on_gap = on_gap
        self.stats = ReplayStats()
        self.book: OrderBook | None = None
        self._pending: list[DepthUpdate] = []
        self._symbol: str | None = None

    def feed(self, event: Event) -> list[BookLevels]:
        """Process one event; return the book tops after each diff it caused to be applied."""
        if isinstance(event, DepthSnapshot):
            self.stats.snapshots += 1
            self.book = OrderBook(event)
            backlog, self._pending = self._pending, []
            return [levels for update in backlog if (levels := self._step(update)) is not None]
        if not isinstance(event, DepthUpdate):
            return []
        if self._symbol is None:
            self._symbol = event.symbol
        elif event.symbol != self._symbol:
            raise _sequence_error(event, f"symbol {event.symbol} in a {self._symbol} book stream")
        if self.book is None:
            self._pending.append(event)
            self.stats.buffered_before_snapshot += 1
            return []
        levels = self._step(event)
        return [] if levels is None else [levels]

    def _step(self, update: DepthUpdate) -> BookLevels | None:
        if self.book is None:  # a gap earlier in the backlog invalidated the book
            self._pending.append(update)
            return None
        try:
            applied = self.book.apply(update)
        except BookSequenceError as exc:
            if self.on_gap == "raise":
                raise
            self.stats.resyncs += 1
            self.stats.gaps.append(str(exc))
            self.book = None
            # The offending diff may straddle the next snapshot's lastUpdateId: keep it.
            self._pending = [update]
            return None
        if not applied:
            self.stats.dropped_stale += 1
            return None
        self.stats.applied += 1
        bids, asks = self.book.top(self.depth)
        return BookLevels(
            update.final_update_id, update.transaction_ms, update.local_ns, bids, asks
        )


def replay_book(
    events: Iterable[Event],
    depth: int = 10,
    on_gap: Literal["raise", "resync"] = "raise",
    stats: ReplayStats | None = None,
) -> Iterator[BookLevels]:
    """Rebuild the book from a stream of events; yield its top after every applied diff.

    Parameters
    ----------
    events
        Events in arrival order (e.g. from :func:`parse_capture`).
    depth, on_gap
        As in :class:`BookReplayer`.
    stats
        Optional counters, updated in place while the generator runs.

    Yields
    ------
    BookLevels
        Update id, times and the best ``depth`` levels per side.
    """
    replayer = BookReplayer(depth=depth, on_gap=on_gap)
    if stats is not None:
        replayer.stats = stats
    for event in events:
        yield from replayer.feed(event)


def book_frame(
    events: Iterable[Event],
    depth: int = 10,
    on_gap: Literal["raise", "resync"] = "raise",
    stats: ReplayStats | None = None,
) -> pd.DataFrame:
    """The top ``depth`` levels after every applied diff, one row per diff.

    Parameters
    ----------
    events
        Events in arrival order.
    depth, on_gap, stats
        As in :func:`replay_book`.

    Returns
    -------
    pandas.DataFrame
        ``ts`` (UTC transaction time), ``local_ns``, ``update_id`` and, for level
        ``k = 1..depth``, ``bid_px_k``, ``bid_qty_k``, ``ask_px_k``, ``ask_qty_k``. A level
        that does not exist has price NaN and quantity 0.
    """
    update_ids: list[int] = []
    times: list[int] = []
    local: list[int] = []
    rows: list[list[float]] = []
    pad = [(np.nan, 0.0)] * depth
    for levels in replay_book(events, depth=depth, on_gap=on_gap, stats=stats):
        update_ids.append(levels.update_id)
        times.append(levels.transaction_ms)
        local.append(levels.local_ns)
        bids = (levels.bids + pad)[:depth]
        asks = (levels.asks + pad)[:depth]
        rows.append([x for level in (*bids, *asks) for x in level])
    values = np.asarray(rows, dtype=float).reshape(len(rows), 2, depth, 2)
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime(np.asarray(times, dtype=np.int64), unit="ms", utc=True),
            "local_ns": np.asarray(local, dtype=np.int64),
            "update_id": np.asarray(update_ids, dtype=np.int64),
        }
    )
    columns = {}
    for side_index, side in enumerate(("bid", "ask")):
        for k in range(depth):
            columns[f"{side}_px_{k + 1}"] = values[:, side_index, k, 0]
            columns[f"{side}_qty_{k + 1}"] = values[:, side_index, k, 1]
    return pd.concat([frame, pd.DataFrame(columns)], axis=1)


class _BookSide:
    """One side of the book: price -> quantity plus an ascending list of prices."""

    __slots__ = ("prices", "quantities")

    def __init__(self) -> None:
        self.quantities: dict[float, float] = {}
        self.prices: list[float] = []

    def set(self, price: float, quantity: float) -> None:
        if quantity == 0.0:
            if self.quantities.pop(price, None) is not None:
                del self.prices[bisect_left(self.prices, price)]
            return
        if price not in self.quantities:
            insort(self.prices, price)
        self.quantities[price] = quantity


def _sequence_error(update: DepthUpdate, problem: str) -> BookSequenceError:
    ts = pd.Timestamp(update.transaction_ms, unit="ms", tz="UTC")
    return BookSequenceError(update.symbol, update.line_no, ts, problem)
