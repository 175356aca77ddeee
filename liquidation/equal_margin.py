"""The equal-margin comparison: every policy under one maintenance rule, matched on mean IM.

A dynamic policy is compared with static margin *at the same mean initial margin* (the
average over bars and seeds of the initial margin its open positions post, :func:`mean_im`,
the one matching criterion for every policy). Every path, static or dynamic, reaches the
replay through :func:`margin_scenario`, which applies the run's maintenance rule
(:func:`liquidation.simulate.maintenance_multipliers`) to it: a static level ``k`` under
``initial-only`` keeps maintenance at ``min(k, 1)``, exactly as a dynamic policy at ``k``
would, so a rule that lowers maintenance cannot pass for a better forecast.

A *family* of paths has one positive parameter: the static family is the constant path
``k``; a scaled family is ``c * m`` for a dynamic policy's path ``m`` (the venue scaling its
base IMF). :func:`match_levels` bisects (in log space) the parameter of each family whose
replay posts a target mean IM; mean IM grows with the parameter (more margin per unit of
notional, which the leverage cap only partly offsets). Every level tried is kept as a point
of the risk-capital frontier (:class:`FrontierPoint`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from liquidation.errors import LiquidationCoreError
from liquidation.replay_metrics import window_metrics
from liquidation.runners import ReplayRunner
from liquidation.simulate import (
    MarketPaths,
    ReplayConfig,
    ReplaySeries,
    Scenario,
    constant_multiplier,
    maintenance_multipliers,
    simulate,
)

Say = Callable[[str], None]
Family = Callable[[float], NDArray[np.float64]]
"""A one-parameter family of multiplier paths: ``level -> (n_assets, n_bars)`` path."""

BRACKET: tuple[float, float] = (0.1, 10.0)
"""Static multiplier levels the bisection searches between."""
SCALE_BRACKET: tuple[float, float] = (0.2, 5.0)
"""Scales of a dynamic path the bisection searches between."""
FRONTIER_SCALES: tuple[float, ...] = (0.8, 1.25)
"""Scales of each dynamic policy replayed for the frontier, beside its own (1)."""


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
    """The level found for one target.

    Attributes
    ----------
    level
        Static multiplier level (or scale of a dynamic path).
    target, achieved
        Target mean IM and the mean IM posted at ``level``.
    error
        ``achieved / target - 1``.
    iterations
        Bisection pass that found it.
    series
        The runs at ``level``, one per seed.
    """

    level: float
    target: float
    achieved: float
    error: float
    iterations: int
    series: list[ReplaySeries] = field(default_factory=list)


@dataclass(frozen=True)
class FrontierPoint:
    """One point of the risk-capital frontier: a family at one level, means over seeds.

    Attributes
    ----------
    family
        ``static`` or the dynamic policy scaled.
    level
        Static level or scale.
    mean_im
        Mean initial margin posted (:func:`mean_im`).
    bad_debt, positions_liquidated, liquidated_notional, topups
        Means over seeds.
    """

    family: str
    level: float
    mean_im: float
    bad_debt: float
    positions_liquidated: float
    liquidated_notional: float
    topups: float

    @classmethod
    def of(cls, family: str, level: float, runs: Sequence[ReplaySeries]) -> FrontierPoint:
        """The point of ``runs`` (one per seed)."""
        metrics = [window_metrics(r) for r in runs]
        mean = {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}
        return cls(
            family,
            level,
            mean["mean_im"],
            mean["bad_debt"],
            mean["positions_liquidated"],
            mean["liquidated_notional"],
            mean["topups"],
        )


def mean_im(runs: Sequence[ReplaySeries]) -> float:
    """Mean initial margin posted, averaged over bars and then over runs (seeds).

    The one matching criterion of the comparison: every policy is measured by it.
    """
    return float(np.mean([window_metrics(r)["mean_im"] for r in runs]))


def margin_scenario(
    label: str, seed: int, multiplier: NDArray[np.float64], replay: ReplayConfig
) -> Scenario:
    """The scenario of a multiplier path under the run's maintenance rule.

    Every policy of a run, static levels included, is built here, so all of them face the
    same rule (:attr:`ReplayConfig.maintenance_rule`, threshold
    :attr:`ReplayConfig.stress_threshold`).
    """
    maintenance = maintenance_multipliers(
        multiplier, replay.maintenance_rule, replay.stress_threshold
    )
    return Scenario(label, seed, multiplier, maintenance)


def static_family(paths: MarketPaths) -> Family:
    """The static family: the constant path ``level`` on every asset and bar."""
    return lambda level: constant_multiplier(paths, level)


def scaled_family(multiplier: NDArray[np.float64]) -> Family:
    """The family ``scale * multiplier`` of a dynamic policy's path."""
    base = np.asarray(multiplier, dtype=np.float64)
    return lambda scale: base * scale


