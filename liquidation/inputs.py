"""Validation of command inputs: integer money and quantities, finite bounded rates, times.

The engine calls these at the boundary, before anything is planned, so a bad argument never
reaches an event. Each error names the argument and its allowed range.
"""

from __future__ import annotations

import math
from typing import Any

from liquidation.errors import InputError
from liquidation.money import MAX_AMOUNT, MAX_LOTS, MAX_PRICE, MAX_TS_MS


def integer(value: Any, what: str, *, low: int, high: int) -> int:
    """``value`` if it is an ``int`` (not a bool) in ``[low, high]``.

    Raises
    ------
    InputError
        For a float, NaN, bool, any other type, or a value out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(
            f"{what} must be an int, got {type(value).__name__} {value!r}; money is integer "
            "micro-USD and quantity integer lots (see liquidation.money)"
        )
    if not low <= value <= high:
        raise InputError(f"{what} = {value} is outside [{low}, {high}]")
    return value


def timestamp(ts: Any) -> int:
    """An engine time in epoch ms, in ``[0, MAX_TS_MS]`` (year 2200)."""
    return integer(ts, "ts (epoch ms)", low=0, high=MAX_TS_MS)


def amount(value: Any, what: str) -> int:
    """A strictly positive amount of micro-USD, at most :data:`MAX_AMOUNT`."""
    return integer(value, what, low=1, high=MAX_AMOUNT)


def price(value: Any, what: str) -> int:
    """A strictly positive price in micro-USD per unit, at most :data:`MAX_PRICE`."""
    return integer(value, what, low=1, high=MAX_PRICE)


def lots(value: Any, what: str) -> int:
    """A non-zero signed quantity in lots, at most :data:`MAX_LOTS` in absolute value."""
    checked = integer(value, what, low=-MAX_LOTS, high=MAX_LOTS)
    if checked == 0:
        raise InputError(f"{what} must be non-zero")
    return checked


def rate(value: Any, what: str, *, bound: float) -> float:
    """A finite rate with ``|value| <= bound``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{what} must be a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number) or abs(number) > bound:
        raise InputError(f"{what} = {value!r} must be finite and within +/-{bound}")
    return number


def name(value: Any, what: str) -> str:
    """A non-empty identifier free of ``':'`` (account, keeper, feed and key names)."""
    if not isinstance(value, str) or not value or ":" in value:
        raise InputError(f"{what} must be a non-empty string free of ':', got {value!r}")
    return value
