"""Issue #20's acceptance aims, checked on one ``dynamargin backtest --json`` summary.

The aims (test period, equal mean margin, every policy under the same rules):

* the policy captures at least half of the oracle's bad-debt gain over static
  (``oracle_gain_captured.overall``);
* its first-jump bad debt is at most 0.8× the static's on the same bars
  (``oracle_gain_captured.first_jump.ratio``);
* it liquidates at most 0.9× the static's positions (``ratio_by_seed.positions_liquidated``);
* it beats the rival (EWMA) on each of those three;
* its largest one-day margin increase is no worse than the rival's.

"Meets" and "beats" both mean: on the mean over seeds **and** on at least ``min_seeds`` of
the paired seeds (same trader book), so one lucky seed cannot carry an aim. The one-day
increase is judged on the largest 24 h rise of an asset's multiplier (max over assets; the
path is the policy's, the same on every seed) and on the largest 24 h rise of an asset's
posted IM in USD (max over assets, mean over seeds; the book's total in summaries written
before the replay recorded IM per asset); it holds only if both are no worse than the
rival's.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from liquidation.errors import LiquidationCoreError

MIN_GAIN_CAPTURED = 0.5
"""Share of the oracle's bad-debt gain the policy must capture."""
MAX_FIRST_JUMP_RATIO = 0.8
"""First-jump bad debt against static, at most."""
MAX_POSITIONS_RATIO = 0.9
"""Positions liquidated against static, at most."""


class AimsInputError(LiquidationCoreError, ValueError):
    """The summary lacks a figure an aim needs (an older summary, or a policy not run)."""


@dataclass(frozen=True)
class Aim:
    """One aim's verdict.

    Attributes
    ----------
    name
        What is checked, in words.
    value
        The policy's figure (mean over seeds).
    target
        The threshold, or the rival's figure for a "beats" aim.
    seeds_met, seeds
        Paired seeds on which the aim holds, of how many were scored (0 of 0 for a figure
        without seeds).
    met
        The verdict: on the mean and on at least ``min_seeds`` seeds.
    """

    name: str
    value: float | None
    target: float | None
    seeds_met: int
    seeds: int
    met: bool


def _block(summary: Mapping[str, Any], policy: str) -> Mapping[str, Any]:
    try:
        return summary["equal_margin"][policy]
    except KeyError as exc:
        raise AimsInputError(f"the summary has no equal-margin result for {policy!r}") from exc


def _gain(summary: Mapping[str, Any], policy: str, split: str) -> Mapping[str, Any]:
    gains = _block(summary, policy).get("oracle_gain_captured")
    if not gains or split not in gains:
        raise AimsInputError(
            f"{policy!r} has no oracle_gain_captured.{split}; run the backtest with the "
            "oracle policy"
        )
    return gains[split]


def _first_jump_ratio(
    summary: Mapping[str, Any], policy: str
) -> tuple[float | None, list[float | None]]:
    split = _gain(summary, policy, "first_jump")
    if "ratio_seeds" not in split:
        raise AimsInputError(
            "oracle_gain_captured.first_jump has no ratio_seeds (a summary written before "
            "they were recorded); re-run the backtest"
        )
    return split["ratio"], list(split["ratio_seeds"])


def _positions(summary: Mapping[str, Any], policy: str) -> tuple[float | None, list[float | None]]:
    paired = _block(summary, policy)["ratio_by_seed"].get("positions_liquidated")
    if paired is None:
        return None, []
    if "seeds" not in paired:
        raise AimsInputError("ratio_by_seed has no per-seed ratios; re-run the backtest")
    return paired["mean"], list(paired["seeds"])


def _verdict(
    name: str,
    value: float | None,
    seeds: Sequence[float | None],
    target: float | None,
    better: Callable[[float, float], bool],
    min_seeds: int,
    rival_seeds: Sequence[float | None] | None = None,
) -> Aim:
    """``better(a, b)`` is True where ``a`` meets ``b``; per seed against the threshold, or
    against the rival's value on the same seed."""
    scored = 0
    met_seeds = 0
    for i, mine in enumerate(seeds):
        other = target if rival_seeds is None else rival_seeds[i]
        if mine is None or other is None:
            continue
        scored += 1
        met_seeds += bool(better(mine, other))
    on_mean = value is not None and target is not None and bool(better(value, target))
    return Aim(name, value, target, met_seeds, scored, on_mean and met_seeds >= min_seeds)


