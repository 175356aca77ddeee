"""Parse a raw Binance USDT-M websocket capture into typed events.

The capture format (``../shared/data/l2_ws_sample/``) is one event per line,
``<local_ns> <raw JSON>``: a REST depth snapshot (``lastUpdateId``, ``bids``, ``asks``) and the
combined-stream messages ``<sym>@depth@0ms`` (diffs with ``U``/``u``/``pu``), ``<sym>@trade``
(``m`` = buyer is maker) and ``<sym>@bookTicker``. The parser works on any iterable of such
lines (a file, a socket reader, a test list), not only on the sample file.

Times: ``transaction_ms`` is the exchange *transaction time* ``T`` (UTC, ms);
``local_ns`` is the capture host's receive time.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from features.errors import MarketDataError

__all__ = [
    "BookTicker",
    "CaptureFormatError",
    "DepthSnapshot",
    "DepthUpdate",
    "Event",
    "Level",
    "Trade",
    "open_capture",
    "parse_capture",
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
