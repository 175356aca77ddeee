"""Benchmark: the whole walk-forward evaluation of every model on the real data.

Ten assets, test year 2024-07-01 .. 2025-06-30, monthly refits, all models. Prints the
wall time per stage (aim: under 10 minutes on 2 cores) and the QLIKE table with each
model's ratio to HAR, the in-run baseline. Set ``DYNAMARGIN_SHARED_DATA`` to move the data.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TEST_START = "2024-07-01"
TEST_END = "2025-07-01"  # exclusive: the test year ends 2025-06-30 23:00
MODELS = ("ewma", "har", "harq", "garch", "gjr", "lgbm")


def main() -> int:
    from features.build import build_features
    from features.sources import load_market
    from models.walkforward import EvaluationConfig, run_evaluation

    data = Path(os.environ.get("DYNAMARGIN_SHARED_DATA", ROOT.parent / "shared" / "data"))
    started = time.perf_counter()
    market, _ = load_market(data, "1h")
    loaded = time.perf_counter()
    features = build_features(market)
    built = time.perf_counter()
    result = run_evaluation(
        features,
        TEST_START,
        TEST_END,
        EvaluationConfig(models=MODELS),
        progress=lambda m: print(m, flush=True),
    )
    done = time.perf_counter()
    metrics = result.to_json_dict()

    print(
        f"\nload {loaded - started:.1f} s, features {built - loaded:.1f} s, "
        f"walk-forward {done - built:.1f} s, total {done - started:.1f} s (aim < 600 s)"
    )
    print("per stage:", json.dumps(metrics["timing"]))
    header = (
        f"{'asset':10}" + "".join(f"{m:>9}" for m in MODELS) + f"{'DM p':>8}{'VaR':>7}{'zone':>8}"
    )
    print(header)
    for asset, entry in metrics["assets"].items():
        var = entry["var99"]
        print(
            f"{asset:10}"
            + "".join(f"{entry['qlike'][m]:9.4f}" for m in MODELS)
            + f"{entry['dm_pvalue'].get('lgbm', np.nan):8.3f}"
            + f"{var.get('exceptions', -1):4d}/{var.get('n', 0):<3d}{var.get('zone', '-'):>7}"
        )
    mean = metrics["mean"]["qlike"]
    print(f"{'mean':10}" + "".join(f"{mean[m]:9.4f}" for m in MODELS))
    print(f"{'vs HAR':10}" + "".join(f"{mean[m] / mean['har']:9.3f}" for m in MODELS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
