"""Benchmark of the replay's scale-out (issue #19 item 5): local runner against Dask.

One run measures the same replay twice over 10 assets: with the local runner (every seed's
pass in this process, one after the other) and with the Dask runner on a temporary
LocalCluster of worker processes (one task per seed, :mod:`liquidation.runners`). It checks
the two results are identical array for array and prints the ratio local / Dask, with the
cluster's start-up timed apart.

Default size (``make bench``): 4 seeds x 50 000 traders over 10 assets x 90 days.
``--traders 1000000 --seeds 2 --days 1277`` (``make bench-dask-big``) is the issue's 1M
traders per book over the 10 assets' 3.5 years; ``--workers`` sizes the cluster and
``--address tcp://host:8786`` uses an existing one instead.

On a machine whose cores are busy with other jobs the Dask side cannot be faster than the
free cores allow: the load average is printed at start and end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_replay import load_paths  # noqa: E402
from liquidation.runners import DaskRunner, LocalRunner  # noqa: E402
from liquidation.simulate import (  # noqa: E402
    MarketPaths,
    ReplayConfig,
    ReplaySeries,
    Scenario,
    constant_multiplier,
)
from pipelines.runners import dask_client  # noqa: E402


def window(paths: MarketPaths, days: int) -> MarketPaths:
    """The last ``days`` of ``paths`` (all of it if shorter)."""
    bars = min(paths.n_bars, int(days * 86_400_000 // paths.interval_ms))
    pick = slice(paths.n_bars - bars, paths.n_bars)
    return replace(
        paths,
        ts_ms=paths.ts_ms[pick],
        open=paths.open[:, pick],
        high=paths.high[:, pick],
        low=paths.low[:, pick],
        close=paths.close[:, pick],
        quote_volume=paths.quote_volume[:, pick],
        funding_rate=paths.funding_rate[:, pick],
    )


def identical(left: list[ReplaySeries], right: list[ReplaySeries]) -> bool:
    """Every field of every series equal (arrays bit for bit)."""
    for a, b in zip(left, right, strict=True):
        for f in fields(ReplaySeries):
            x, y = getattr(a, f.name), getattr(b, f.name)
            same = np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y
            if not same:
                return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traders", type=int, default=50_000, help="traders per seed's book")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--days", type=int, default=90, help="last days of the 10-asset data")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--address", default=None, help="existing scheduler tcp://host:port")
    args = parser.parse_args()
    paths, source = load_paths()
    paths = window(paths, args.days)
    start = pd.Timestamp(paths.ts_ms[0], unit="ms", tz="UTC").date()
    print(f"data: {source}; {len(paths.assets)} assets x {paths.n_bars} bars from {start}")
    print(
        f"book: {args.traders} traders x {args.seeds} seeds; load average at start "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    base = ReplayConfig()
    config = replace(base, book=replace(base.book, n_traders=args.traders))
    scenarios = [Scenario("static", s, constant_multiplier(paths, 1.0)) for s in range(args.seeds)]

    started = time.perf_counter()
    local = LocalRunner().simulate(paths, scenarios, config)
    local_s = time.perf_counter() - started
    print(f"local: {local_s:.1f} s wall")

    started = time.perf_counter()
    with dask_client(args.address, n_workers=args.workers) as client:
        ready = time.perf_counter() - started
        run_started = time.perf_counter()
        on_dask = DaskRunner(client).simulate(paths, scenarios, config)
        dask_s = time.perf_counter() - run_started
    where = args.address or f"LocalCluster of {args.workers} processes"
    print(f"dask ({where}): {dask_s:.1f} s wall (+ {ready:.1f} s cluster start-up)")
    same = identical(local, on_dask)
    steps = sum(int(r.liquidations.sum()) for r in local)
    print(f"identical results: {same} ({steps} liquidation steps over all seeds)")
    print(
        f"ratio local / dask: {local_s / dask_s:.2f} (run only), "
        f"{local_s / (dask_s + ready):.2f} (with start-up)"
    )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
