"""Benchmark: the full feature matrix for all ten assets of ../shared/data/binance at 1h.

Prints the build time and peak memory (Python allocations via tracemalloc, and the
process's max RSS), then times one windowed feature, Kyle's lambda over 168 bars, against a
naive row-by-row least-squares fit on BTCUSDT in the same run, and prints the ratio and the
largest disagreement between the two. Aim: < 30 s and < 2 GB on 2 cores.

Run: ``.venv/bin/python benchmarks/bench_features.py`` (or ``make bench``); set
``DYNAMARGIN_SHARED_DATA`` to read the data elsewhere.
"""

from __future__ import annotations

import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from features.build import build_features  # noqa: E402
from features.orderflow import kyle_lambda  # noqa: E402
from features.sources import load_market  # noqa: E402
from features.volatility import min_valid_count  # noqa: E402

WINDOW = 168


def naive_kyle_lambda(ret: np.ndarray, flow: np.ndarray, window: int, need: int) -> np.ndarray:
    """The obvious implementation: one least-squares fit per row over its window."""
    out = np.full(ret.size, np.nan)
    for end in range(ret.size):
        y = ret[max(0, end - window + 1) : end + 1]
        x = flow[max(0, end - window + 1) : end + 1]
        ok = ~(np.isnan(y) | np.isnan(x))
        if ok.sum() < max(need, 2):
            continue
        xo, yo = x[ok], y[ok]
        design = np.column_stack([np.ones(xo.size), xo])
        coef, *_ = np.linalg.lstsq(design, yo, rcond=None)
        out[end] = coef[1]
    return out


def main() -> int:
    root = Path(os.environ.get("DYNAMARGIN_SHARED_DATA", PROJECT.parent / "shared" / "data"))
    if not (root / "binance").is_dir():
        print(f"shared data not found at {root}; set DYNAMARGIN_SHARED_DATA", file=sys.stderr)
        return 1
    started = time.perf_counter()
    market, _ = load_market(root, "1h")
    load_seconds = time.perf_counter() - started
    print(
        f"loaded {len(market.assets)} assets, {len(market.bars):,} bars, "
        f"{len(market.funding):,} funding events, {len(market.perp):,} perp bars "
        f"in {load_seconds:.1f} s"
    )

    started = time.perf_counter()
    feature_set = build_features(market)
    build_seconds = time.perf_counter() - started
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux
    # A second, traced build measures the peak of Python allocations (tracing slows it,
    # so it is not the timed one).
    del feature_set
    tracemalloc.start()
    feature_set = build_features(market)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    frame = feature_set.frame
    print(
        f"feature matrix: {len(frame):,} rows x {len(feature_set.catalog)} features "
        f"({frame.memory_usage(deep=True).sum() / 1024**2:.0f} MiB)"
    )
    print(f"build time: {build_seconds:.2f} s (aim < 30 s)")
    print(f"peak traced allocations during build: {peak / 1024**3:.2f} GiB (aim < 2 GB)")
    print(f"process max RSS after load + timed build: {rss_gb:.2f} GiB")

    btc = frame[frame["asset"] == "BTCUSDT"]
    ret = btc["ret_1h"].to_numpy()
    flow = btc["signed_volume"].to_numpy()
    need = min_valid_count(WINDOW, feature_set.config.min_valid_fraction)
    started = time.perf_counter()
    fast = kyle_lambda(ret, flow, WINDOW, need)
    fast_seconds = time.perf_counter() - started
    started = time.perf_counter()
    slow = naive_kyle_lambda(ret, flow, WINDOW, need)
    slow_seconds = time.perf_counter() - started
    both = ~np.isnan(fast) & ~np.isnan(slow)
    disagreement = np.max(np.abs(fast[both] - slow[both]) / np.abs(slow[both]).clip(1e-12))
    print(
        f"kyle_lambda_{WINDOW}h on BTCUSDT ({ret.size:,} rows): rolling sums "
        f"{fast_seconds * 1e3:.1f} ms, naive per-row lstsq {slow_seconds:.2f} s, "
        f"ratio {slow_seconds / fast_seconds:.0f}x; max relative difference {disagreement:.1e}; "
        f"same NaN pattern: {bool(np.array_equal(np.isnan(fast), np.isnan(slow)))}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
