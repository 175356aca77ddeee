"""The engine's input boundary, for CrossHair (``asserts`` mode): what reaches the oracle guard.

The guard's rules are typed on integer micro-USD (:mod:`liquidation.rules.oracle_guard`); the
type is the defence against a NaN or float price (the D5 bypass: NaN fails every comparison,
so a range check alone lets it through). This claims that whatever float reaches the engine's
price check, only an int in range comes out.
"""

from __future__ import annotations

from liquidation import inputs
from liquidation.errors import InputError
from liquidation.money import MAX_PRICE


def only_integer_prices_pass(value: float) -> None:
    """Any float given as a price is refused, NaN and integral floats included."""
    assert isinstance(value, float)
    try:
        checked = inputs.price(value, "price")
    except InputError:
        return
    assert isinstance(checked, int) and 0 < checked <= MAX_PRICE
