"""Benchmark of the historical replay: 10 assets x 3.5 years of 1h bars, 100 000 traders.

The replay runs the liquidation core's own rules in integer money (``liquidation.rules``),
tick by tick through each bar's path (open, extremes, close). Measured in one run:

1. **headline**: one static-margin scenario over 10 assets (2022-01-01 .. 2025-06-30 of the
   shared data, or a synthetic market of the same size without it) with 100 000 traders;
   aim under 10 s on 2 cores;
2. **baseline**: the same replay of one asset with 10 000 traders; the ratio shows how the
   cost scales with the book and the assets;
3. with ``--stacking``: four policies (static + three dynamic paths) in one pass, against four
   times the headline (the per-bar overhead is shared);
4. with ``--seeds``: what a backtest pass replays, 4 policies x 5 seeds of one asset with
   10 000 traders, as the local runner does it (one pass, each seed in its own position
   slots: ``simulate(..., units=...)``) against one pass per seed (as before); the results
   must be identical bit for bit.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from liquidation.market_paths import market_paths, oracle_sigma  # noqa: E402
from liquidation.runners import replay_units  # noqa: E402
from liquidation.simulate import (  # noqa: E402
    MarketPaths,
    ReplayConfig,
    Scenario,
    constant_multiplier,
    simulate,
)

START, END = "2022-01-01", "2025-07-01"


def load_paths() -> tuple[MarketPaths, str]:
    """The ten real assets from the shared data, or a synthetic market of the same shape."""
    root = Path(os.environ.get("DYNAMARGIN_SHARED_DATA", ROOT.parent / "shared" / "data"))
    start, end = pd.Timestamp(START, tz="UTC"), pd.Timestamp(END, tz="UTC")
    if (root / "binance").is_dir():
        from features.sources import load_market

        market, _ = load_market(root, "1h", None, start=start, end=end)
        paths = market_paths(market.bars, market.funding, market.interval, start, end)
        return paths, f"shared data {root}"
    from features.synthetic import SyntheticMarketConfig, generate_market

    days = (end - start).days
    market = generate_market(SyntheticMarketConfig(n_assets=10, days=days, seed=1, start=start))
    paths = market_paths(market.bars, market.funding, market.interval, start, end)
    return paths, "synthetic market (no shared data found)"


def subset(paths: MarketPaths, asset: int) -> MarketPaths:
    """One asset of ``paths``."""
    pick = slice(asset, asset + 1)
    return replace(
        paths,
        assets=paths.assets[pick],
        open=paths.open[pick],
        high=paths.high[pick],
        low=paths.low[pick],
        close=paths.close[pick],
        quote_volume=paths.quote_volume[pick],
        funding_rate=paths.funding_rate[pick],
    )


def timed(paths: MarketPaths, scenarios: list[Scenario], traders: int) -> tuple[float, int, float]:
    """Wall time of one :func:`simulate` pass, the liquidation steps it produced, and the
    process's CPU time (less sensitive than wall time to other jobs on a shared machine)."""
    base = ReplayConfig()
    config = replace(base, book=replace(base.book, n_traders=traders))
    started, cpu = time.perf_counter(), time.process_time()
    runs = simulate(paths, scenarios, config)
    wall = time.perf_counter() - started
    return wall, int(sum(r.liquidations.sum() for r in runs)), time.process_time() - cpu


def per_unit(traders: int, paths: MarketPaths, seconds: float) -> str:
    """Throughput in trader-bars per second (book size x bars replayed / time)."""
    return f"{traders * paths.n_bars / seconds / 1e6:.0f}M trader-bars/s"


def dynamic_paths(paths: MarketPaths) -> list[np.ndarray]:
    """Three multiplier paths with realistic churn: realized vol over a trailing median."""
    sigma = oracle_sigma(paths, 24)
    frame = pd.DataFrame(sigma.T).ffill().bfill()
    ref = frame.rolling(24 * 90, min_periods=24).median().bfill()
    base = (frame / ref).clip(0.8, 3.0).round(2).to_numpy().T
    return [base, np.maximum(base, 1.0), np.clip(base * 1.2, 0.8, 3.0)]


def seeds_vs_passes(one: MarketPaths) -> None:
    """4 policies x 5 seeds of one asset: one pass keeping the seeds apart vs a pass per seed."""
    base = ReplayConfig()
    config = replace(base, book=replace(base.book, n_traders=10_000))
    policies = [constant_multiplier(one, 1.0), *dynamic_paths(one)]
    scenarios = [Scenario(f"p{i}", seed, p) for i, p in enumerate(policies) for seed in range(5)]
    units = replay_units(scenarios)
    started, cpu = time.perf_counter(), time.process_time()
    together = simulate(one, scenarios, config, units=units)
    wall_one, cpu_one = time.perf_counter() - started, time.process_time() - cpu
    started, cpu = time.perf_counter(), time.process_time()
    apart = [simulate(one, [scenarios[i] for i in unit], config) for unit in units]
    wall_per, cpu_per = time.perf_counter() - started, time.process_time() - cpu
    flat = {
        i: run
        for unit, runs in zip(units, apart, strict=True)
        for i, run in zip(unit, runs, strict=True)
    }
    same = all(
        np.array_equal(together[i].initial_margin, flat[i].initial_margin)
        and np.array_equal(together[i].bad_debt, flat[i].bad_debt)
        for i in range(len(scenarios))
    )
    print(
        f"seeds: 4 policies x 5 seeds, 1 asset, 10000 traders: one pass {wall_one:.1f} s wall "
        f"{cpu_one:.1f} s CPU vs a pass per seed {wall_per:.1f} s wall {cpu_per:.1f} s CPU "
        f"(CPU ratio {cpu_per / cpu_one:.2f}; identical: {same})"
    )


def main() -> int:
    paths, source = load_paths()
    print(f"data: {source}; {len(paths.assets)} assets x {paths.n_bars} bars")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    static = [Scenario("static", 0, constant_multiplier(paths, 1.0))]
    head, liq, head_cpu = timed(paths, static, 100_000)
    print(
        f"headline: 10 assets, 100000 traders, 1 scenario: {head:.1f} s wall, {head_cpu:.1f} s "
        f"CPU ({liq} liquidation steps; {per_unit(100_000, paths, head)} wall, "
        f"{per_unit(100_000, paths, head_cpu)} CPU)"
    )
    one = subset(paths, paths.assets.index("BTCUSDT") if "BTCUSDT" in paths.assets else 0)
    base, _, base_cpu = timed(one, [Scenario("static", 0, constant_multiplier(one, 1.0))], 10_000)
    print(
        f"baseline: 1 asset, 10000 traders: {base:.1f} s wall, {base_cpu:.1f} s CPU; ratio "
        f"headline/baseline {head / base:.2f} wall, {head_cpu / base_cpu:.2f} CPU"
    )
    if "--stacking" in sys.argv:
        four = static + [Scenario(f"dyn{i}", 0, p) for i, p in enumerate(dynamic_paths(paths))]
        stacked, _, _ = timed(paths, four, 100_000)
        print(
            f"stacking: 4 policies in one pass {stacked:.1f} s vs 4 x headline {4 * head:.1f} s "
            f"(ratio {stacked / (4 * head):.2f})"
        )
    if "--seeds" in sys.argv:
        seeds_vs_passes(one)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    aim = 10.0
    print(f"aim: headline under {aim:.0f} s: {'met' if head < aim else 'MISSED'} (wall)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
