"""Order-book features from a raw Binance USDT-M websocket capture.

The capture format (``../shared/data/l2_ws_sample/``) is one event per line,
``<local_ns> <raw JSON>``: a REST depth snapshot (``lastUpdateId``, ``bids``, ``asks``) and the
combined-stream messages ``<sym>@depth@0ms`` (diffs with ``U``/``u``/``pu``), ``<sym>@trade``
(``m`` = buyer is maker) and ``<sym>@bookTicker``. Everything here works on any iterable of
such lines (a file, a socket reader, a test list), not only on the sample file.

Pipeline::

    events = parse_capture(lines)              # typed events, in arrival order
    book = book_frame(events, depth=10)        # top-N book after every applied diff
    ofi = order_flow_imbalance(book)           # Cont-Kukanov-Stoikov OFI per event, per level
    per_second = aggregate_ofi(ofi, "1s")      # bucketed, labelled by bucket open
    vpin = trade_vpin(trades_frame(events), bucket_volume=5.0, window=50)

Book reconstruction follows Binance's rules for USDT-M futures: diffs that arrive before the
snapshot are buffered; diffs with ``u < lastUpdateId`` are dropped; the first applied diff
must satisfy ``U <= lastUpdateId <= u``; from then on every diff's ``pu`` must equal the
previous diff's ``u``. A violation raises :class:`BookSequenceError` (or, with
``on_gap="resync"``, discards the book until the next snapshot and counts the gap): a gap is
never silently bridged. A quantity of 0 removes the level.

Times: ``ts`` columns are the exchange *transaction time* ``T`` (UTC, ms precision);
``local_ns`` is the capture host's receive time.
"""

from __future__ import annotations

import gzip
import json
from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from features.errors import MarketDataError

__all__ = [
    "BookLevels",
    "BookReplayer",
    "BookSequenceError",
    "BookTicker",
    "BookTickerAgreement",
    "CaptureFormatError",
    "DepthSnapshot",
    "DepthUpdate",
    "Event",
    "OrderBook",
    "ReplayStats",
    "Trade",
    "aggregate_ofi",
    "book_frame",
    "book_ticker_agreement",
    "book_ticker_frame",
    "open_capture",
    "order_flow_imbalance",
    "parse_capture",
    "replay_book",
    "trade_vpin",
    "trades_frame",
]

Level = tuple[float, float]
"""One price level: ``(price, quantity)``."""


class CaptureFormatError(MarketDataError, ValueError):
    """A capture line that is not ``<local_ns> <JSON>`` of a known Binance event."""

    def __init__(self, source: str, line_no: int, problem: str) -> None:
        self.source = source
        self.line_no = line_no
        super().__init__(
            f"{source} line {line_no}: {problem}; the capture must hold one "
            "'<local_ns> <raw JSON>' event per line (REST depth snapshot, depth diff, trade or "
            "bookTicker)"
        )


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


@dataclass(frozen=True, slots=True)
class DepthSnapshot:
    """A REST depth snapshot: the book as of update id ``last_update_id``."""

    last_update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    transaction_ms: int | None
    local_ns: int
    line_no: int


@dataclass(frozen=True, slots=True)
class DepthUpdate:
    """A depth diff covering update ids ``first_update_id..final_update_id``."""

    symbol: str
    first_update_id: int
    final_update_id: int
    previous_final_update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    event_ms: int
    transaction_ms: int
    local_ns: int
    line_no: int


@dataclass(frozen=True, slots=True)
class Trade:
    """One trade; ``buyer_is_maker`` means the aggressor (taker) sold."""

    symbol: str
    trade_id: int
    price: float
    quantity: float
    buyer_is_maker: bool
    transaction_ms: int
    local_ns: int
    line_no: int


@dataclass(frozen=True, slots=True)
class BookTicker:
    """Best bid and ask as of order-book update id ``update_id``."""

    symbol: str
    update_id: int
    bid_price: float
    bid_quantity: float
    ask_price: float
    ask_quantity: float
    transaction_ms: int
    local_ns: int
    line_no: int


Event = DepthSnapshot | DepthUpdate | Trade | BookTicker


