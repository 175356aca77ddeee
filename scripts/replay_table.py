"""Print the README's equal-margin table from ``dynamargin backtest --json`` summaries.

Usage::

    python scripts/replay_table.py "BTC 2019-01..2025-06" btc-follow.json btc-stress.json ...

Each file is one run (one maintenance rule); rows are its dynamic policies. Ratios are
policy / static at equal mean margin, mean ± std of the per-seed (paired) ratios; the oracle
gain captured is the mean ± std of the per-seed ratios with the number of seeds where it is
defined; first-jump bad debt is the policy's against the static's on the first-jump bars.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from liquidation.replay_metrics import spread

RATIOS = (
    ("bad debt", "bad_debt"),
    ("positions liquidated", "positions_liquidated"),
    ("notional liquidated", "liquidated_notional"),
    ("fund drawdown", "insurance_drawdown"),
    ("ADL events", "adl_events"),
    ("top-up collateral", "topup_collateral"),
    ("fee income", "fee_income"),
)
SPLITS = ("overall", "first_jump", "aftershock")


def _ratio(block: dict[str, Any], key: str) -> str:
    paired = block["ratio_by_seed"].get(key)
    if paired is None:
        value = block["ratio"].get(key)  # absent in summaries made before the key existed
        return "n/a" if value is None else f"{value:.3f}"
    return f"{paired['mean']:.3f} ± {paired['std']:.3f}"


def _gain(gain: dict[str, Any] | None) -> str:
    if gain is None or gain["mean"] is None:
        return "n/a"
    return f"{gain['mean']:.2f} ± {gain['std']:.2f} ({gain['n']})"


def _first_jump(gain: dict[str, Any] | None) -> str:
    """First-jump bad debt against static (mean ± std of the per-seed ratios)."""
    if gain is None or gain.get("ratio") is None:
        return "n/a"  # absent in summaries made before the per-seed ratios were recorded
    seeds = [r for r in gain["ratio_seeds"] if r is not None]
    return f"{gain['ratio']:.3f} ± {spread(seeds)['std']:.3f}"


def rows(label: str, paths: list[Path]) -> list[str]:
    """Markdown rows of one data set, one block per run."""
    out = []
    for path in paths:
        summary = json.loads(path.read_text())
        replay = summary["config"]["replay"]
        rule = replay["maintenance_rule"]
        if rule == "stress":
            rule = f"stress ({replay['stress_threshold']:g})"
        static = summary["policies"]["static"]
        head = (
            f"{label}, {replay['book']['n_traders']:,} traders (static at base: bad debt "
            f"{static['bad_debt'] / 1e6:.2f}M, {static['positions_liquidated']:,.0f} positions)"
        )
        for name, block in summary["equal_margin"].items():
            gains = block.get("oracle_gain_captured", {})
            cells = [_ratio(block, key) for _, key in RATIOS]
            cells.insert(1, _first_jump(gains.get("first_jump")))
            cells += [_gain(gains.get(split)) for split in SPLITS]
            out.append(f"| {head} | {rule} | {name} | " + " | ".join(cells) + " |")
            head = ""
            rule = ""
    return out


def main(argv: list[str]) -> None:
    label, files = argv[0], [Path(a) for a in argv[1:]]
    columns = [name for name, _ in RATIOS] + [f"gain captured {s}" for s in SPLITS]
    columns.insert(1, "first-jump bad debt")
    print("| run | maintenance rule | policy | " + " | ".join(columns) + " |")
    print("|" + "---|" * (3 + len(columns)))
    print("\n".join(rows(label, files)))


if __name__ == "__main__":
    main(sys.argv[1:])
