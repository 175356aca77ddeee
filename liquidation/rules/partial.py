"""Which waterfall step a liquidatable bucket gets, and how large a partial step is.

* **Emergency**: ``equity < emergency_health * MM``, or closing everything at its slippage
  would leave no equity. An emergency skips the rate limit and closes the bucket out in full.
* **Rate limit**: any other step within ``cooldown_ms`` of the bucket's previous step waits.
* **Partial eligibility**: not an emergency and gross notional at least
  ``min_partial_notional_usd``; smaller buckets are closed out in full.
* **Partial size**: every position is reduced by the same fraction ``f``, the smallest that
  brings ``equity >= (1 + health_buffer) * MM`` after costs, where the cost of closing a
  position is bounded by its full-size slippage plus the penalty (``close_cost``):
  ``f = (target - equity) / (target - cost)``, capped at ``max_step_fraction``, rounded up to
  a millionth. No partial step if the denominator is not positive or ``f >= 1``.
* **Improvement**: a planned partial step is taken only if it strictly raises
  ``equity - MM`` after the fills and the penalty; otherwise the bucket is closed out in full.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from liquidation.money import MICRO, div_trunc
from liquidation.rules.fixed import Bools, Floats, Ints
from liquidation.rules.terms import WaterfallTerms

#: A partial step's fraction is an integer number of millionths of every position.
FRACTION_SCALE: Final[int] = 1_000_000


def is_emergency(
    equity: int, maintenance: int, full_close_cost: int, emergency_health: float
) -> bool:
    """True if the bucket must be closed out at once (see the module docstring).

    Contract (PEP 316; CrossHair and tests/verification check it):

    post: __return__ or equity - full_close_cost > 0
    """
    return equity < emergency_health * maintenance or equity - full_close_cost <= 0


def is_emergency_v(
    equity: Ints, maintenance: Ints, full_close_cost: Ints, emergency_health: float
) -> Bools:
    """Vector :func:`is_emergency`."""
    return (equity < emergency_health * maintenance) | (equity - full_close_cost <= 0)


def rate_limited(emergency: bool, last_step_ms: int | None, ts_ms: int, cooldown_ms: int) -> bool:
    """True if a non-emergency step comes within the cooldown of the bucket's last step.

    Contract (PEP 316; CrossHair and tests/verification check it):

    post: not (emergency and __return__)
    post: not __return__ or ts_ms - last_step_ms < cooldown_ms
    """
    return not emergency and last_step_ms is not None and ts_ms - last_step_ms < cooldown_ms


def partial_allowed(emergency: bool, gross_notional: int, min_partial_notional_usd: float) -> bool:
    """True if the bucket may get a partial step (no emergency, not too small).

    Contract (PEP 316; CrossHair and tests/verification check it):

    post: not (emergency and __return__)
    """
    return not emergency and gross_notional >= min_partial_notional_usd * MICRO


def partial_allowed_v(
    emergency: Bools, gross_notional: Ints, min_partial_notional_usd: float
) -> Bools:
    """Vector :func:`partial_allowed`."""
    return ~emergency & (gross_notional >= min_partial_notional_usd * MICRO)


def close_cost(notional: int, slip_rate: float, penalty_rate: float) -> float:
    """Bound on the cost of closing a position: full-size slippage plus penalty (float).

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: notional >= 0 and 0 <= slip_rate < math.inf and 0 <= penalty_rate < math.inf
    post: __return__ >= 0
    """
    return notional * (slip_rate + penalty_rate)


def close_cost_v(notional: Ints, slip_rate: Floats, penalty_rate: float) -> Floats:
    """Vector :func:`close_cost`."""
    return notional * (slip_rate + penalty_rate)


def partial_ppm(equity: int, maintenance: int, cost: float, terms: WaterfallTerms) -> int:
    """Millionths of every position a partial step closes; 0 if no partial step fits.

    ``cost`` is the sum of :func:`close_cost` over the bucket's positions.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: 0 <= maintenance and cost >= 0 and 0 < terms.max_step_fraction
    post: 0 <= __return__ <= FRACTION_SCALE
    post: __return__ == 0 or __return__ >= min(terms.max_step_fraction, ((1.0 + terms.health_buffer) * maintenance - equity) / ((1.0 + terms.health_buffer) * maintenance - cost)) * FRACTION_SCALE
    """  # noqa: E501
    target = (1.0 + terms.health_buffer) * maintenance
    denominator = target - cost
    if denominator <= 0:
        return 0
    needed = (target - equity) / denominator
    fraction = min(needed, terms.max_step_fraction)
    if fraction >= 1.0:
        return 0
    # A bucket above its target needs no step: the smallest step (one millionth) is the floor.
    return min(FRACTION_SCALE, max(1, math.ceil(max(fraction, 0.0) * FRACTION_SCALE)))


def partial_ppm_v(equity: Ints, maintenance: Ints, cost: Floats, terms: WaterfallTerms) -> Ints:
    """Vector :func:`partial_ppm` (0 where no partial step fits)."""
    target = (1.0 + terms.health_buffer) * maintenance
    denominator = target - cost
    with np.errstate(divide="ignore", invalid="ignore"):
        needed = np.where(denominator > 0, (target - equity) / denominator, np.inf)
    fraction = np.minimum(needed, terms.max_step_fraction)
    ok = (denominator > 0) & (fraction < 1.0)
    ppm = np.ceil(np.where(ok, np.maximum(fraction, 0.0), 0.0) * FRACTION_SCALE).astype(np.int64)
    return np.where(ok, np.minimum(FRACTION_SCALE, np.maximum(1, ppm)), 0)


def closed_lots(lots: int, ppm: int) -> int:
    """Lots of a position of ``lots`` that a step of ``ppm`` millionths closes (toward zero).

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: 0 <= ppm <= FRACTION_SCALE
    post: abs(__return__) <= abs(lots) and __return__ * lots >= 0
    post: ppm != FRACTION_SCALE or __return__ == lots
    """
    return div_trunc(lots * ppm, FRACTION_SCALE)


def closed_lots_v(lots: Ints, ppm: Ints) -> Ints:
    """Vector :func:`closed_lots`, split so that ``lots * ppm`` never overflows int64."""
    size = np.abs(lots)
    whole, rest = np.divmod(size, FRACTION_SCALE)
    magnitude = whole * ppm + rest * ppm // FRACTION_SCALE
    return np.where(np.asarray(lots) < 0, -magnitude, magnitude)


def improves(
    equity: int, maintenance: int, equity_after_fills: int, penalty: int, maintenance_after: int
) -> bool:
    """True if a planned partial step strictly raises ``equity - MM``.

    Contract (PEP 316; CrossHair and tests/verification check it):

    post: not __return__ or equity_after_fills - penalty - maintenance_after > equity - maintenance
    """
    return (equity_after_fills - penalty) - maintenance_after > equity - maintenance


def improves_v(
    equity: Ints,
    maintenance: Ints,
    equity_after_fills: Ints,
    penalty: Ints,
    maintenance_after: Ints,
) -> Bools:
    """Vector :func:`improves`."""
    return (equity_after_fills - penalty) - maintenance_after > equity - maintenance
