"""Check a reconstructed book against the exchange's own best prices (bookTicker)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.l2.capture import BookTicker, Event

__all__ = ["BookTickerAgreement", "book_ticker_agreement", "book_ticker_frame"]


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
        Output of :func:`features.l2.book.book_frame`.
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
