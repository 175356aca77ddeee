"""Margin rules: size- and OI-scaled fractions, IM, MM, equity, health, the update rule.

Formulas (notional ``N`` in USD, multiplier ``m``):

* size-scaled fraction (Drift v2): ``f(N, m) = min(cap, max(base_imf * m, k * sqrt(N / N_ref)))``
* open-interest scaling of the initial fraction only (dYdX v4): linear from ``f`` at
  ``oi_lower`` to ``max(f, oi_imf_max)`` at ``oi_upper`` of long open interest;
* ``IM = ceil(N * f_oi(N, m_target))`` and ``MM = ceil(N * f(N, m_mm) * maintenance_fraction)``
  where ``m_mm`` is the ramped multiplier (:mod:`liquidation.rules.ramp`);
* ``equity = balance + value(lots, mark) - cost``; a bucket is liquidatable when
  ``equity < MM`` and its health is ``equity / MM``.

Scalar forms take Python ints (micro-USD) and floats; the ``_v`` forms take int64 / float64
arrays within the bounds of :mod:`liquidation.rules.fixed` and agree bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from liquidation.money import MICRO, charge, value
from liquidation.rules.fixed import Floats, Ints, charge_v, value_v
from liquidation.rules.terms import MarginTerms


@dataclass(frozen=True)
class MarginState:
    """A bucket's equity and requirements at one instant, micro-USD."""

    equity: int
    initial: int
    maintenance: int


def may_update(before: MarginState, after: MarginState) -> bool:
    """The dYdX v4 rule for a change to a bucket (a trade leg, a margin-mode switch).

    Allowed if the bucket meets its initial margin afterwards; otherwise only if it moves
    to a less-or-equally risky state: maintenance does not rise and ``equity / MM`` does
    not fall (compared as ``equity_after * MM_before >= equity_before * MM_after`` to stay
    in integers). With no maintenance on either side only an equity gain is allowed.
    Removing one leg of a portfolio-margined hedge raises maintenance, so it must meet IM.

    Contract (PEP 316; CrossHair and tests/verification check it):

    post: not __return__ or after.equity >= after.initial or (after.maintenance <= before.maintenance and after.equity * before.maintenance >= before.equity * after.maintenance)
    """  # noqa: E501
    if after.equity >= after.initial:
        return True
    if after.maintenance > before.maintenance:
        return False
    if after.maintenance == 0 or before.maintenance == 0:
        return after.maintenance == before.maintenance == 0 and after.equity > before.equity
    return after.equity * before.maintenance >= before.equity * after.maintenance


# -- fractions --------------------------------------------------------------------------------
def position_fraction(notional_usd: float, multiplier: float, asset: MarginTerms) -> float:
    """Size-scaled margin fraction at ``multiplier`` (before maintenance and OI scaling).

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: multiplier >= 0 and notional_usd >= 0
    post: __return__ <= asset.imf_cap
    post: __return__ >= min(asset.imf_cap, asset.base_imf * multiplier)
    """
    base = asset.base_imf * multiplier
    size = asset.size_imf_factor * math.sqrt(max(notional_usd, 0.0) / asset.size_reference_usd)
    return min(asset.imf_cap, max(base, size))


def position_fraction_v(notional_usd: Floats, multiplier: Floats, asset: MarginTerms) -> Floats:
    """Vector :func:`position_fraction`."""
    base = asset.base_imf * np.asarray(multiplier, dtype=np.float64)
    size = asset.size_imf_factor * np.sqrt(np.maximum(notional_usd, 0.0) / asset.size_reference_usd)
    return np.minimum(asset.imf_cap, np.maximum(base, size))


