"""The equal-margin comparison: the static level that posts a dynamic policy's mean margin.

A dynamic policy is compared with static margin *at the same mean initial margin* (the
average over bars and seeds of the initial margin its open positions post). For each target
a bisection in log space finds the static multiplier level whose replay posts that mean.
Mean IM grows with the static level (higher IMF means more margin per unit of notional, and
the leverage cap only partly offsets it), so the bracket ``[0.1, 10]`` holds every policy
whose multiplier lies in the policy bounds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from liquidation.errors import LiquidationCoreError
from liquidation.replay_metrics import window_metrics
from liquidation.simulate import (
    MarketPaths,
    ReplayConfig,
    ReplaySeries,
    Scenario,
    constant_multiplier,
    simulate,
)

Say = Callable[[str], None]

BRACKET: tuple[float, float] = (0.1, 10.0)
"""Static multiplier levels the bisection searches between."""


@dataclass(frozen=True)
class EqualMarginConfig:
    """The bisection's stopping rule.

    Attributes
    ----------
    tolerance
        Relative tolerance on the mean IM (0.5%).
    max_iter
        Most bisection passes (12).
    """

    tolerance: float = 0.005
    max_iter: int = 12

    def __post_init__(self) -> None:
        if not 0 < self.tolerance < 0.5:
            raise LiquidationCoreError("EqualMarginConfig.tolerance must be in (0, 0.5)")
        if self.max_iter < 1:
            raise LiquidationCoreError("EqualMarginConfig.max_iter must be >= 1")


@dataclass
class EqualMarginLevel:
    """The static level found for one target.

    Attributes
    ----------
    level
        Static multiplier level.
    target, achieved
        Target mean IM and the mean IM posted at ``level``.
    error
        ``achieved / target - 1``.
    iterations
        Bisection pass that found it.
    series
        The static runs at ``level``, one per seed.
    """

    level: float
    target: float
    achieved: float
    error: float
    iterations: int
    series: list[ReplaySeries] = field(default_factory=list)


def mean_im(runs: Sequence[ReplaySeries]) -> float:
    """Mean initial margin posted, averaged over bars and then over runs (seeds)."""
    return float(np.mean([window_metrics(r)["mean_im"] for r in runs]))


def equal_margin_levels(
    paths: MarketPaths,
    targets: Mapping[str, float],
    seeds: Sequence[int],
    replay: ReplayConfig,
    config: EqualMarginConfig | None = None,
    say: Say | None = None,
) -> dict[str, EqualMarginLevel]:
    """Bisection (in log space) on the static level matching each target mean IM.

    All targets are bisected together: each pass replays every still-open candidate level for
    every seed in one :func:`~liquidation.simulate.simulate` call.

    Parameters
    ----------
    paths
        The market.
    targets
        Mean IM to match, per policy name.
    seeds
        Trader books replayed at each level (the same as the policies').
    replay
        Book, rules and liquidity.
    config
        Tolerance and passes.
    say
        Progress messages.

    Returns
    -------
    dict
        Per policy, the closest :class:`EqualMarginLevel` found. A non-positive target gives
        level 1 with no runs.
    """
    cfg = config or EqualMarginConfig()
    report = say or (lambda _m: None)
    lo = {name: math.log(BRACKET[0]) for name in targets}
    hi = {name: math.log(BRACKET[1]) for name in targets}
    best: dict[str, EqualMarginLevel] = {
        name: EqualMarginLevel(1.0, 0.0, 0.0, 0.0, 0) for name in targets if targets[name] <= 0
    }
    open_names = [n for n in targets if targets[n] > 0]
    for iteration in range(1, cfg.max_iter + 1):
        if not open_names:
            break
        levels = {name: math.exp(0.5 * (lo[name] + hi[name])) for name in open_names}
        scenarios = [
            Scenario(name, seed, constant_multiplier(paths, levels[name]))
            for name in open_names
            for seed in seeds
        ]
        runs = simulate(paths, scenarios, replay)
        still_open = []
        for name in open_names:
            mine = [r for r in runs if r.label == name]
            achieved = mean_im(mine)
            error = achieved / targets[name] - 1.0
            previous = best.get(name)
            if previous is None or abs(error) < abs(previous.error):
                best[name] = EqualMarginLevel(
                    levels[name], targets[name], achieved, error, iteration, mine
                )
            if error < 0:
                lo[name] = math.log(levels[name])
            else:
                hi[name] = math.log(levels[name])
            if abs(error) > cfg.tolerance:
                still_open.append(name)
        report(
            f"equal margin pass {iteration}: "
            + ", ".join(f"{n} level {levels[n]:.3f}" for n in open_names)
        )
        open_names = still_open
    return best
