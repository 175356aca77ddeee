"""The liquidation penalty, its keeper / fund split, and the insurance fund's cap per event.

* The penalty is ``ceil(closed_notional * penalty_rate)``, paid from what the bucket has left
  after the close-out fills only: ``min(penalty, max(0, equity_left))``. A bankrupt bucket
  pays none.
* The fund's share is ``trunc(penalty * fund_share)`` (the governed share of
  :mod:`liquidation.insurance`); the keeper gets the rest.
* The fund pays at most ``min(fund, floor(insurance_cap_per_event_usd * 1e6))`` for one
  liquidation event, in waterfall order over the debtors of that event.
"""

from __future__ import annotations

import math

import numpy as np

from liquidation.money import MAX_AMOUNT, MICRO, charge  # noqa: F401 (MAX_AMOUNT: the contract)
from liquidation.rules.fixed import Floats, Ints, charge_v


def penalty_due(closed_notional: int, equity_left: int, penalty_rate: float) -> int:
    """Penalty on ``closed_notional``, capped by the equity left (never negative).

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: closed_notional >= 0 and 0 <= penalty_rate < math.inf
    post: 0 <= __return__ <= max(0, equity_left)
    """
    return min(charge(closed_notional, penalty_rate), max(0, equity_left))


def penalty_due_v(closed_notional: Ints, equity_left: Ints, penalty_rate: float) -> Ints:
    """Vector :func:`penalty_due`."""
    return np.minimum(charge_v(closed_notional, penalty_rate), np.maximum(0, equity_left))


def split_penalty(penalty: int, fund_share: float) -> tuple[int, int]:
    """``(keeper_amount, fund_amount)`` of a penalty; they sum to it exactly.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: 0 <= penalty <= MAX_AMOUNT and 0 <= fund_share <= 1
    post: __return__[0] + __return__[1] == penalty
    post: __return__[0] >= 0 and __return__[1] >= 0
    """
    # Above 2**53 the float product can round up past the penalty (z3's counterexample:
    # split_penalty(2**54 - 1, 1.0) gave the keeper -1); below it the min changes nothing.
    fund_amount = min(penalty, int(penalty * fund_share))
    return penalty - fund_amount, fund_amount


def split_penalty_v(penalty: Ints, fund_share: Floats | float) -> tuple[Ints, Ints]:
    """Vector :func:`split_penalty` (the same cap of the fund's part at the penalty)."""
    fund_amount = np.minimum(penalty, (penalty * np.asarray(fund_share)).astype(np.int64))
    return penalty - fund_amount, fund_amount


def fund_available(fund: int, cap_per_event_usd: float) -> int:
    """Most the fund may pay for one liquidation event, micro-USD.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: fund >= 0 and 0 <= cap_per_event_usd < math.inf
    post: 0 <= __return__ <= fund and __return__ <= cap_per_event_usd * MICRO
    """
    cap = cap_per_event_usd * MICRO
    # A finite cap above ~1.8e302 USD overflows to inf in micro-USD (found by CrossHair):
    # any cap at or above the fund leaves the whole fund available, with no float to int.
    return fund if cap >= fund else math.floor(cap)


def fund_cover(debt: int, available_left: int) -> int:
    """What the fund pays of ``debt`` with ``available_left`` of its cap for this event.

    Waterfall order: what the fund does not pay (``debt - cover``, which the engine socializes)
    is positive only if the fund paid all it may for the event (the last post line).

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: available_left >= 0
    post: 0 <= __return__ <= available_left and __return__ <= max(0, debt)
    post: __return__ == max(0, debt) or __return__ == available_left
    """
    return max(0, min(debt, available_left))
