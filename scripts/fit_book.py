"""Fit the market-aware book's leverage and holding time to real liquidations (fit period only).

Usage::

    .venv/bin/python scripts/fit_book.py [--data ../shared/data] [--traders 50000]
        [--json out.json] [--check]

The committed defaults of :class:`liquidation.market_book.MarketBookConfig` (``lev_level``,
``hold_level``) are this script's output with its default arguments (about 10 minutes on
two busy cores). It reads BTCUSDT and ETHUSDT only up to the end of the fit period
(:data:`liquidation.calibration.FIT_PERIOD`): the market is loaded with ``end =
FIT_PERIOD[1]``, the replays stop there, and every real series passes
:func:`liquidation.calibration.fit_days`.

What is fitted, and on what:

* ``lev_level`` (log shift of the leverage scale) so that the book's liquidated notional as a
  share of its own open notional matches Binance's liquidations as a share of Binance's open
  interest, on the fit days with open interest (2022, BTC and ETH; the geometric mean of the
  two assets' ratios is set to 1). A secant search on ``log(sim / real)``, which falls
  nearly linearly in ``lev_level``;
* ``hold_level`` (log shift of the planned holding time): for each value of ``HOLD_GRID``
  ``lev_level`` is fitted as above, and the pair with the highest mean Pearson correlation
  (levels) of simulated with real daily liquidated notional on the fit period (BTC, ETH)
  is kept. Longer holds raise the book's open notional per position, the other lever of
  the share;
* the book's size in USD is not a parameter of the replay: the level scale (real mean over
  simulated mean on the fit days, :func:`liquidation.calibration.fit_level_scale`) is fitted
  by every calibration run on its own fit days; this script prints it for the record.

The replay is ``--book market --path bridge --impact off``, static margin, one seed.

``--check`` compares the fit with the defaults (two decimals) and exits 1 if they differ.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from liquidation.calibration import (
    FIT_PERIOD,
    fit_days,
    fit_level_scale,
    liquidated_share_of_oi,
    pearson,
)
from liquidation.market_book import MarketBookConfig
from liquidation.simulate import ReplayConfig
from pipelines.calibration import AssetData, load_asset, simulate_asset, with_traders

ASSETS = ("BTCUSDT", "ETHUSDT")
HOLD_GRID = (0.0, 1.5, 3.0, 4.5)
#: The secant search's start and its stopping rule (|log(sim / real)|).
LEV_START = (0.0, -2.0)
TOLERANCE = 0.05
FITTED = ("lev_level", "hold_level")


def evaluate(
    assets: dict[str, AssetData], lev_level: float, hold_level: float, traders: int
) -> dict[str, dict[str, float]]:
    """Per asset, on the fit days: the liquidated share of open interest, real and simulated,
    the correlation of daily liquidated notional and the level scale."""
    base = ReplayConfig(book_model="market", path="bridge", impact="off")
    market_book = replace(base.market_book, lev_level=lev_level, hold_level=hold_level)
    replay = with_traders(replace(base, market_book=market_book), traders)
    out = {}
    for name, asset in assets.items():
        sim = fit_days(simulate_asset(asset, replay, end=FIT_PERIOD[1]))
        real = fit_days(asset.liquidations["total"])
        oi = fit_days(asset.oi_usd)
        on_oi = sim.loc[sim.index.intersection(oi.index)]
        out[name] = {
            "liq_oi_real": liquidated_share_of_oi(real, oi),
            "liq_oi_sim": liquidated_share_of_oi(on_oi["total"], on_oi["open_notional"]),
            "corr": pearson(sim["total"], real),
            "scale": fit_level_scale(real, sim["total"]),
        }
    return out


def log_gap(figures: dict[str, dict[str, float]]) -> float:
    """Mean over assets of ``log(simulated / real)`` liquidated share of open interest."""
    return float(np.mean([math.log(f["liq_oi_sim"] / f["liq_oi_real"]) for f in figures.values()]))


def fit_lev_level(
    assets: dict[str, AssetData], hold_level: float, traders: int, iterations: int
) -> tuple[float, dict[str, dict[str, float]]]:
    """``lev_level`` whose replay matches the real share of open interest (secant search)."""
    x0, x1 = LEV_START
    f0 = evaluate(assets, x0, hold_level, traders)
    g0 = log_gap(f0)
    best = (abs(g0), x0, f0)
    for _ in range(iterations):
        f1 = evaluate(assets, x1, hold_level, traders)
        g1 = log_gap(f1)
        best = min(best, (abs(g1), x1, f1), key=lambda b: b[0])
        if abs(g1) < TOLERANCE or g1 == g0:
            break
        x0, g0, x1 = x1, g1, x1 - g1 * (x1 - x0) / (g1 - g0)
        x1 = float(np.clip(x1, -6.0, 2.0))
    return round(best[1], 2), best[2]


def fit(data: Path, traders: int, hold_grid: tuple[float, ...] = HOLD_GRID, iterations: int = 5):
    """The fit (see the module docstring): the chosen levels and every candidate's figures."""
    assets = {name: load_asset(data, name, end=FIT_PERIOD[1]) for name in ASSETS}
    candidates = []
    for hold_level in hold_grid:
        lev_level, _ = fit_lev_level(assets, hold_level, traders, iterations)
        # The figures at the rounded level (the one committed as a default).
        figures = evaluate(assets, lev_level, hold_level, traders)
        corr = float(np.mean([f["corr"] for f in figures.values()]))
        candidates.append(
            {
                "lev_level": lev_level,
                "hold_level": hold_level,
                "mean_corr": corr,
                "log_gap": log_gap(figures),
                "assets": figures,
            }
        )
    chosen = max(candidates, key=lambda c: c["mean_corr"])
    return {"lev_level": chosen["lev_level"], "hold_level": chosen["hold_level"]}, candidates


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = Path(os.environ.get("DYNAMARGIN_SHARED_DATA", "../shared/data"))
    parser.add_argument("--data", type=Path, default=default, help="shared data root")
    parser.add_argument("--traders", type=int, default=50_000, help="positions per replay")
    parser.add_argument("--json", type=Path, help="also write the candidates as JSON")
    parser.add_argument("--check", action="store_true", help="compare with the defaults")
    args = parser.parse_args(argv)
    chosen, candidates = fit(args.data, args.traders)
    print(f"{'hold_level':>10} {'lev_level':>9} {'log_gap':>8} {'mean_corr':>9}  per asset")
    for c in candidates:
        per = "  ".join(
            f"{a} liq/OI {f['liq_oi_sim']:.4f} (real {f['liq_oi_real']:.4f}) r {f['corr']:.3f} "
            f"scale {f['scale']:.1f}"
            for a, f in c["assets"].items()
        )
        print(
            f"{c['hold_level']:>10.2f} {c['lev_level']:>9.2f} {c['log_gap']:>8.3f} "
            f"{c['mean_corr']:>9.3f}  {per}"
        )
    print(f"chosen: {chosen}")
    if args.json:
        args.json.write_text(json.dumps({"chosen": chosen, "candidates": candidates}, indent=2))
    defaults = MarketBookConfig()
    differ = [k for k in FITTED if round(chosen[k], 2) != round(getattr(defaults, k), 2)]
    if args.check and differ:
        print(f"defaults differ from the fit: {differ}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    sys.exit(main(sys.argv[1:]))
