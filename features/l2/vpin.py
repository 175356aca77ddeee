"""Trade-level VPIN: trades as a frame, poured into equal-volume buckets."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from features.l2.capture import Event, Trade

__all__ = ["trade_vpin", "trades_frame"]


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
