"""Print the margin mechanisms' comparison table from ``dynamargin backtest --json`` summaries.

Usage::

    python scripts/mechanism_table.py default.json loss_im.json apc_buffer.json ...

Each file is one run (one ``--policy-options`` variant, one maintenance rule); rows are its
dynamic policies. Ratios are policy / static at equal mean margin (mean ± std of the per-seed
ratios); beside them the ratchet figures (mean multiplier, time at the cap, largest 24 h
multiplier rise) and the procyclicality figures of ``margin_diagnostics`` (peak-to-trough of
the IM rate, largest 24 h rise of the book's IM in USD and of an asset's IM (max over
assets; n/a in summaries written before it was recorded), calm-regime IM against the
equal-margin static).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RATIOS = (
    ("bad debt", "bad_debt"),
    ("positions liq.", "positions_liquidated"),
    ("notional liq.", "liquidated_notional"),
)


def _ratio(block: dict[str, Any], key: str) -> str:
    paired = block["ratio_by_seed"].get(key)
    return "n/a" if paired is None else f"{paired['mean']:.3f} ± {paired['std']:.3f}"


def _figure(block: dict[str, Any], key: str, fmt: str) -> str:
    value = block.get(key, {}).get("mean")
    return "n/a" if value is None else format(value, fmt)


def rows(path: Path) -> list[str]:
    """The table rows of one summary."""
    summary = json.loads(path.read_text(encoding="utf-8"))
    config = summary["config"]
    variant = config.get("policy_variant", "default")
    rule = config["replay"].get("maintenance_rule", "follow")
    out = []
    for name, block in summary["equal_margin"].items():
        diag = summary["margin_diagnostics"][name]
        ratchet = diag["ratchet"]
        cells = [
            variant,
            rule,
            name,
            f"{block['static_level']:.3f}",
            *(_ratio(block, key) for _, key in RATIOS),
            f"{ratchet['mean_multiplier']:.3f}",
            f"{ratchet['time_at_cap']:.4f}",
            f"{ratchet['largest_rise_multiplier_24h']:.2f}",
            _figure(diag, "peak_to_trough_im_rate", ".2f"),
            _figure(diag, "largest_rise_im_24h_usd", ",.0f"),
            _figure(diag, "largest_rise_asset_im_24h_usd", ",.0f"),
            _figure(diag, "calm_im_vs_static", ".3f"),
        ]
        out.append("| " + " | ".join(cells) + " |")
    return out


def main(paths: list[str]) -> None:
    """Print the header and one row per (run, dynamic policy)."""
    header = [
        "variant", "maintenance", "policy", "static level", *(label for label, _ in RATIOS),
        "mean mult.", "time at cap", "max 24h mult. rise", "IM-rate peak/trough",
        "max 24h IM rise (USD)", "max 24h asset-IM rise (USD)", "calm IM / static",
    ]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for path in paths:
        for row in rows(Path(path)):
            print(row)


if __name__ == "__main__":
    main(sys.argv[1:])
