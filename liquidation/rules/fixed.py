"""Exact fixed-point arithmetic on int64 arrays: the vector twins of :mod:`liquidation.money`.

The scalar forms are :func:`liquidation.money.value` and :func:`liquidation.money.charge`
(Python ints, no overflow). A quantity in lots (1e8 per unit) times a price in micro-USD
overflows int64 for one unit above about 92 000 USD, so :func:`value_v` never forms that
product: it splits the lots into whole units, 1e4-lot and 1-lot digits, multiplies each by the
price and recombines the quotient exactly.

Bounds (:func:`check_bounds_v` enforces them): ``0 < price <= MAX_PRICE_V`` (1e14 micro-USD,
1e8 USD per unit) and ``|value| <= MAX_NOTIONAL_V`` (2**53 micro-USD, about 9.0e9 USD). Then
every partial product is below ``1e4 * MAX_PRICE_V = 1e18 < 2**63``, the result fits, and
each amount converts to float64 exactly, so a float rate applied to it rounds exactly as the
scalar form does (:func:`charge_v`).
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from liquidation.money import QTY_SCALE

#: Largest price the vector forms accept: 1e8 USD per unit, in micro-USD.
MAX_PRICE_V: Final[int] = 10**14
#: Largest absolute value (a notional, a balance) the vector forms accept, micro-USD.
MAX_NOTIONAL_V: Final[int] = 2**53
_DIGIT: Final[int] = 10**4

Ints = NDArray[np.int64]
Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]


def value_v(lots: Ints, price: Ints) -> Ints:
    """Vector :func:`liquidation.money.value`: ``trunc(lots * price / 1e8)`` without overflow.

    ``|lots| = units * 1e8 + hi * 1e4 + lo`` with ``hi, lo < 1e4``; ``hi * price =
    a1 * 1e4 + a0``; then ``|lots| * price / 1e8 = units * price + a1 + (a0 * 1e4 + lo *
    price) / 1e8``, each term below 1e18 within the bounds.
    """
    lots = np.asarray(lots, dtype=np.int64)
    price = np.asarray(price, dtype=np.int64)
    size = np.abs(lots)
    units, rest = np.divmod(size, QTY_SCALE)
    hi, lo = np.divmod(rest, _DIGIT)
    a1, a0 = np.divmod(hi * price, _DIGIT)
    magnitude = units * price + a1 + (a0 * _DIGIT + lo * price) // QTY_SCALE
    return np.where(lots < 0, -magnitude, magnitude)


def charge_v(amount: Ints, rate: Floats | float) -> Ints:
    """Vector :func:`liquidation.money.charge`: ``ceil(amount * rate)`` for ``amount >= 0``."""
    return np.ceil(np.asarray(amount, dtype=np.int64) * np.asarray(rate)).astype(np.int64)


def check_bounds_v(price: Ints, notional: Ints, where: str) -> None:
    """Raise ``ValueError`` if a price or an absolute value leaves the vector forms' bounds."""
    price = np.asarray(price)
    if price.size and (price.min() <= 0 or price.max() > MAX_PRICE_V):
        raise ValueError(
            f"{where}: price outside (0, {MAX_PRICE_V}] micro-USD per unit (the int64 bound "
            "of liquidation.rules.fixed)"
        )
    notional = np.asarray(notional)
    if notional.size and np.abs(notional).max() > MAX_NOTIONAL_V:
        raise ValueError(
            f"{where}: an amount exceeds {MAX_NOTIONAL_V} micro-USD (the exact-float bound of "
            "liquidation.rules.fixed)"
        )
