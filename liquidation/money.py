"""Fixed-point money, quantity and price arithmetic.

Money never touches a float on its way into a balance. The units are:

* money: integer micro-USD (``MICRO`` = 10**6 units per USD);
* quantity: integer lots of 1e-8 of the base asset (``QTY_SCALE`` = 10**8 lots per unit);
* price: integer micro-USD per whole base unit.

So the value of ``q`` lots at price ``p`` is ``q * p / QTY_SCALE`` micro-USD, truncated toward
zero (:func:`value`). Rates (fees, margin fractions, funding) are floats from configuration and
snapshots; applying one to money rounds in the venue's favour where the result is a charge
(:func:`charge`) and toward zero where it is a transfer (:func:`apply_rate_trunc`). Each rounded
amount is what is booked, so the ledger stays exact to the unit.

Inputs are bounded (:data:`MAX_PRICE`, :data:`MAX_LOTS`, :data:`MAX_AMOUNT`, :data:`MAX_TS_MS`)
so every derived amount stays a modest Python int and every value mirrored into the float64 /
int64 arrays of the scan stays representable. A notional ``lots * price`` can exceed int64
(one BTC is 1e8 lots; 1e8 x 1e11 micro-USD = 1e19): it is only ever formed as a Python int,
never in a numpy integer array.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Final

MICRO: Final[int] = 10**6
QTY_SCALE: Final[int] = 10**8
#: Largest accepted price: 1e9 USD per unit, in micro-USD.
MAX_PRICE: Final[int] = 10**15
#: Largest quantity of one order or position: 1e10 units, in lots.
MAX_LOTS: Final[int] = 10**18
#: Largest single amount of money (a deposit, a withdrawal): 1e12 USD, in micro-USD.
MAX_AMOUNT: Final[int] = 10**18
#: Latest accepted engine time: 2200-01-01T00:00:00Z in epoch ms (int64 holds it with room).
MAX_TS_MS: Final[int] = 7_258_118_400_000


def usd(amount: str | int | Decimal) -> int:
    """Convert a USD amount to integer micro-USD (half-even rounding below 1e-6).

    Parameters
    ----------
    amount : str, int or Decimal
        A decimal amount of USD. Floats are refused: write ``"12.5"`` not ``12.5``.

    Returns
    -------
    int
        Micro-USD.

    Examples
    --------
    >>> usd("1.25")
    1250000
    """
    return _scaled(amount, MICRO, "USD amount")


def qty(amount: str | int | Decimal) -> int:
    """Convert a base-asset quantity to integer lots of 1e-8 (half-even rounding)."""
    return _scaled(amount, QTY_SCALE, "quantity")


def price(amount: str | int | Decimal) -> int:
    """Convert a USD price per base unit to integer micro-USD per unit."""
    return _scaled(amount, MICRO, "price")


def to_usd(micro: int) -> Decimal:
    """Exact Decimal USD of a micro-USD integer (for display and reports)."""
    return Decimal(micro) / MICRO


def div_trunc(numerator: int, denominator: int) -> int:
    """Integer division truncated toward zero (Python's ``//`` floors)."""
    if denominator == 0:
        raise ZeroDivisionError("div_trunc by zero")
    result = abs(numerator) // abs(denominator)
    return result if (numerator >= 0) == (denominator > 0) else -result


def value(lots: int, price_micro: int) -> int:
    """Signed value in micro-USD of ``lots`` at ``price_micro``, truncated toward zero."""
    return div_trunc(lots * price_micro, QTY_SCALE)


def charge(amount: int, rate: float) -> int:
    """A charge of ``rate`` on a non-negative ``amount``, rounded up to the unit.

    Rounding up keeps margin requirements, fees and penalties conservative for the venue.
    """
    if amount < 0 or rate < 0:
        raise ValueError(f"charge needs amount >= 0 and rate >= 0, got {amount}, {rate}")
    return math.ceil(amount * rate)


def apply_rate_trunc(amount: int, rate: float) -> int:
    """``amount * rate`` truncated toward zero (signed transfers such as funding)."""
    return int(amount * rate)


def split_pro_rata(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` units over non-negative integer ``weights`` exactly.

    Largest-remainder method; ties go to the lower index, so the split is deterministic and
    the parts always sum to ``total``.
    """
    if total < 0:
        raise ValueError(f"split_pro_rata needs total >= 0, got {total}")
    weight_sum = sum(weights)
    if weight_sum <= 0:
        raise ValueError("split_pro_rata needs a positive weight sum")
    if any(w < 0 for w in weights):
        raise ValueError("split_pro_rata needs non-negative weights")
    base = [total * w // weight_sum for w in weights]
    remainders = [total * w % weight_sum for w in weights]
    left = total - sum(base)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:left]:
        base[i] += 1
    return base


def _scaled(amount: str | int | Decimal, scale: int, what: str) -> int:
    if isinstance(amount, float):
        raise TypeError(f"{what} must be str, int or Decimal, not float ({amount!r})")
    try:
        dec = Decimal(amount) if not isinstance(amount, Decimal) else amount
    except InvalidOperation as exc:
        raise ValueError(f"{what} {amount!r} is not a decimal number") from exc
    if not dec.is_finite():
        raise ValueError(f"{what} {amount!r} is not finite")
    try:
        return int((dec * scale).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    except InvalidOperation as exc:  # more digits than the context holds: far out of range
        raise ValueError(f"{what} {str(amount)[:40]!r} is out of range") from exc
