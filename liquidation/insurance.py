"""Insurance-fund governance: coverage monitor and a bounded adjustment rule.

``coverage = fund / stressed loss``. The stressed loss is the larger of a high quantile of the
fund's recorded bad-debt events and the bad debt the current book would produce under a joint
``k``-sigma move of every asset (both directions). Below the target coverage the fund's share
of liquidation penalties and a fee add-on step up; comfortably above it they step down; both
stay inside configured bounds. The engine records every review as an ``insurance`` event.
The rule itself and the history quantile are :mod:`liquidation.rules.governance` (shared with
the replay); this module adds the book's stressed loss, which needs the engine's book.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from liquidation.money import MICRO
from liquidation.rules.governance import GovernanceDecision, historical_stressed_loss, review
from liquidation.scan import MarginArrays, PositionBook

__all__ = ["GovernanceDecision", "book_stressed_loss", "historical_stressed_loss", "review"]


def book_stressed_loss(
    book: PositionBook,
    margin: MarginArrays,
    k_sigma: float = 3.0,
    *,
    skip: NDArray[np.int64] | None = None,
    extra: Mapping[float, float] | None = None,
) -> int:
    """Bad debt of the whole book if every asset moves ``k_sigma`` together, worst direction.

    ``margin.sigma`` is each asset's multiplier-scaled horizon sigma; close-out costs are
    ignored (the history quantile covers them). Buckets at the indices ``skip`` are left out
    of the vectorised perpetual valuation and their bad debt per direction (``+1.0`` up,
    ``-1.0`` down, USD) comes in ``extra`` instead: the engine values its option holders
    there, whose options the perpetual book does not see.
    """
    n, nb = book.n_rows, len(book.bucket_ids)
    if (n == 0 or nb == 0) and not extra:
        return 0
    sigma = margin.sigma
    keep = np.ones(nb, dtype=bool)
    if skip is not None:
        keep[skip] = False
    worst = 0.0
    for direction in (1.0, -1.0):
        shocked = margin.price * np.maximum(0.0, 1.0 + direction * k_sigma * sigma)
        pnl = book.qty[:n] * shocked[book.row_asset[:n]] - book.cost[:n]
        equity = book.balance[:nb] + np.bincount(book.row_bucket[:n], weights=pnl, minlength=nb)
        total = float(np.clip(-equity[keep], 0.0, None).sum())
        worst = max(worst, total + (extra or {}).get(direction, 0.0))
    return int(np.ceil(worst * MICRO))
