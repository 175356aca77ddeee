"""Insurance-fund governance: coverage monitor and a bounded adjustment rule.

``coverage = fund / stressed loss``. The stressed loss is the larger of a high quantile of the
fund's recorded bad-debt events and the bad debt the current book would produce under a joint
``k``-sigma move of every asset (both directions). Below the target coverage the fund's share
of liquidation penalties and a fee add-on step up; comfortably above it they step down; both
stay inside configured bounds. The engine records every review as an ``insurance`` event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from liquidation.config import InsuranceConfig
from liquidation.money import MICRO
from liquidation.scan import MarginArrays, PositionBook


@dataclass(frozen=True)
class GovernanceDecision:
    """Outcome of one review. ``coverage`` is None when the stressed loss is zero."""

    fund_share: float
    fee_addon_bps: float
    coverage: float | None
    stressed_loss: int


def historical_stressed_loss(bad_debts: Sequence[int], quantile: float) -> int:
    """High quantile of recorded bad-debt events (micro-USD); 0 without history."""
    if len(bad_debts) == 0:
        return 0
    return int(np.ceil(np.quantile(np.asarray(bad_debts, dtype=np.float64), quantile)))


def book_stressed_loss(book: PositionBook, margin: MarginArrays, k_sigma: float = 3.0) -> int:
    """Bad debt of the whole book if every asset moves ``k_sigma`` together, worst direction.

    ``margin.sigma`` is each asset's multiplier-scaled horizon sigma; close-out costs are
    ignored (the history quantile covers them).
    """
    n, nb = book.n_rows, len(book.bucket_ids)
    if n == 0 or nb == 0:
        return 0
    sigma = margin.sigma
    worst = 0.0
    for direction in (1.0, -1.0):
        shocked = margin.price * np.maximum(0.0, 1.0 + direction * k_sigma * sigma)
        pnl = book.qty[:n] * shocked[book.row_asset[:n]] - book.cost[:n]
        equity = book.balance[:nb] + np.bincount(book.row_bucket[:n], weights=pnl, minlength=nb)
        worst = max(worst, float(np.clip(-equity, 0.0, None).sum()))
    return int(np.ceil(worst * MICRO))


def review(
    fund: int,
    stressed_loss: int,
    fund_share: float,
    fee_addon_bps: float,
    config: InsuranceConfig,
) -> GovernanceDecision:
    """Apply the bounded rule once.

    Parameters
    ----------
    fund, stressed_loss : int
        Fund balance and stressed loss estimate, micro-USD.
    fund_share, fee_addon_bps : float
        Current parameters.
    config : InsuranceConfig

    Returns
    -------
    GovernanceDecision
        New parameters, each clipped to its bounds.
    """
    coverage = fund / stressed_loss if stressed_loss > 0 else None
    share, addon = fund_share, fee_addon_bps
    if coverage is not None and coverage < config.target_coverage:
        share = min(config.fund_share_max, share + config.share_step)
        addon = min(config.fee_addon_max_bps, addon + config.fee_addon_step_bps)
    elif coverage is None or coverage > config.comfort_coverage:
        share = max(config.fund_share_min, share - config.share_step)
        addon = max(0.0, addon - config.fee_addon_step_bps)
    share = min(config.fund_share_max, max(config.fund_share_min, share))
    addon = min(config.fee_addon_max_bps, max(0.0, addon))
    return GovernanceDecision(share, addon, coverage, stressed_loss)
