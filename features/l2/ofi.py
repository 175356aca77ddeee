"""Order flow imbalance (Cont, Kukanov and Stoikov, 2014) from a reconstructed book."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

__all__ = ["aggregate_ofi", "order_flow_imbalance"]


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
        Output of :func:`features.l2.book.book_frame`.
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