def open_capture(path: Path | str) -> Iterator[Event]:
    """Parse a capture file (plain or gzip), streaming.

    Parameters
    ----------
    path
        A ``.gz`` or plain-text capture in the ``<local_ns> <raw JSON>`` format.

    Yields
    ------
    Event
        The file's events in arrival order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as lines:
        yield from parse_capture(lines, source=str(path))


def parse_capture(
    lines: Iterable[str | bytes],
    source: str = "<stream>",
    unknown: Literal["raise", "skip"] = "raise",
) -> Iterator[Event]:
    """Parse ``<local_ns> <raw JSON>`` lines into typed events, lazily.

    Parameters
    ----------
    lines
        Any iterable of lines (str or bytes); blank lines are ignored.
    source
        Name used in error messages (file name, socket, ...).
    unknown
        What to do with a well-formed event of another stream type (e.g. ``markPrice``):
        ``"raise"`` (default) or ``"skip"``.

    Yields
    ------
    Event
        :class:`DepthSnapshot`, :class:`DepthUpdate`, :class:`Trade` or :class:`BookTicker`.

    Raises
    ------
    CaptureFormatError
        On a malformed line, naming the source and the line number.
    """
    for line_no, raw_line in enumerate(lines, start=1):
        line = raw_line.decode("utf-8") if isinstance(raw_line, bytes) else raw_line
        if not line.strip():
            continue
        stamp, _, payload = line.strip().partition(" ")
        try:
            local_ns = int(stamp)
            message = json.loads(payload)
        except ValueError as exc:
            raise CaptureFormatError(source, line_no, f"not '<local_ns> <JSON>' ({exc})") from exc
        try:
            event = _to_event(message, local_ns, line_no)
        except (KeyError, TypeError, ValueError) as exc:
            raise CaptureFormatError(source, line_no, f"missing or bad field {exc}") from exc
        if event is None:
            if unknown == "raise":
                kind = message.get("stream", "no stream name") if isinstance(message, dict) else ""
                raise CaptureFormatError(
                    source, line_no, f"unknown event ({kind}); pass unknown='skip' to ignore it"
                )
            continue
        yield event


def _to_event(message: object, local_ns: int, line_no: int) -> Event | None:
    if not isinstance(message, dict):
        raise TypeError("a JSON object")
    if "lastUpdateId" in message:
        return DepthSnapshot(
            last_update_id=int(message["lastUpdateId"]),
            bids=_levels(message["bids"]),
            asks=_levels(message["asks"]),
            transaction_ms=int(message["T"]) if "T" in message else None,
            local_ns=local_ns,
            line_no=line_no,
        )
    data = message.get("data", message)
    kind = data.get("e")
    if kind == "depthUpdate":
        return DepthUpdate(
            symbol=data["s"],
            first_update_id=int(data["U"]),
            final_update_id=int(data["u"]),
            previous_final_update_id=int(data["pu"]),
            bids=_levels(data["b"]),
            asks=_levels(data["a"]),
            event_ms=int(data["E"]),
            transaction_ms=int(data["T"]),
            local_ns=local_ns,
            line_no=line_no,
        )
    if kind == "trade":
        return Trade(
            symbol=data["s"],
            trade_id=int(data["t"]),
            price=float(data["p"]),
            quantity=float(data["q"]),
            buyer_is_maker=bool(data["m"]),
            transaction_ms=int(data["T"]),
            local_ns=local_ns,
            line_no=line_no,
        )
    if kind == "bookTicker":
        return BookTicker(
            symbol=data["s"],
            update_id=int(data["u"]),
            bid_price=float(data["b"]),
            bid_quantity=float(data["B"]),
            ask_price=float(data["a"]),
            ask_quantity=float(data["A"]),
            transaction_ms=int(data["T"]),
            local_ns=local_ns,
            line_no=line_no,
        )
    return None


def _levels(raw: list[list[str]]) -> tuple[Level, ...]:
    # Identical decimal strings always parse to the identical float, so floats are safe keys.
    return tuple((float(price), float(quantity)) for price, quantity in raw)


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


def _sequence_error(update: DepthUpdate, problem: str) -> BookSequenceError:
    ts = pd.Timestamp(update.transaction_ms, unit="ms", tz="UTC")
    return BookSequenceError(update.symbol, update.line_no, ts, problem)


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


# --- frames -------------------------------------------------------------------------------


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


def trades_frame(events: Iterable[Event]) -> pd.DataFrame:
    """Trades as a frame sorted by trade id.

    Like the other ``*_frame`` functions it consumes ``events``; pass a list to reuse one
    parsed capture for several frames.

    Returns
    -------
    pandas.DataFrame
        ``ts``, ``local_ns``, ``trade_id``, ``price``, ``quantity`` and ``side``: +1 when the
        taker bought (``m`` false, the buyer was not the maker), -1 when the taker sold.
    """
    trades = [e for e in events if isinstance(e, Trade)]
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime(
                np.asarray([t.transaction_ms for t in trades], dtype=np.int64), unit="ms", utc=True
            ),
            "local_ns": np.asarray([t.local_ns for t in trades], dtype=np.int64),
            "trade_id": np.asarray([t.trade_id for t in trades], dtype=np.int64),
            "price": np.asarray([t.price for t in trades], dtype=float),
            "quantity": np.asarray([t.quantity for t in trades], dtype=float),
            "side": np.asarray([-1 if t.buyer_is_maker else 1 for t in trades], dtype=np.int8),
        }
    )
    return frame.sort_values("trade_id", kind="stable").reset_index(drop=True)


def book_ticker_frame(events: Iterable[Event]) -> pd.DataFrame:
    """Book-ticker events as a frame: ``ts``, ``local_ns``, ``update_id``, best prices/sizes."""
    ticks = [e for e in events if isinstance(e, BookTicker)]
    return pd.DataFrame(
        {
            "ts": pd.to_datetime(
                np.asarray([t.transaction_ms for t in ticks], dtype=np.int64), unit="ms", utc=True
            ),
            "local_ns": np.asarray([t.local_ns for t in ticks], dtype=np.int64),
            "update_id": np.asarray([t.update_id for t in ticks], dtype=np.int64),
            "bid_px": np.asarray([t.bid_price for t in ticks], dtype=float),
            "bid_qty": np.asarray([t.bid_quantity for t in ticks], dtype=float),
            "ask_px": np.asarray([t.ask_price for t in ticks], dtype=float),
            "ask_qty": np.asarray([t.ask_quantity for t in ticks], dtype=float),
        }
    )


# --- order flow imbalance ---------------------------------------------------------------


def order_flow_imbalance(
    book: pd.DataFrame, levels: int | None = None, weights: Iterable[float] | None = None
) -> pd.DataFrame:
    """Order flow imbalance (Cont, Kukanov and Stoikov, 2014) per book event and level.

    For consecutive book states ``n-1, n`` and level ``k`` (the k-th best price per side)::

        e_n^k = 1{Pb_n >= Pb_{n-1}} qb_n - 1{Pb_n <= Pb_{n-1}} qb_{n-1}
              - 1{Pa_n <= Pa_{n-1}} qa_n + 1{Pa_n >= Pa_{n-1}} qa_{n-1}

    Positive values are net buying pressure (bids growing or improving, asks shrinking or
    retreating). Summing ``e_n`` over a time bucket gives the bucket's OFI.

    Parameters
    ----------
    book
        Output of :func:`book_frame`.
    levels
        Levels to use (default: all in ``book``).
    weights
        Weights of the levels in ``ofi_multi``; default ``1/k``, normalised to sum to 1, so
        the best level counts most and deep levels still contribute.

    Returns
    -------
    pandas.DataFrame
        ``ts``, ``update_id``, ``ofi_1..ofi_L``, ``ofi`` (= ``ofi_1``, best bid/ask),
        ``ofi_multi`` (weighted sum over levels) and ``depth`` (mean quantity per level and
        side over the L levels, for normalisation). The first row is NaN: it has no
        predecessor.
    """
    available = sum(1 for c in book.columns if c.startswith("bid_px_"))
    levels = available if levels is None else levels
    if not 1 <= levels <= available:
        raise ValueError(f"levels must be in 1..{available} (book depth), got {levels}")
    w = np.asarray(
        list(weights) if weights is not None else [1.0 / k for k in range(1, levels + 1)], float
    )
    if w.shape != (levels,) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be {levels} non-negative numbers, not all zero")
    w = w / w.sum()
    out = pd.DataFrame({"ts": book["ts"], "update_id": book["update_id"]})
    per_level = []
    for k in range(1, levels + 1):
        e = _ofi_level(
            book[f"bid_px_{k}"].to_numpy(),
            book[f"bid_qty_{k}"].to_numpy(),
            book[f"ask_px_{k}"].to_numpy(),
            book[f"ask_qty_{k}"].to_numpy(),
        )
        out[f"ofi_{k}"] = e
        per_level.append(e)
    stacked = np.column_stack(per_level)
    out["ofi"] = stacked[:, 0]
    out["ofi_multi"] = stacked @ w
    quantity_columns = [f"{s}_qty_{k}" for s in ("bid", "ask") for k in range(1, levels + 1)]
    out["depth"] = book[quantity_columns].to_numpy().mean(axis=1)
    return out


def _ofi_level(
    bid_px: np.ndarray, bid_qty: np.ndarray, ask_px: np.ndarray, ask_qty: np.ndarray
) -> np.ndarray:
    e = np.full(len(bid_px), np.nan)
    if len(bid_px) < 2:
        return e
    pb, pb0, qb, qb0 = bid_px[1:], bid_px[:-1], bid_qty[1:], bid_qty[:-1]
    pa, pa0, qa, qa0 = ask_px[1:], ask_px[:-1], ask_qty[1:], ask_qty[:-1]
    # NaN prices (missing levels) compare False, so a missing level contributes nothing.
    with np.errstate(invalid="ignore"):
        bid = np.where(pb >= pb0, qb, 0.0) - np.where(pb <= pb0, qb0, 0.0)
        ask = np.where(pa <= pa0, qa, 0.0) - np.where(pa >= pa0, qa0, 0.0)
    e[1:] = bid - ask
    return e


def aggregate_ofi(ofi: pd.DataFrame, freq: str = "1s") -> pd.DataFrame:
    """Sum per-event OFI into time buckets ``[t, t + freq)`` labelled by their open ``t``.

    As with bars, a bucket's value is known only at its close ``t + freq``. Buckets without
    book events have OFI 0 (the book did not change) and NaN ``depth``.

    Parameters
    ----------
    ofi
        Output of :func:`order_flow_imbalance`.
    freq
        Pandas frequency of the buckets, e.g. ``"1s"``, ``"1min"``.

    Returns
    -------
    pandas.DataFrame
        Indexed by bucket open ``ts``: the summed ``ofi_*`` columns, ``events`` (diffs in
        the bucket), mean ``depth`` and ``ofi_norm = ofi_multi / depth``.
    """
    value_columns = [c for c in ofi.columns if c.startswith("ofi")]
    indexed = ofi.set_index("ts")
    buckets = indexed[value_columns].resample(freq, label="left", closed="left")
    out = buckets.sum(min_count=0)
    out["events"] = indexed["update_id"].resample(freq, label="left", closed="left").count()
    out["depth"] = indexed["depth"].resample(freq, label="left", closed="left").mean()
    out["ofi_norm"] = out["ofi_multi"] / out["depth"]
    return out


# --- VPIN ---------------------------------------------------------------------------------


def trade_vpin(trades: pd.DataFrame, bucket_volume: float, window: int = 50) -> pd.DataFrame:
    """Volume-synchronised probability of informed trading from signed trades.

    Trades are poured, in trade-id order, into consecutive buckets of exactly
    ``bucket_volume`` (a trade that overflows a bucket is split). Each trade is a buy or a
    sell by its aggressor (the ``m`` flag), so no bulk classification is needed. For
    bucket ``j`` with buy and sell volumes ``B_j + S_j = V``::

        VPIN_j = sum_{i=j-n+1..j} |B_i - S_i| / (n V),   n = window

    which lies in [0, 1]. The trailing partial bucket is not reported.

    Parameters
    ----------
    trades
        Output of :func:`trades_frame` (``ts``, ``quantity``, ``side``).
    bucket_volume
        Volume per bucket, in base units (e.g. BTC). Choose it from past data, e.g. 1/50 of
        a typical day's volume; deriving it from the same sample would leak the future.
    window
        Number of buckets in the rolling VPIN.

    Returns
    -------
    pandas.DataFrame
        One row per completed bucket: ``bucket``, ``ts`` (time of the trade that filled
        it, when the value becomes known), ``buy_volume``, ``sell_volume``,
        ``imbalance = |B - S| / V`` and ``vpin`` (NaN until ``window`` buckets exist).
    """
    if not bucket_volume > 0:
        raise ValueError(f"bucket_volume must be > 0, got {bucket_volume}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    quantity = trades["quantity"].to_numpy(dtype=float)
    if np.any(~np.isfinite(quantity)) or np.any(quantity < 0):
        raise ValueError("trade quantities must be finite and >= 0")
    side = trades["side"].to_numpy()
    if not np.isin(side, (-1, 1)).all():
        raise ValueError("trade side must be +1 (taker buy) or -1 (taker sell)")
    cum_volume = np.concatenate([[0.0], np.cumsum(quantity)])
    cum_buy = np.concatenate([[0.0], np.cumsum(np.where(side > 0, quantity, 0.0))])
    n_buckets = int(cum_volume[-1] // bucket_volume)
    edges = bucket_volume * np.arange(n_buckets + 1)
    # Within one trade all volume has the same side, so cumulative buy volume is piecewise
    # linear in cumulative volume: interpolation splits trades across bucket edges exactly.
    buy_at_edge = np.interp(edges, cum_volume, cum_buy)
    # Clip the rounding of long cumulative sums, which can leave a bucket 1e-12 outside [0, V].
    buy = np.clip(np.diff(buy_at_edge), 0.0, bucket_volume)
    sell = bucket_volume - buy
    filled_by = np.searchsorted(cum_volume, edges[1:], side="left") - 1
    imbalance = np.abs(buy - sell) / bucket_volume
    # A running-sum rolling mean can drift 1 ulp past 1; the quantity is a probability.
    rolling_mean = pd.Series(imbalance).rolling(window, min_periods=window).mean().to_numpy()
    return pd.DataFrame(
        {
            "bucket": np.arange(n_buckets, dtype=np.int64),
            "ts": trades["ts"].to_numpy()[np.clip(filled_by, 0, None)],
            "buy_volume": buy,
            "sell_volume": sell,
            "imbalance": imbalance,
            "vpin": np.clip(rolling_mean, 0.0, 1.0),
        }
    )


# --- consistency with the exchange's own best prices ---------------------------------------


@dataclass(frozen=True)
class BookTickerAgreement:
    """How often the reconstructed best prices equal the exchange's bookTicker."""

    compared: int
    matched: int
    exact_compared: int
    exact_matched: int

    @property
    def rate(self) -> float:
        """Share of book states whose best bid and ask equal the latest earlier ticker's."""
        return self.matched / self.compared if self.compared else float("nan")

    @property
    def exact_rate(self) -> float:
        """The same, restricted to tickers carrying exactly the diff's final update id."""
        return self.exact_matched / self.exact_compared if self.exact_compared else float("nan")


