"""An intra-bar price path through each bar's open, extremes and close, and fills on it.

Today's replay walks four ticks per bar (open, nearer extreme, farther extreme, close) and a
position whose health fails at an extreme is filled *at that extreme* plus slippage: every
hourly range beyond ``1 / leverage`` then acts as a gap, and bad debt becomes hourly gap
risk. Here each bar gets a continuous path instead:

* the path starts at the open, visits the two extremes in the order of
  :func:`liquidation.simulate.tick_prices` (the low first in a rising bar, the high first in a
  falling one), and ends at the close;
* between those four anchors it is a Brownian bridge in log price, sampled at ``n_steps``
  sub-steps, with a diffusion of ``roughness`` times the bar's log range per square root of
  the bar, and clipped into ``[low, high]`` so the bar's real extremes stay its extremes;
* the two extremes fall at seeded random sub-steps (ordered), so a liquidation happens
  somewhere inside the bar and not always at the same tick.

Because the path is continuous between the sampled points, a position whose liquidation
level is crossed *inside* a bar is filled at that level plus slippage
(:func:`crossing_marks`); only the bar's open can gap past a level (the step from the
previous close to the open is the one jump of the path), and only a gap, or a slippage larger
than the maintenance cushion, through the *bankruptcy* price makes bad debt
(:func:`closeout_outcome`).

Money follows :mod:`liquidation.money` and :mod:`liquidation.rules`: prices are integer
micro-USD per unit, quantities integer lots, the execution price and the resulting equity are
computed with the rules' integer vector forms (:func:`~liquidation.rules.closeout.close_price_v`,
:func:`~liquidation.rules.fixed.value_v`). The liquidation level itself solves a linear
equation in float64 and is rounded *against* the trader (up for a long, down for a short), so
the exact integer health at the level is never better than at the true crossing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from liquidation.errors import ConfigError
from liquidation.money import MICRO, QTY_SCALE
from liquidation.rules.closeout import close_price_v
from liquidation.rules.fixed import value_v

PATHS: tuple[str, ...] = ("wick", "bridge")
"""Intra-bar path models: today's four-tick wick path, or the Brownian bridge of this module."""


@dataclass(frozen=True)
class BridgeConfig:
    """Parameters of the intra-bar Brownian bridge.

    Parameters
    ----------
    n_steps : int
        Sub-steps per bar (the path has ``n_steps + 1`` points, the open and the close
        included); at least 3 (open, two extremes, close). Default 16 (3.75 min per 1h bar).
    roughness : float
        Diffusion of the bridge per square root of the bar, as a fraction of the bar's log
        range ``log(high / low)``. 0 gives straight lines between the anchors (the wick
        path's shape); default 0.25.
    """

    n_steps: int = 16
    roughness: float = 0.25

    def __post_init__(self) -> None:
        if self.n_steps < 3:
            raise ConfigError(f"BridgeConfig.n_steps must be >= 3, got {self.n_steps}")
        if not (np.isfinite(self.roughness) and self.roughness >= 0):
            raise ConfigError(
                f"BridgeConfig.roughness must be finite and >= 0, got {self.roughness}"
            )


def anchors_micro(
    open_: NDArray[np.float64],
    high: NDArray[np.float64],
    low: NDArray[np.float64],
    close: NDArray[np.float64],
) -> NDArray[np.int64]:
    """The wick path: integer open, nearer extreme, farther extreme, close, shape ``(..., 4)``.

    Identical to :func:`liquidation.simulate.tick_prices` on the same arrays (a test checks
    it), so the bridge and the wick path share their anchors to the micro-USD.
    """
    o, h, lo, c = (
        np.round(np.asarray(x) * MICRO).astype(np.int64) for x in (open_, high, low, close)
    )
    up = c >= o
    return np.stack([o, np.where(up, lo, h), np.where(up, h, lo), c], axis=-1)


