"""Benchmark: the synthetic market (10 assets x 365 days of 1h bars) against a GARCH baseline.

The baseline is what a plain approach costs for the volatility core alone: one univariate
GARCH(1,1)-t path per asset simulated with the ``arch`` package, no OHLC, volume, flow,
perpetuals or funding. The ratio says how much the full generator costs relative to it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arch.univariate import GARCH, ConstantMean, StudentsT

from features.synthetic import SyntheticMarketConfig, generate_market

CONFIG = SyntheticMarketConfig(n_assets=10, days=365, seed=7)
REPEATS = 3


def best_of(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    """Best wall time of ``repeats`` calls, in seconds (the least disturbed by neighbours)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def arch_baseline() -> None:
    """One GARCH(1,1)-t path per asset, the same number of bars."""
    for asset in range(CONFIG.n_assets):
        model = ConstantMean(None, volatility=GARCH(), distribution=StudentsT(seed=asset))
        model.simulate([0.0, 1e-6, 0.05, 0.85, 5.0], nobs=CONFIG.n_bars)


def main() -> int:
    market = generate_market(CONFIG)
    rows = len(market.bars) + len(market.perp) + len(market.funding)
    ours = best_of(lambda: generate_market(CONFIG))
    baseline = best_of(arch_baseline)
    print(f"synthetic market: {CONFIG.n_assets} assets x {CONFIG.days} days x {CONFIG.interval}")
    print(f"  generate_market      {ours:8.3f} s  ({rows / ours:,.0f} rows/s incl. perp+funding)")
    print(f"  arch GARCH baseline  {baseline:8.3f} s  (volatility paths only)")
    print(f"  ratio ours/baseline  {ours / baseline:8.2f}")
    aim = 2.0
    print(f"  aim < {aim:.1f} s: {'met' if ours < aim else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
