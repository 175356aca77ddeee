"""The same evaluation run twice, in separate processes, gives identical JSON.

Everything that could differ between two runs differs here on purpose: the processes get
different hash seeds (so any column or asset order taken from a ``set`` would change) and
LightGBM two threads (so a thread-timing-dependent choice would show). Only the wall-clock
``timing`` section may differ.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
from features.synthetic import SyntheticMarketConfig, generate_market
from models.spec import CalibrationSpec, LGBMParams
from models.walkforward import EvaluationConfig, run_evaluation

market = generate_market(SyntheticMarketConfig(n_assets=3, days=200, seed=5))
config = EvaluationConfig(
    models=("ewma", "har", "lgbm"),
    warmup_months=1,
    tune_months=1,
    train_windows=(None, 60),
    calibration=CalibrationSpec(window_days=30),
    estimators={"lgbm": LGBMParams(n_estimators=60, min_child_samples=50, n_jobs=2)},
)
result = run_evaluation(market, "2024-06-01", "2024-07-15", config)
metrics = result.to_json_dict()
metrics.pop("timing")
json.dump(metrics, sys.stdout, sort_keys=True, default=str)
"""


def _run(hash_seed: str) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_two_runs_give_identical_metrics() -> None:
    first, second = _run("1"), _run("2")
    assert first["mean"]["qlike"]["lgbm"] > 0
    assert first == second