def bridge_prices(
    open_: NDArray[np.float64],
    high: NDArray[np.float64],
    low: NDArray[np.float64],
    close: NDArray[np.float64],
    seed: int,
    config: BridgeConfig | None = None,
) -> NDArray[np.int64]:
    """Integer micro-USD bridge path of every bar, shape ``bars.shape + (n_steps + 1,)``.

    Parameters
    ----------
    open_, high, low, close : float arrays of one shape
        Bar prices (``low <= min(open, close)``, ``high >= max(open, close)``, ``low > 0``).
    seed : int
        Seed of the bridge noise and the extremes' sub-steps; the same seed gives the same path.
    config : BridgeConfig, optional
        Sub-steps and roughness.

    Returns
    -------
    int64 array
        Point 0 is the open, the last point the close; the path's maximum is the bar's high and
        its minimum the bar's low, exactly, in micro-USD; the high and low are visited in the
        order of :func:`anchors_micro`.
    """
    cfg = config or BridgeConfig()
    anchors = anchors_micro(open_, high, low, close)
    shape = anchors.shape[:-1]
    if np.any(anchors <= 0):
        raise ConfigError("bridge_prices needs prices > 0")
    n = cfg.n_steps
    rng = np.random.default_rng(seed)
    # Sub-steps of the two extremes: 1 <= i1 < i2 <= n - 1 (open at 0, close at n).
    u = rng.random((*shape, 2))
    i1 = 1 + np.floor(u[..., 0] * (n - 2)).astype(np.int64)
    i2 = i1 + 1 + np.floor(u[..., 1] * (n - 1 - i1)).astype(np.int64)
    log_a = np.log(anchors.astype(np.float64) / MICRO)
    steps = np.arange(n + 1)
    # Leg of each sub-step: 0 (open -> E1), 1 (E1 -> E2), 2 (E2 -> close).
    leg = (steps >= i1[..., None]).astype(np.int64) + (steps >= i2[..., None])
    starts = np.stack([np.zeros_like(i1), i1, i2], axis=-1)
    ends = np.stack([i1, i2, np.full_like(i1, n)], axis=-1)
    s0 = np.take_along_axis(starts, leg, axis=-1)
    s1 = np.take_along_axis(ends, leg, axis=-1)
    x0 = np.take_along_axis(log_a, leg, axis=-1)
    x1 = np.take_along_axis(log_a, leg + 1, axis=-1)
    frac = (steps - s0) / np.maximum(s1 - s0, 1)
    line = x0 + frac * (x1 - x0)
    if cfg.roughness > 0:
        log_range = np.log(high / low)
        sigma = cfg.roughness * log_range / np.sqrt(n)
        walk = np.concatenate(
            [np.zeros((*shape, 1)), np.cumsum(rng.standard_normal((*shape, n)), axis=-1)], axis=-1
        )
        w0 = np.take_along_axis(walk, s0, axis=-1)
        w1 = np.take_along_axis(walk, s1, axis=-1)
        # A Brownian bridge on each leg: zero at both of its anchors.
        line = line + sigma[..., None] * (walk - w0 - frac * (w1 - w0))
    lo_m, hi_m = anchors.min(axis=-1), anchors.max(axis=-1)
    path = np.round(np.exp(line) * MICRO).astype(np.int64)
    path = np.clip(path, lo_m[..., None], hi_m[..., None])
    # Before its sub-step the farther extreme stays unvisited (one micro-USD short of it), so
    # the extremes are reached in the wick path's order however rough the bridge.
    e1, e2 = anchors[..., 1:2], anchors[..., 2:3]
    early = (steps < i2[..., None]) & (e2 != anchors[..., 0:1])
    rising_to_high = e2 > e1
    path = np.where(early & rising_to_high, np.minimum(path, e2 - 1), path)
    path = np.where(early & ~rising_to_high & (e2 < e1), np.maximum(path, e2 + 1), path)
    # Pin the anchors exactly (exp/log rounding must not move them by a micro-USD).
    for col, idx in ((0, np.zeros_like(i1)), (1, i1), (2, i2), (3, np.full_like(i1, n))):
        np.put_along_axis(path, idx[..., None], anchors[..., col : col + 1], axis=-1)
    return path


