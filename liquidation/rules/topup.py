"""A defending trader's top-up, the replay's model of a trader who adds margin.

At a bar close, a trader with top-ups left whose ``equity < trigger_health * MM`` deposits
enough to restore the initial margin, at most ``max_fraction`` of the first deposit:
``amount = min(IM - equity, trunc(max_fraction * first_deposit))``, made only if positive.
"""

from __future__ import annotations

import numpy as np

from liquidation.rules.fixed import Bools, Ints


def wants_topup(equity: int, maintenance: int, topups_left: int, trigger_health: float) -> bool:
    """True if the trader tops up now.

    Contract (PEP 316; CrossHair and tests/verification check it):

    post: not __return__ or (maintenance > 0 and equity < trigger_health * maintenance)
    """
    return topups_left > 0 and maintenance > 0 and equity < trigger_health * maintenance


def wants_topup_v(
    equity: Ints, maintenance: Ints, topups_left: Ints, trigger_health: float
) -> Bools:
    """Vector :func:`wants_topup` (boolean array)."""
    return (topups_left > 0) & (maintenance > 0) & (equity < trigger_health * maintenance)


def topup_amount(equity: int, initial: int, first_deposit: int, max_fraction: float) -> int:
    """Deposit of one top-up, micro-USD (0: none).

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: first_deposit >= 0 and 0 <= max_fraction < float("inf")
    post: 0 <= __return__ <= max(0, initial - equity)
    """
    return max(0, min(initial - equity, int(max_fraction * first_deposit)))


def topup_amount_v(equity: Ints, initial: Ints, first_deposit: Ints, max_fraction: float) -> Ints:
    """Vector :func:`topup_amount`."""
    cap = (max_fraction * first_deposit).astype(np.int64)
    return np.maximum(0, np.minimum(initial - equity, cap))
