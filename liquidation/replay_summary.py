"""The JSON summary of a margin replay: per policy, at the same base, and at equal margin.

Stable keys:

* ``policies.<name>.<metric>``: mean over seeds (``bad_debt``, ``liquidations``, ``mean_im``,
  ``adl_events``, ... see :func:`liquidation.replay_metrics.window_metrics`);
  ``policies.<name>.spread.<metric>`` holds ``mean/std/min/max`` across seeds,
  ``policies.<name>.windows.<window>.<metric>`` the stress-window means and
  ``policies.<name>.seeds`` the per-seed values;
* ``equal_margin.<name>``: ``static_level``, ``static_imf``, ``target_mean_im``,
  ``achieved_mean_im``, ``iterations``, ``static.<metric>`` (mean over seeds at that level),
  ``policy.<metric>``, ``ratio.<metric>`` (policy / static),
  ``windows.<window>.ratio.<metric>``, ``ratio_by_seed.<metric>`` (mean/std/min/max of
  the per-seed ratio, paired on the same trader book, and the ratios themselves in
  ``seeds``);
* ``equal_margin.<name>.oracle_at_margin``: the scale of the oracle's path that posts the
  policy's mean margin (``scale``, ``achieved_mean_im``), and
  ``equal_margin.<name>.oracle_gain_captured.<split>`` for ``overall``, ``first_jump`` and
  ``aftershock`` (:func:`liquidation.replay_metrics.oracle_gain_captured`: ``mean`` of the
  per-seed ratios, ``std``, ``n``, ``seeds``, bad-debt sums);
* ``same_base.<name>.ratio.<metric>``: policy / static at the base IMF (and
  ``ratio_by_seed``);
* ``frontier.<family>``: the risk-capital frontier, a list of points (``level``,
  ``mean_im``, ``bad_debt``, ``positions_liquidated``, ``liquidated_notional``, ``topups``)
  for static over a range of levels and each dynamic policy over a range of scales;
* ``comparison``: paired seed counts of ``model`` against ``ewma`` at equal margin.

The headline counts are ``positions_liquidated`` and ``liquidated_notional``;
``waterfall_steps`` (every partial or full step) is reported beside them. Top-ups are counted
(``topups``) and their collateral summed (``topup_collateral``, USD) beside the margin each
policy posts; ``fee_income`` and ``insurance_drawdown`` give each policy's fee income and
the largest fall of its insurance fund. The first-jump bars of ``oracle_gain_captured`` are
one set per seed for the whole comparison, from the run's ``static`` policy at the base IMF
(:func:`liquidation.replay_metrics.first_jump_sets`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from liquidation.equal_margin import EqualMarginLevel, FrontierPoint
from liquidation.replay_metrics import Window, across_seeds, series_metrics, spread
from liquidation.simulate import ReplaySeries

POLICIES: tuple[str, ...] = ("static", "ewma", "model", "oracle")
"""Margin policies of the replay, in report order (``static`` is the comparison base)."""

RATIO_KEYS: tuple[str, ...] = (
    "bad_debt",
    "positions_liquidated",
    "liquidated_notional",
    "waterfall_steps",
    "insurance_drawdown",
    "adl_events",
    "topups",
    "topup_collateral",
    "fee_income",
    "mean_im",
)
"""Metrics compared as policy / static ratios."""


def summarise(
    series: Mapping[str, list[ReplaySeries]],
    levels: Mapping[str, EqualMarginLevel],
    windows: Sequence[Window],
    base_imf: float,
    *,
    oracle_levels: Mapping[str, EqualMarginLevel] | None = None,
    gains: Mapping[str, Mapping[str, Any]] | None = None,
    frontier: Sequence[FrontierPoint] = (),
) -> dict[str, Any]:
    """``policies``, ``same_base``, ``equal_margin`` and ``comparison`` of one replay.

    Parameters
    ----------
    series
        Runs per policy (``static`` first), one per seed, on the same books.
    levels
        The equal-margin static level of each dynamic policy
        (:func:`liquidation.equal_margin.equal_margin_levels`).
    windows
        Stress windows scored separately.
    base_imf
        The template's base initial margin fraction (``static_imf = level * base_imf``).
    oracle_levels
        Per dynamic policy, the oracle scaled to its mean margin.
    gains
        Per dynamic policy, :func:`liquidation.replay_metrics.oracle_gain_captured`.
    frontier
        Points of the risk-capital frontier.
    """
    policies = {name: policy_block(runs, windows) for name, runs in series.items()}
    static = policies["static"]
    same_base = {
        name: {"ratio": ratios(block, static), "ratio_by_seed": paired_ratios(block, static)}
        for name, block in policies.items()
        if name != "static"
    }
    equal_margin: dict[str, Any] = {}
    for name, level in levels.items():
        static_block = policy_block(level.series, windows) if level.series else static
        equal_margin[name] = {
            "static_level": level.level,
            "static_imf": level.level * base_imf,
            "target_mean_im": level.target,
            "achieved_mean_im": level.achieved,
            "iterations": level.iterations,
            "static": {k: static_block[k] for k in _metric_names(static_block)},
            "policy": {k: policies[name][k] for k in _metric_names(policies[name])},
            "ratio": ratios(policies[name], static_block),
            "ratio_by_seed": paired_ratios(policies[name], static_block),
            "windows": {
                w.name: {
                    "ratio": ratios(
                        policies[name]["windows"][w.name], static_block["windows"][w.name]
                    )
                }
                for w in windows
            },
        }
        oracle = (oracle_levels or {}).get(name)
        if oracle is not None:
            equal_margin[name]["oracle_at_margin"] = {
                "scale": oracle.level,
                "achieved_mean_im": oracle.achieved,
                "iterations": oracle.iterations,
            }
        if gains and name in gains:
            equal_margin[name]["oracle_gain_captured"] = dict(gains[name])
    curves: dict[str, list[dict[str, float]]] = {}
    for point in sorted(frontier, key=lambda p: (p.family, p.mean_im)):
        row = {k: v for k, v in asdict(point).items() if k != "family"}
        curves.setdefault(point.family, []).append(row)
    return {
        "policies": policies,
        "same_base": same_base,
        "equal_margin": equal_margin,
        "frontier": curves,
        "comparison": compare_policies(equal_margin, policies, "model", "ewma"),
    }


def policy_block(runs: Sequence[ReplaySeries], windows: Sequence[Window]) -> dict[str, Any]:
    """Means over seeds, their spread, per-window means and the per-seed values."""
    per_seed = [series_metrics(r, windows) for r in runs]
    overall = across_seeds([m["overall"] for m in per_seed])
    block: dict[str, Any] = {k: v["mean"] for k, v in overall.items()}
    block["spread"] = overall
    block["windows"] = {}
    for w in windows:
        stats = across_seeds([m["windows"][w.name] for m in per_seed])
        block["windows"][w.name] = {k: v["mean"] for k, v in stats.items()}
        block["windows"][w.name]["spread"] = stats
    block["seeds"] = [m["overall"] for m in per_seed]
    return block


def ratios(policy: Mapping[str, Any], static: Mapping[str, Any]) -> dict[str, float | None]:
    """Policy / static per metric; None where undefined (static zero, or an empty window)."""
    out: dict[str, float | None] = {}
    if policy.get("n_bars", 1) == 0:
        return dict.fromkeys(RATIO_KEYS)
    for key in RATIO_KEYS:
        p, s = float(policy[key]), float(static[key])
        out[key] = p / s if s > 0 else (1.0 if p == 0 else None)
    return out


def paired_ratios(
    policy: Mapping[str, Any], static: Mapping[str, Any]
) -> dict[str, dict[str, Any] | None]:
    """Policy / static per seed (same trader book), summarised across seeds.

    The spread of the paired ratio is the honest error bar of a ratio of means: the book's
    luck cancels within a seed. None where the static value is zero on some seed.
    """
    out: dict[str, dict[str, Any] | None] = {}
    pairs = list(zip(policy["seeds"], static["seeds"], strict=True))
    for key in RATIO_KEYS:
        if not pairs or any(float(s[key]) <= 0 for _, s in pairs):
            out[key] = None
            continue
        values = [float(p[key]) / float(s[key]) for p, s in pairs]
        out[key] = {**spread(values), "seeds": values}
    return out


def compare_policies(
    equal_margin: Mapping[str, Any], policies: Mapping[str, Any], first: str, second: str
) -> dict[str, Any]:
    """``first`` against ``second``: equal-margin ratios and paired seed counts.

    ``<first>_lower_bad_debt_seeds`` counts the seeds (same trader book) on which ``first``
    has less bad debt than ``second``: a paired comparison, stronger than the means alone.
    """
    if first not in equal_margin or second not in equal_margin:
        return {"evaluated": False, "reason": f"{first} and {second} were not both run"}
    pairs = list(zip(policies[first]["seeds"], policies[second]["seeds"], strict=True))
    return {
        "evaluated": True,
        "policies": [first, second],
        "bad_debt_ratio": {n: equal_margin[n]["ratio"]["bad_debt"] for n in (first, second)},
        "positions_liquidated_ratio": {
            n: equal_margin[n]["ratio"]["positions_liquidated"] for n in (first, second)
        },
        f"{first}_lower_bad_debt_seeds": sum(a["bad_debt"] < b["bad_debt"] for a, b in pairs),
        "seeds": len(pairs),
    }


def summary_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """``policies.<p>.<metric>`` and ``equal_margin.<p>.ratio.<metric>`` as flat numbers."""
    out: dict[str, float] = {}
    for name, block in summary["policies"].items():
        for key, value in block.items():
            if isinstance(value, int | float):
                out[_key(f"policies.{name}.{key}")] = float(value)
    for name, block in summary["equal_margin"].items():
        out[_key(f"equal_margin.{name}.static_level")] = float(block["static_level"])
        for key, value in block["ratio"].items():
            if value is not None:
                out[_key(f"equal_margin.{name}.ratio.{key}")] = float(value)
        for split, gain in block.get("oracle_gain_captured", {}).items():
            if gain["mean"] is not None:
                out[_key(f"equal_margin.{name}.oracle_gain_captured.{split}")] = gain["mean"]
    return out


def summary_params(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The few parameters that identify a replay run (assets, window, seeds, book, policy set)."""
    return {
        "assets": ",".join(summary["data"]["assets"]),
        "start": summary["data"]["start"],
        "end": summary["data"]["end"],
        "seeds": summary["seeds"],
        "policies": ",".join(summary["policies"]),
        "n_traders": summary["config"]["replay"]["book"]["n_traders"],
        "base_imf": summary["config"]["replay"]["asset"]["base_imf"],
        "model_source": summary["forecasts"].get("model_source", "none"),
    }


def _metric_names(block: Mapping[str, Any]) -> list[str]:
    return [k for k, v in block.items() if not isinstance(v, dict | list)]


def _key(text: str) -> str:
    # Tracking stores allow alphanumerics, _ - . / and spaces only.
    return re.sub(r"[^0-9A-Za-z_\-./ ]", "_", text)
