"""Orchestration cost of the features flow: Prefect (threads, Dask) vs the plain build.

Baseline: :func:`features.build.build_features` in process on the same synthetic market.
Measured in one run: the features flow on the thread pool (cold cache), again (every
per-asset stage served from the input-hash cache), and on a 2-worker local Dask cluster
(cache refreshed, so the workers recompute). Prints seconds and ratios to the baseline.

Run: ``.venv/bin/python benchmarks/bench_flows.py [--assets 10 --days 365]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def timed(label: str, call: Callable[[], Any], results: dict[str, float]) -> Any:
    started = time.perf_counter()
    value = call()
    results[label] = time.perf_counter() - started
    print(f"{label:<34s} {results[label]:7.2f} s", flush=True)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--assets", type=int, default=10)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-flows-"))
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from pipelines.flows.runtime import prepare_environment

    prepare_environment(workdir)
    from prefect.settings import PREFECT_TASKS_REFRESH_CACHE, temporary_settings

    from features.build import build_features
    from pipelines.flows.config import DataConfig
    from pipelines.flows.featurize import features_flow
    from pipelines.flows.ingest import ingest_flow
    from pipelines.runners import make_task_runner
    from pipelines.settings import get_settings
    from pipelines.stores import market_store

    data = DataConfig(synthetic_assets=args.assets, synthetic_days=args.days)
    ingest_flow(str(workdir), data)  # also starts the ephemeral server (not timed)
    market = market_store(get_settings(workdir)).read_market(data.interval)
    print(f"market: {args.assets} assets x {args.days} days, {len(market.bars)} bars")
    results: dict[str, float] = {}
    timed("baseline build_features", lambda: build_features(market), results)
    timed("features_flow threads (cold)", lambda: features_flow(str(workdir), data), results)
    timed("features_flow threads (cached)", lambda: features_flow(str(workdir), data), results)
    dask_flow = features_flow.with_options(task_runner=make_task_runner("dask", n_workers=2))
    with temporary_settings({PREFECT_TASKS_REFRESH_CACHE: True}):
        timed("features_flow dask 2 workers", lambda: dask_flow(str(workdir), data), results)
    base = results["baseline build_features"]
    print("\nratio to the in-process build (includes the look-ahead check the flow runs):")
    for label, seconds in results.items():
        print(f"  {label:<34s} x{seconds / base:5.2f}")


if __name__ == "__main__":
    main()