def book_ticker_agreement(book: pd.DataFrame, tickers: pd.DataFrame) -> BookTickerAgreement:
    """Compare reconstructed best prices with bookTicker events, matched by update id.

    The exchange pushes a bookTicker on every change of the best bid or ask, so the best
    prices after a diff with final id ``u`` equal those of the last ticker with
    ``update_id <= u``. Book states before the first ticker are not compared.

    Parameters
    ----------
    book
        Output of :func:`book_frame`.
    tickers
        Output of :func:`book_ticker_frame`.
    """
    left = book[["update_id", "bid_px_1", "ask_px_1"]].sort_values("update_id")
    right = tickers[["update_id", "bid_px", "ask_px"]].sort_values("update_id")
    right = right.rename(columns={"update_id": "ticker_id"})
    merged = pd.merge_asof(
        left, right, left_on="update_id", right_on="ticker_id", direction="backward"
    ).dropna(subset=["ticker_id"])
    same = (merged["bid_px_1"] == merged["bid_px"]) & (merged["ask_px_1"] == merged["ask_px"])
    exact = merged["ticker_id"] == merged["update_id"]
    return BookTickerAgreement(
        compared=len(merged),
        matched=int(same.sum()),
        exact_compared=int(exact.sum()),
        exact_matched=int((same & exact).sum()),
    )
