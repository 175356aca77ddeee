"""Insurance-fund governance: the bounded rule on coverage = fund / stressed loss.

Below the target coverage the fund's share of liquidation penalties and a fee add-on step
up; comfortably above it they step down; both stay inside configured bounds. The engine
(:meth:`liquidation.engine.Engine.review_insurance`) and the replay
(:func:`liquidation.simulate.simulate`, :attr:`~liquidation.simulate.ReplayConfig.
review_every_bars`) both apply :func:`review`; the historical part of the stressed loss is
:func:`historical_stressed_loss` of the recorded bad-debt events in both.
"""

from __future__ import annotations

import math  # noqa: F401 (the contracts)
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from liquidation.money import MAX_AMOUNT  # noqa: F401 (the contract)


class GovernanceTerms(Protocol):
    """What the rule reads (see :class:`liquidation.config.InsuranceConfig`)."""

    @property
    def fund_share_min(self) -> float: ...
    @property
    def fund_share_max(self) -> float: ...
    @property
    def share_step(self) -> float: ...
    @property
    def fee_addon_max_bps(self) -> float: ...
    @property
    def fee_addon_step_bps(self) -> float: ...
    @property
    def target_coverage(self) -> float: ...
    @property
    def comfort_coverage(self) -> float: ...


@dataclass(frozen=True)
class GovernanceDecision:
    """Outcome of one review. ``coverage`` is None when the stressed loss is zero."""

    fund_share: float
    fee_addon_bps: float
    coverage: float | None
    stressed_loss: int


def historical_stressed_loss(bad_debts: Sequence[int], quantile: float) -> int:
    """High quantile of recorded bad-debt events (micro-USD); 0 without history.

    Contract (PEP 316; CrossHair and tests/verification check it). Below 2**53 micro-USD every
    event is exact as a float, so the interpolated quantile, rounded up, stays within them:

    pre: 0 <= quantile <= 1 and all(0 <= d <= 2**53 for d in bad_debts)
    post: __return__ == 0 if len(bad_debts) == 0 else min(bad_debts) <= __return__ <= max(bad_debts)
    """
    if len(bad_debts) == 0:
        return 0
    return int(np.ceil(np.quantile(np.asarray(bad_debts, dtype=np.float64), quantile)))


def review(
    fund: int,
    stressed_loss: int,
    fund_share: float,
    fee_addon_bps: float,
    config: GovernanceTerms,
) -> GovernanceDecision:
    """Apply the bounded rule once.

    Parameters
    ----------
    fund, stressed_loss : int
        Fund balance and stressed loss estimate, micro-USD.
    fund_share, fee_addon_bps : float
        Current parameters.
    config : GovernanceTerms
        Bounds, steps and coverage thresholds (an :class:`~liquidation.config.InsuranceConfig`).

    Returns
    -------
    GovernanceDecision
        New parameters, each clipped to its bounds.

    Contract (PEP 316; CrossHair and tests/verification check it): the parameters stay in
    their bounds; below the target coverage neither the fund's share nor the add-on falls;
    above the comfort coverage (or with no stressed loss) neither rises; between the two they
    only come back into their bounds.

    pre: 0 <= fund <= MAX_AMOUNT and stressed_loss >= 0
    pre: 0 <= config.fund_share_min <= config.fund_share_max <= 1 and config.share_step > 0
    pre: 0 <= config.fee_addon_max_bps < math.inf and 0 < config.fee_addon_step_bps < math.inf
    pre: 0 < config.target_coverage < config.comfort_coverage
    pre: -math.inf < fund_share < math.inf and -math.inf < fee_addon_bps < math.inf
    post: config.fund_share_min <= __return__.fund_share <= config.fund_share_max
    post: 0 <= __return__.fee_addon_bps <= config.fee_addon_max_bps
    post: __return__.stressed_loss == stressed_loss and (__return__.coverage is None) == (stressed_loss == 0)
    post: not (stressed_loss > 0 and fund / stressed_loss < config.target_coverage) or (__return__.fund_share >= min(fund_share, config.fund_share_max) and __return__.fee_addon_bps >= min(fee_addon_bps, config.fee_addon_max_bps))
    post: not (stressed_loss == 0 or fund / stressed_loss > config.comfort_coverage) or (__return__.fund_share <= max(fund_share, config.fund_share_min) and __return__.fee_addon_bps <= max(fee_addon_bps, 0.0))
    post: not (stressed_loss > 0 and config.target_coverage <= fund / stressed_loss <= config.comfort_coverage) or (__return__.fund_share == min(config.fund_share_max, max(config.fund_share_min, fund_share)) and __return__.fee_addon_bps == min(config.fee_addon_max_bps, max(0.0, fee_addon_bps)))
    """  # noqa: E501
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
