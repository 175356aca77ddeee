"""The backstop vault's share of a bankruptcy (Hyperliquid's HLP).

When the market close-out of a bucket would leave more bad debt than the insurance fund may
pay, every position is transferred at the mark with a price concession covering the deficit
beyond the fund (the bankruptcy price). The vault takes the largest fraction of every
position its own margin admits, found first at the whole, else by bisection to a resolution
of ``1e-3``, and pays ``trunc(deficit * fraction)`` of the concession. What it cannot take goes
to ADL (:mod:`liquidation.rules.adl`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from liquidation.rules.partial import FRACTION_SCALE

#: Bisection stops when the admitted and refused fractions are this many millionths apart.
RESOLUTION_PPM: Final[int] = 1_000


def backstop_share(deficit: int, ppm: int) -> int:
    """Concession the vault pays for taking ``ppm`` millionths of every position.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: deficit >= 0 and 0 <= ppm <= FRACTION_SCALE
    post: 0 <= __return__ <= deficit
    """
    return deficit * ppm // FRACTION_SCALE


def backstop_ppm(admits: Callable[[int], bool]) -> int:
    """Largest fraction (millionths) the vault admits; 0 if it admits none.

    ``admits(ppm)`` says whether the vault's margin admits taking ``ppm`` millionths of every
    position with its share of the concession. The whole is tried first; otherwise the
    fraction is bisected between 0 (admitted by convention) and the whole.

    Contract (PEP 316; CrossHair and tests/verification check it):

    post: 0 <= __return__ <= FRACTION_SCALE
    """
    if admits(FRACTION_SCALE):
        return FRACTION_SCALE
    low, high = 0, FRACTION_SCALE
    while high - low > RESOLUTION_PPM:
        middle = (low + high) // 2
        if admits(middle):
            low = middle
        else:
            high = middle
    return low if low and admits(low) else 0


def market_closeout_fits(market_debt: int, available: int) -> bool:
    """A full close-out goes to the market only if its bad debt fits in what the fund may pay;
    otherwise the positions go to the backstop (then ADL) at the bankruptcy price.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: available >= 0
    post: __return__ == (market_debt <= available)
    """
    return market_debt <= available


def bankruptcy_deficit(equity: int, available: int) -> tuple[int, int]:
    """``(bad_debt, deficit)``: the shortfall at the mark, and the part beyond the fund's
    share, which the backstop's (then ADL's) price concession covers.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: available >= 0
    post: __return__[0] == max(0, -equity) and 0 <= __return__[1] <= __return__[0]
    post: __return__[1] == 0 or __return__[0] - __return__[1] == available
    """
    bad_debt = max(0, -equity)
    return bad_debt, max(0, bad_debt - available)


def shortfall_beyond_fund(balance: int, available: int) -> int:
    """What the settled transfer leaves the bucket short beyond the fund's share (fills split
    into segments truncate separately, so the planned concession can miss by a few units).

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: available >= 0
    post: __return__ >= 0 and (__return__ == 0 or -balance - __return__ == available)
    """
    return max(0, -balance - available)
