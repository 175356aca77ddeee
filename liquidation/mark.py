"""The mark price: the guarded oracle plus a bounded basis learned from traded prices.

``mark = oracle + clip(basis, -cap, +cap)`` with ``cap = floor(basis_cap * oracle)``. The basis
is an exponentially weighted average of ``fill price - oracle`` over fills whose price the
counterparties set; it decays linearly to zero over ``basis_window_ms`` without such fills.
Pure integer functions on micro-USD (the weights are configuration floats applied once and
truncated toward zero), so a replay reproduces every mark exactly.
"""

from __future__ import annotations

import math

from liquidation.config import MarkConfig
from liquidation.money import div_trunc


def mark_price(oracle: int, basis: int, config: MarkConfig) -> int:
    """The mark for an oracle price and a (decayed) basis, micro-USD.

    Post: ``|mark - oracle| <= basis_cap * oracle`` and ``mark > 0`` for ``oracle > 0``.
    """
    cap = math.floor(oracle * config.basis_cap)
    return oracle + max(-cap, min(cap, basis))


def decayed_basis(basis: int, basis_ms: int, now_ms: int, config: MarkConfig) -> int:
    """The basis at ``now_ms``: linear decay to zero over ``basis_window_ms``."""
    elapsed = max(0, now_ms - basis_ms)
    if elapsed >= config.basis_window_ms:
        return 0
    return basis - div_trunc(basis * elapsed, config.basis_window_ms)


def updated_basis(basis: int, sample: int, config: MarkConfig) -> int:
    """The basis after one traded sample ``price - oracle`` (weight ``basis_weight``)."""
    weight_ppm = round(config.basis_weight * 1_000_000)
    return basis + div_trunc((sample - basis) * weight_ppm, 1_000_000)
