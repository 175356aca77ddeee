"""Compatibility facade: the order-book API now lives in :mod:`features.l2`.

New code imports from the module that does the job (:mod:`features.l2.capture`,
:mod:`features.l2.book`, :mod:`features.l2.ofi`, :mod:`features.l2.vpin`,
:mod:`features.l2.agreement`); this module only re-exports those names so existing
``from features.orderbook import ...`` lines keep working.
"""

from __future__ import annotations

from features.l2.agreement import BookTickerAgreement, book_ticker_agreement, book_ticker_frame
from features.l2.book import (
    BookLevels,
    BookReplayer,
    BookSequenceError,
    OrderBook,
    ReplayStats,
    book_frame,
    replay_book,
)
from features.l2.capture import (
    BookTicker,
    CaptureFormatError,
    DepthSnapshot,
    DepthUpdate,
    Event,
    Trade,
    open_capture,
    parse_capture,
)
from features.l2.ofi import aggregate_ofi, order_flow_imbalance
from features.l2.vpin import trade_vpin, trades_frame

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
