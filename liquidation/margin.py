"""Pure margin math: margin fractions, requirements, the multiplier ramp, slippage.

Formulas (notional ``N`` in USD, multiplier ``m``):

* size-scaled fraction (Drift v2): ``f(N, m) = min(cap, max(base_imf * m, k * sqrt(N / N_ref)))``
* open-interest scaling of the initial fraction only (dYdX v4): linear from ``f`` at
  ``oi_lower`` to ``max(f, oi_imf_max)`` at ``oi_upper`` of long open interest;
* ``IM = ceil(N * f_oi(N, m_target))`` and ``MM = ceil(N * f(N, m_mm) * maintenance_fraction)``
  where ``m_mm`` is the ramped multiplier for positions older than the last tightening.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from liquidation.config import AssetConfig
from liquidation.money import MICRO, charge


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
    """
    if after.equity >= after.initial:
        return True
    if after.maintenance > before.maintenance:
        return False
    if after.maintenance == 0 or before.maintenance == 0:
        return after.maintenance == before.maintenance == 0 and after.equity > before.equity
    return after.equity * before.maintenance >= before.equity * after.maintenance


def position_fraction(notional_usd: float, multiplier: float, asset: AssetConfig) -> float:
    """Size-scaled margin fraction at ``multiplier`` (before maintenance and OI scaling)."""
    base = asset.base_imf * multiplier
    size = asset.size_imf_factor * math.sqrt(max(notional_usd, 0.0) / asset.size_reference_usd)
    return min(asset.imf_cap, max(base, size))


def oi_scaled_fraction(fraction: float, long_oi_usd: float, asset: AssetConfig) -> float:
    """Raise ``fraction`` linearly with long open interest between the asset's OI caps."""
    top = max(fraction, asset.oi_imf_max)
    span = asset.oi_upper_usd - asset.oi_lower_usd
    weight = min(1.0, max(0.0, (long_oi_usd - asset.oi_lower_usd) / span))
    return min(asset.imf_cap, fraction + (top - fraction) * weight)


def initial_requirement(
    notional: int, multiplier: float, long_oi_usd: float, asset: AssetConfig
) -> int:
    """Initial margin in micro-USD of one position of absolute notional ``notional``."""
    fraction = position_fraction(notional / MICRO, multiplier, asset)
    return charge(notional, oi_scaled_fraction(fraction, long_oi_usd, asset))


def maintenance_requirement(notional: int, multiplier: float, asset: AssetConfig) -> int:
    """Maintenance margin in micro-USD of one position of absolute notional ``notional``."""
    fraction = position_fraction(notional / MICRO, multiplier, asset)
    return charge(notional, fraction * asset.maintenance_fraction)


def ramped_multiplier(
    start_value: float, target: float, start_ms: int, ramp_ms: int, ts_ms: int
) -> float:
    """Multiplier applied to existing positions' maintenance at ``ts_ms``.

    A relaxation applies at once. A tightening moves linearly from ``start_value`` (the value
    in force when the target changed at ``start_ms``) to ``target`` over ``ramp_ms``. So the
    result never exceeds ``target`` and equals it from ``start_ms + ramp_ms`` on.
    """
    if target <= start_value or ramp_ms == 0:
        return target
    progress = min(1.0, max(0.0, (ts_ms - start_ms) / ramp_ms))
    if progress >= 1.0:
        return target
    return min(target, start_value + (target - start_value) * progress)


def slippage_rate(
    notional_usd: float,
    spread_bps: float,
    slippage_bps: float,
    standard_size_usd: float,
    max_slippage_bps: float,
) -> float:
    """Close-out cost as a fraction of notional: half spread plus square-root impact.

    ``slippage_bps`` is the snapshot's cost of the standard size; impact scales with
    ``sqrt(N / standard_size)`` (the square-root law), capped at ``max_slippage_bps``.
    """
    impact = slippage_bps * math.sqrt(max(notional_usd, 0.0) / standard_size_usd)
    return min(max_slippage_bps, spread_bps / 2.0 + impact) / 10_000.0