def equal_margin_levels(
    paths: MarketPaths,
    targets: Mapping[str, float],
    seeds: Sequence[int],
    replay: ReplayConfig,
    config: EqualMarginConfig | None = None,
    say: Say | None = None,
) -> dict[str, EqualMarginLevel]:
    """The static level whose replay posts each target mean IM (see :func:`match_levels`)."""
    family = static_family(paths)
    found, _ = match_levels(
        {name: (family, BRACKET) for name in targets}, targets, seeds, paths, replay, config, say
    )
    return found


def match_levels(
    families: Mapping[str, tuple[Family, tuple[float, float]]],
    targets: Mapping[str, float],
    seeds: Sequence[int],
    paths: MarketPaths,
    replay: ReplayConfig,
    config: EqualMarginConfig | None = None,
    say: Say | None = None,
    label: str = "equal margin",
    runner: ReplayRunner | None = None,
) -> tuple[dict[str, EqualMarginLevel], list[tuple[str, float, list[ReplaySeries]]]]:
    """Bisection (in log space) on each family's level matching its target mean IM.

    All targets are bisected together: each pass replays every still-open candidate level for
    every seed in one :func:`~liquidation.simulate.simulate` call.

    Parameters
    ----------
    families
        Per name, the family of paths and the bracket of levels searched.
    targets
        Mean IM to match, per name.
    seeds
        Trader books replayed at each level (the same as the policies').
    paths
        The market.
    replay
        Book, rules (the maintenance rule included) and liquidity.
    config
        Tolerance and passes.
    say
        Progress messages.
    label
        Prefix of the progress messages.
    runner
        Where the replays run (:mod:`liquidation.runners`); None: one
        :func:`~liquidation.simulate.simulate` pass here.

    Returns
    -------
    levels : dict
        Per name, the closest :class:`EqualMarginLevel` found. A non-positive target gives
        level 1 with no runs.
    tried : list
        ``(name, level, runs)`` of every level replayed (frontier points).
    """
    cfg = config or EqualMarginConfig()
    report = say or (lambda _m: None)
    lo = {name: math.log(families[name][1][0]) for name in targets}
    hi = {name: math.log(families[name][1][1]) for name in targets}
    best: dict[str, EqualMarginLevel] = {
        name: EqualMarginLevel(1.0, 0.0, 0.0, 0.0, 0) for name in targets if targets[name] <= 0
    }
    tried: list[tuple[str, float, list[ReplaySeries]]] = []
    open_names = [n for n in targets if targets[n] > 0]
    for iteration in range(1, cfg.max_iter + 1):
        if not open_names:
            break
        levels = {name: math.exp(0.5 * (lo[name] + hi[name])) for name in open_names}
        scenarios = [
            margin_scenario(name, seed, families[name][0](levels[name]), replay)
            for name in open_names
            for seed in seeds
        ]
        if runner is None:
            runs = simulate(paths, scenarios, replay)
        else:
            runs = runner.simulate(paths, scenarios, replay)
        still_open = []
        for name in open_names:
            mine = [r for r in runs if r.label == name]
            tried.append((name, levels[name], mine))
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
            f"{label} pass {iteration}: "
            + ", ".join(f"{n} level {levels[n]:.3f}" for n in open_names)
        )
        open_names = still_open
    return best, tried