def protection_aims(
    summary: Mapping[str, Any], policy: str = "model", rival: str = "ewma", min_seeds: int = 4
) -> list[Aim]:
    """The aims of issue #20 for ``policy`` against static, the oracle and ``rival``.

    Parameters
    ----------
    summary
        A ``dynamargin backtest --json`` summary with ``static``, ``policy``, ``rival`` and
        ``oracle`` run.
    policy, rival
        The policy under judgement and the one it must beat.
    min_seeds
        Paired seeds on which an aim must hold besides the mean (4 of 5 in the issue).

    Returns
    -------
    list of Aim
        Gain captured, first-jump ratio, positions ratio, the three "beats" and the one-day
        increase, in that order.

    Raises
    ------
    AimsInputError
        A needed figure is missing.
    """
    gain = _gain(summary, policy, "overall")
    rival_gain = _gain(summary, rival, "overall")
    jump, jump_seeds = _first_jump_ratio(summary, policy)
    rival_jump, rival_jump_seeds = _first_jump_ratio(summary, rival)
    positions, position_seeds = _positions(summary, policy)
    rival_positions, rival_position_seeds = _positions(summary, rival)
    aims = [
        _verdict(
            f"captures >= {MIN_GAIN_CAPTURED:.0%} of the oracle's bad-debt gain",
            gain["mean"],
            gain["seeds"],
            MIN_GAIN_CAPTURED,
            operator.ge,
            min_seeds,
        ),
        _verdict(
            f"first-jump bad debt <= {MAX_FIRST_JUMP_RATIO}x static",
            jump,
            jump_seeds,
            MAX_FIRST_JUMP_RATIO,
            operator.le,
            min_seeds,
        ),
        _verdict(
            f"positions liquidated <= {MAX_POSITIONS_RATIO}x static",
            positions,
            position_seeds,
            MAX_POSITIONS_RATIO,
            operator.le,
            min_seeds,
        ),
        _verdict(
            f"captures more of the oracle's gain than {rival}",
            gain["mean"],
            gain["seeds"],
            rival_gain["mean"],
            operator.gt,
            min_seeds,
            rival_gain["seeds"],
        ),
        _verdict(
            f"less first-jump bad debt than {rival}",
            jump,
            jump_seeds,
            rival_jump,
            operator.lt,
            min_seeds,
            rival_jump_seeds,
        ),
        _verdict(
            f"fewer positions liquidated than {rival}",
            positions,
            position_seeds,
            rival_positions,
            operator.lt,
            min_seeds,
            rival_position_seeds,
        ),
    ]
    aims.append(_one_day_increase(summary, policy, rival))
    return aims


def _one_day_increase(summary: Mapping[str, Any], policy: str, rival: str) -> Aim:
    try:
        diagnostics = summary["margin_diagnostics"]
        mine, theirs = diagnostics[policy], diagnostics[rival]
        rise = mine["ratchet"]["largest_rise_multiplier_24h"]
        rival_rise = theirs["ratchet"]["largest_rise_multiplier_24h"]
        # An asset's own posted IM where the replay recorded it, else the book's total.
        key = (
            "largest_rise_asset_im_24h_usd"
            if "largest_rise_asset_im_24h_usd" in mine and "largest_rise_asset_im_24h_usd" in theirs
            else "largest_rise_im_24h_usd"
        )
        usd = mine[key]["mean"]
        rival_usd = theirs[key]["mean"]
    except KeyError as exc:
        raise AimsInputError(f"margin_diagnostics lacks {exc}; re-run the backtest") from exc
    scope = "an asset's IM" if key.startswith("largest_rise_asset") else "book IM"
    both = usd is not None and rival_usd is not None
    met = rise <= rival_rise and both and usd <= rival_usd
    book = f"{usd:,.0f} vs {rival_usd:,.0f}" if both else "n/a"
    return Aim(
        f"largest 1-day margin increase no worse than {rival}'s (multiplier, per asset; "
        f"{scope} in USD: {book})",
        rise,
        rival_rise,
        0,
        0,
        met,
    )


def format_aims(aims: Sequence[Aim]) -> str:
    """The verdicts as a Markdown table."""
    lines = ["| aim | value | target | seeds | met |", "|---|---|---|---|---|"]
    for aim in aims:
        value = "n/a" if aim.value is None else f"{aim.value:.3f}"
        target = "n/a" if aim.target is None else f"{aim.target:.3f}"
        seeds = f"{aim.seeds_met}/{aim.seeds}" if aim.seeds else "-"
        lines.append(
            f"| {aim.name} | {value} | {target} | {seeds} | {'yes' if aim.met else 'no'} |"
        )
    return "\n".join(lines)
