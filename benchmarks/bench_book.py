"""Benchmark of issue #19's replay options against today's replay, in the same run.

One static-margin scenario over BTCUSDT 1h bars of 2022 (the shared data, or a synthetic
market of the same size without it) with 20 000 traders, timed with:

* **baseline**: ``book_model="legacy", path="wick", impact="off"`` (today's replay);
* ``impact="on"`` (same book and path): the ratio to the baseline is the cost of impact;
* ``path="bridge"`` (16 sub-steps per bar);
* ``book_model="market"``;
* all three at once.

Each line prints its wall time, its ratio to the baseline and the liquidation steps and bad
debt it produced (so a fast run that liquidates nothing is visible).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from liquidation.market_paths import market_paths  # noqa: E402
from liquidation.simulate import (  # noqa: E402
    MarketPaths,
    ReplayConfig,
    Scenario,
    constant_multiplier,
    simulate,
)

START, END = "2022-01-01", "2023-01-01"
TRADERS = 20_000
VARIANTS: dict[str, dict[str, str]] = {
    "baseline legacy/wick/off": {},
    "impact on": {"impact": "on"},
    "path bridge": {"path": "bridge"},
    "book market": {"book_model": "market"},
    "market/bridge/on": {"book_model": "market", "path": "bridge", "impact": "on"},
}


def load_paths() -> tuple[MarketPaths, str]:
    """BTCUSDT 1h of 2022 from the shared data, or a synthetic asset of the same length."""
    root = Path(os.environ.get("DYNAMARGIN_SHARED_DATA", ROOT.parent / "shared" / "data"))
    start, end = pd.Timestamp(START, tz="UTC"), pd.Timestamp(END, tz="UTC")
    if (root / "binance").is_dir():
        from features.sources import load_market

        market, _ = load_market(root, "1h", ["BTCUSDT"], start=start, end=end)
        paths = market_paths(market.bars, market.funding, market.interval, start, end)
        return paths, f"shared data {root}"
    from features.synthetic import SyntheticMarketConfig, generate_market

    days = (end - start).days
    market = generate_market(SyntheticMarketConfig(n_assets=1, days=days, seed=1, start=start))
    paths = market_paths(market.bars, market.funding, market.interval, start, end)
    return paths, "synthetic market (no shared data found)"


def main() -> int:
    paths, source = load_paths()
    print(f"data: {source}; {len(paths.assets)} asset x {paths.n_bars} bars, {TRADERS} traders")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    base = ReplayConfig()
    base = replace(base, book=replace(base.book, n_traders=TRADERS))
    scen = [Scenario("static", 0, constant_multiplier(paths, 1.0))]
    baseline = None
    for name, options in VARIANTS.items():
        started = time.perf_counter()
        [run] = simulate(paths, scen, replace(base, **options))
        took = time.perf_counter() - started
        baseline = baseline or took
        print(
            f"{name:26} {took:7.1f} s  ratio {took / baseline:5.2f}  "
            f"steps {int(run.liquidations.sum()):6d}  bad debt {run.bad_debt.sum():12,.0f} USD"
        )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