def oi_scaled_fraction(fraction: float, long_oi_usd: float, asset: MarginTerms) -> float:
    """Raise ``fraction`` linearly with long open interest between the asset's OI caps.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: 0 <= fraction <= asset.imf_cap
    post: fraction <= __return__ <= asset.imf_cap
    """
    top = max(fraction, asset.oi_imf_max)
    span = asset.oi_upper_usd - asset.oi_lower_usd
    weight = min(1.0, max(0.0, (long_oi_usd - asset.oi_lower_usd) / span))
    return min(asset.imf_cap, fraction + (top - fraction) * weight)


def oi_scaled_fraction_v(fraction: Floats, long_oi_usd: float, asset: MarginTerms) -> Floats:
    """Vector :func:`oi_scaled_fraction` (one open interest for the whole array)."""
    top = np.maximum(fraction, asset.oi_imf_max)
    span = asset.oi_upper_usd - asset.oi_lower_usd
    weight = min(1.0, max(0.0, (long_oi_usd - asset.oi_lower_usd) / span))
    return np.minimum(asset.imf_cap, fraction + (top - fraction) * weight)


# -- requirements -----------------------------------------------------------------------------
def initial_requirement(
    notional: int, multiplier: float, long_oi_usd: float, asset: MarginTerms
) -> int:
    """Initial margin in micro-USD of one position of absolute notional ``notional``.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: notional >= 0 and multiplier >= 0
    post: __return__ >= 0
    post: asset.imf_cap > 1 or __return__ <= notional
    """
    fraction = position_fraction(notional / MICRO, multiplier, asset)
    return charge(notional, oi_scaled_fraction(fraction, long_oi_usd, asset))


def initial_requirement_v(
    notional: Ints, multiplier: Floats, long_oi_usd: float, asset: MarginTerms
) -> Ints:
    """Vector :func:`initial_requirement`."""
    fraction = position_fraction_v(np.asarray(notional) / MICRO, multiplier, asset)
    return charge_v(notional, oi_scaled_fraction_v(fraction, long_oi_usd, asset))


def maintenance_requirement(notional: int, multiplier: float, asset: MarginTerms) -> int:
    """Maintenance margin in micro-USD of one position of absolute notional ``notional``.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: notional >= 0 and multiplier >= 0
    post: __return__ >= 0
    post: __return__ <= initial_requirement(notional, multiplier, 0.0, asset) or asset.maintenance_fraction > 1
    """  # noqa: E501
    fraction = position_fraction(notional / MICRO, multiplier, asset)
    return charge(notional, fraction * asset.maintenance_fraction)


def maintenance_requirement_v(notional: Ints, multiplier: Floats, asset: MarginTerms) -> Ints:
    """Vector :func:`maintenance_requirement`."""
    fraction = position_fraction_v(np.asarray(notional) / MICRO, multiplier, asset)
    return charge_v(notional, fraction * asset.maintenance_fraction)


# -- equity and health ------------------------------------------------------------------------
def position_equity(balance: int, lots: int, cost: int, price: int) -> int:
    """Equity of a one-position bucket: ``balance + value(lots, price) - cost``.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: price > 0
    post: __return__ - balance + cost == value(lots, price)
    """
    return balance + value(lots, price) - cost


def position_equity_v(balance: Ints, lots: Ints, cost: Ints, price: Ints) -> Ints:
    """Vector :func:`position_equity`."""
    return balance + value_v(lots, price) - cost


def liquidatable(equity: int, maintenance: int) -> bool:
    """A bucket with positions is liquidatable when its equity is below maintenance.

    Contract (PEP 316; CrossHair and tests/verification check it):

    post: __return__ == (equity < maintenance)
    """
    return equity < maintenance


def health(equity: int, maintenance: int) -> float:
    """``equity / MM`` (``inf`` without maintenance): the keeper's order, lowest first.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: maintenance >= 0
    post: maintenance == 0 or max(abs(equity), maintenance) > 2**53 or (__return__ < 1.0) == liquidatable(equity, maintenance)
    """  # noqa: E501
    return equity / maintenance if maintenance > 0 else math.inf
