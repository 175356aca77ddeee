"""Everything the L2 modules compute from one capture, in one pass over its events.

:func:`summarise_capture` parses a capture once, rebuilds the book, and returns the
per-bucket order flow imbalance, trade-level VPIN and the book's agreement with the
exchange's own best prices: what ``dynamargin features orderbook`` prints and writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.l2.agreement import BookTickerAgreement, book_ticker_agreement, book_ticker_frame
from features.l2.book import ReplayStats, book_frame
from features.l2.capture import open_capture
from features.l2.ofi import aggregate_ofi, order_flow_imbalance
from features.l2.vpin import trade_vpin, trades_frame


@dataclass(frozen=True)
class CaptureSummary:
    """The L2 features of one capture.

    Attributes
    ----------
    events
        Events parsed.
    stats
        Book replay counters (diffs applied, stale diffs dropped, resyncs).
    ofi
        Order flow imbalance per time bucket (:func:`features.l2.ofi.aggregate_ofi`).
    vpin
        Trade-level VPIN per volume bucket (:func:`features.l2.vpin.trade_vpin`).
    agreement
        Reconstructed best prices against the exchange's bookTicker.
    """

    events: int
    stats: ReplayStats
    ofi: pd.DataFrame
    vpin: pd.DataFrame
    agreement: BookTickerAgreement


def summarise_capture(
    path: Path | str,
    depth: int = 10,
    bucket: str = "1s",
    vpin_buckets: int = 50,
    vpin_window: int = 10,
) -> CaptureSummary:
    """Book, OFI, VPIN and bookTicker agreement of the capture at ``path``.

    Parameters
    ----------
    path
        A ``<local_ns> <raw JSON>`` capture, plain or gzip.
    depth
        Book levels kept (and summed by the OFI).
    bucket
        OFI time bucket, a pandas frequency such as ``"1s"``.
    vpin_buckets
        The capture's traded volume is split into this many VPIN volume buckets.
    vpin_window
        VPIN's rolling window in buckets (at most ``vpin_buckets``).

    Raises
    ------
    CaptureFormatError, BookSequenceError
        On a malformed line or a sequence gap, naming the line and update ids.
    """
    events = list(open_capture(path))
    stats = ReplayStats()
    book = book_frame(events, depth=depth, stats=stats)
    trades = trades_frame(events)
    volume = float(trades["quantity"].sum()) if len(trades) else 0.0
    vpin = (
        trade_vpin(trades, volume / vpin_buckets, min(vpin_window, vpin_buckets))
        if volume > 0
        else pd.DataFrame()
    )
    return CaptureSummary(
        events=len(events),
        stats=stats,
        ofi=aggregate_ofi(order_flow_imbalance(book), bucket),
        vpin=vpin,
        agreement=book_ticker_agreement(book, book_ticker_frame(events)),
    )
