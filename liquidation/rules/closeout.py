"""Close-out cost: the slippage model and the execution price of a liquidation fill.

``rate(N) = min(max_slippage, spread / 2 + slippage * sqrt(N / standard_size)) / 1e4`` (the
square-root law, in bps of notional; the snapshot gives the spread and the slippage of its
standard size). Closing ``q`` lots at the oracle ``p`` fills at ``p - ceil(p * rate)`` for a
long, ``p + ceil(p * rate)`` for a short: the slippage per unit is rounded against the
liquidated trader.
"""

from __future__ import annotations

import math

import numpy as np

from liquidation.money import MAX_PRICE, charge  # noqa: F401 (MAX_PRICE: the contract)
from liquidation.rules.fixed import Floats, Ints, charge_v


def slippage_rate(
    notional_usd: float,
    spread_bps: float,
    slippage_bps: float,
    standard_size_usd: float,
    max_slippage_bps: float,
) -> float:
    """Close-out cost as a fraction of notional: half spread plus square-root impact.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: 0 <= notional_usd < math.inf and 0 <= spread_bps < math.inf
    pre: 0 <= slippage_bps < math.inf
    pre: 0 < standard_size_usd < math.inf and 0 <= max_slippage_bps < math.inf
    post: 0 <= __return__ <= max_slippage_bps / 10_000.0
    """
    impact = slippage_bps * math.sqrt(max(notional_usd, 0.0) / standard_size_usd)
    return min(max_slippage_bps, spread_bps / 2.0 + impact) / 10_000.0


def slippage_rate_v(
    notional_usd: Floats,
    spread_bps: float,
    slippage_bps: float,
    standard_size_usd: Floats | float,
    max_slippage_bps: float,
) -> Floats:
    """Vector :func:`slippage_rate` (the standard size may differ per element)."""
    impact = slippage_bps * np.sqrt(np.maximum(notional_usd, 0.0) / standard_size_usd)
    return np.minimum(max_slippage_bps, spread_bps / 2.0 + impact) / 10_000.0


def close_price(oracle: int, lots_closed: int, slip_rate: float) -> int:
    """Execution price of closing ``lots_closed`` (sign of the closed position) with slippage.

    Selling a long fills below the oracle, buying back a short above; the slippage per unit
    is rounded up (against the liquidated trader).

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: 0 <= oracle <= MAX_PRICE and 0 <= slip_rate <= 1
    post: lots_closed <= 0 or 0 <= __return__ <= oracle
    post: lots_closed > 0 or __return__ >= oracle
    """
    slip = charge(oracle, slip_rate)
    return max(oracle - slip, 0) if lots_closed > 0 else oracle + slip


def close_price_v(oracle: Ints, lots_closed: Ints, slip_rate: Floats) -> Ints:
    """Vector :func:`close_price`."""
    slip = charge_v(oracle, slip_rate)
    return np.where(np.asarray(lots_closed) > 0, np.maximum(oracle - slip, 0), oracle + slip)