def liquidation_levels(
    balance: NDArray[np.int64],
    lots: NDArray[np.int64],
    cost: NDArray[np.int64],
    mm_fraction: NDArray[np.float64] | float,
) -> NDArray[np.int64]:
    """Price (micro-USD) at which an isolated position's equity falls to its maintenance.

    Solves ``balance + lots * p / Q - cost = mmf * |lots| * p / Q`` for ``p`` with the
    position's maintenance fraction ``mmf`` held at its current value (``mmf = 0`` gives the
    bankruptcy price). Rounded against the trader: up for a long, down for a short. A
    position that can never reach the level (e.g. a long whose balance covers its cost) gets
    0 for a long and the largest int64 for a short.
    """
    lots_f = lots.astype(np.float64)
    denom = lots_f - np.asarray(mm_fraction) * np.abs(lots_f)
    with np.errstate(divide="ignore", invalid="ignore"):
        level = (cost.astype(np.float64) - balance.astype(np.float64)) * QTY_SCALE / denom
    big = float(np.iinfo(np.int64).max // 2)
    long_ = lots > 0
    level = np.where(np.isfinite(level), level, np.where(long_, 0.0, big))
    level = np.where(long_, np.ceil(level), np.floor(level))
    return np.clip(level, 0.0, big).astype(np.int64)


def first_crossing(
    path: NDArray[np.int64], level: NDArray[np.int64], long_: NDArray[np.bool_]
) -> NDArray[np.int64]:
    """First point of each row's path at or beyond its level (-1 if none).

    ``path`` has one row per position (its asset's bar path), ``level`` one value per row; a
    long is crossed at ``price <= level``, a short at ``price >= level``.
    """
    hit = np.where(long_[:, None], path <= level[:, None], path >= level[:, None])
    first = hit.argmax(axis=1)
    return np.where(hit.any(axis=1), first, -1)


def crossing_marks(
    path: NDArray[np.int64],
    level: NDArray[np.int64],
    long_: NDArray[np.bool_],
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Where each position is liquidated inside the bar, and the mark its close-out uses.

    The path is continuous after the open, so a crossing at point ``j >= 1`` happens *at the
    level*: the mark is the level. At point 0 the price may have jumped from the previous
    close to the open: if the previous close was already beyond the level the position was
    due then (and is marked at the open, the first price the keeper sees), and if it was not,
    the open gapped through the level and the mark is the open, the first price available.

    Returns
    -------
    (index, mark) : int64 arrays
        ``index`` is :func:`first_crossing`'s; ``mark`` is 0 where ``index == -1``.
    """
    idx = first_crossing(path, level, long_)
    rows = np.arange(len(idx))
    seen = path[rows, np.maximum(idx, 0)]
    mark = np.where(idx >= 1, level, seen)
    return idx, np.where(idx >= 0, mark, 0)


def closeout_outcome(
    balance: NDArray[np.int64],
    lots: NDArray[np.int64],
    cost: NDArray[np.int64],
    mark: NDArray[np.int64],
    slip_rate: NDArray[np.float64] | float,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """A full close-out at ``mark`` with slippage: execution price, equity after, bad debt.

    Uses the rules' integer forms: the execution price of
    :func:`~liquidation.rules.closeout.close_price_v` (slippage rounded against the trader) and
    the exact value of :func:`~liquidation.rules.fixed.value_v`. Bad debt is the negative part
    of the equity after the fill, before anyone covers it (the replay's definition).
    """
    exec_price = close_price_v(mark, lots, np.broadcast_to(slip_rate, np.shape(mark)))
    equity = balance + value_v(lots, exec_price) - cost
    return exec_price, equity, np.maximum(-equity, 0)


def path_ticks(
    open_: NDArray[np.float64],
    high: NDArray[np.float64],
    low: NDArray[np.float64],
    close: NDArray[np.float64],
    path: str,
    seed: int = 0,
    config: BridgeConfig | None = None,
) -> NDArray[np.int64]:
    """Integer prices of each bar's path under a path model, shape ``bars.shape + (ticks,)``.

    ``wick``: today's four ticks (:func:`anchors_micro`); ``bridge``: :func:`bridge_prices`.
    Tick 0 is always the open and the last tick the close.
    """
    if path == "wick":
        return anchors_micro(open_, high, low, close)
    if path == "bridge":
        return bridge_prices(open_, high, low, close, seed, config)
    raise ConfigError(f"unknown intra-bar path {path!r}; choose from {list(PATHS)}")


def crossing_price(liquidatable: Callable[[int], bool], before: int, after: int) -> int:
    """First price on the straight segment from ``before`` to ``after`` at which a position
    is liquidatable, found by bisection on integer micro-USD prices with the exact rules.

    The bridge is continuous between two sampled points, so a position that is healthy at
    ``before`` and liquidatable at ``after`` is liquidated where the path crosses its level:
    this is that level (to the unit), and the fill's mark. A position already liquidatable
    at ``before`` is marked at ``before`` (for the first segment of a bar, ``before`` is the
    open: a gap through the level fills at the open). ``liquidatable`` must switch once along
    the segment (equity minus maintenance is monotone in the price for an isolated position).

    Raises
    ------
    ValueError
        If the position is not liquidatable at ``after``.
    """
    if liquidatable(before):
        return before
    if not liquidatable(after):
        raise ValueError(f"crossing_price: not liquidatable at the segment's end {after}")
    healthy, hit = before, after
    while abs(hit - healthy) > 1:
        middle = healthy + (hit - healthy) // 2
        if liquidatable(middle):
            hit = middle
        else:
            healthy = middle
    return hit
