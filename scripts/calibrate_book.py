"""The range baseline of issue #19's calibration: how well the day's own price range tracks
real Binance liquidations, per asset and period.

Usage::

    .venv/bin/python scripts/calibrate_book.py [--data ../shared/data] [--json out.json]

For each of BTC, ETH, SOL and XRP and each period (fit 2021-05..2022-12, test
2023-01..2025-06; :mod:`liquidation.calibration`) it prints, on the days with both series:

* ``baseline_r``: Pearson correlation (levels) of ``log(max high / min low)`` of the UTC day's
  1h spot bars with the day's long + short liquidations in USD;
* ``top1_share``: the real share of liquidation volume on the top ``floor(1% x days)`` days;
* ``long_top10``: the longs' share of the real volume on the ten largest days.

These are the figures a calibrated book must be reported beside (issue #19 acceptance: BTC
0.80 on the fit period, 0.68 on the test period). 1h spot bars before 2022 exist for BTC
only, so the other assets' fit-period figures cover 2022 alone (the ``days`` column says
how many).

With ``--simulate BOOK/PATH/IMPACT`` (repeatable, e.g. ``market/bridge/off``) it also prints
the calibration table of that replay variant, the one ``dynamargin backtest --calibration``
prints (:mod:`pipelines.calibration`): one static-margin scenario of ``--traders`` positions
over each asset's 1h spot bars from the fit period's start (BTC) or 2022-01 (the others) to
the end of the test period, its daily liquidated notional against the real one per period
and side, with the range baseline beside every figure. The level scale and the baseline's
line are fitted on the fit period only; the market book's leverage and holding time are
``scripts/fit_book.py``'s fit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pandas as pd

from features.sources import load_market
from liquidation.calibration import (
    FIT_PERIOD,
    TEST_PERIOD,
    daily_liquidations,
    daily_log_range,
    in_period,
    long_share_of_top_days,
    pearson,
    top_day_share,
)
from liquidation.calibration_report import table_text
from liquidation.simulate import ReplayConfig
from pipelines.calibration import run_calibration, with_traders

ASSETS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")


def baseline_rows(data: Path, assets: tuple[str, ...] = ASSETS) -> list[dict[str, object]]:
    """One row per asset and period (see the module docstring)."""
    rows: list[dict[str, object]] = []
    for asset in assets:
        market, _ = load_market(data, "1h", [asset], FIT_PERIOD[0], TEST_PERIOD[1])
        log_range = daily_log_range(market.bars)
        raw = pd.read_csv(data / "positioning" / "liquidations_1d" / f"{asset}.csv.gz")
        liq = daily_liquidations(raw)
        for name, period in (("fit", FIT_PERIOD), ("test", TEST_PERIOD)):
            both = in_period(liq, period).join(in_period(log_range, period), how="inner")
            rows.append(
                {
                    "asset": asset,
                    "period": name,
                    "days": len(both),
                    "first_day": str(both.index.min().date()) if len(both) else None,
                    "baseline_r": pearson(both["log_range"], both["total"]),
                    "top1_share": top_day_share(both["total"]),
                    "long_top10": long_share_of_top_days(both),
                }
            )
    return rows


def simulated_rows(
    data: Path, assets: tuple[str, ...], variant: str, traders: int
) -> list[dict[str, object]]:
    """The calibration table of one ``BOOK/PATH/IMPACT`` variant
    (:func:`pipelines.calibration.run_calibration`, the rows of ``dynamargin backtest
    --calibration``), each row tagged with the variant."""
    book, path, impact = variant.split("/")
    replay = with_traders(ReplayConfig(book_model=book, path=path, impact=impact), traders)
    result = run_calibration(data, replay, assets)
    return [{**row, "variant": variant} for row in result.rows]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = Path(os.environ.get("DYNAMARGIN_SHARED_DATA", "../shared/data"))
    parser.add_argument("--data", type=Path, default=default, help="shared data root")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument(
        "--simulate", action="append", default=[], help="replay variant BOOK/PATH/IMPACT"
    )
    parser.add_argument("--traders", type=int, default=50_000, help="positions per replay")
    parser.add_argument("--assets", default=",".join(ASSETS), help="comma-separated symbols")
    args = parser.parse_args(argv)
    if not (args.data / "positioning").is_dir():
        parser.error(f"{args.data} holds no positioning/ folder")
    assets = tuple(a.strip().upper() for a in args.assets.split(",") if a.strip())
    unknown = sorted(set(assets) - set(ASSETS))
    if unknown:
        parser.error(f"--assets: no real liquidations for {unknown}; choose from {ASSETS}")
    rows = baseline_rows(args.data, assets)
    print(f"{'asset':8} {'period':6} {'days':>5} {'from':10} {'baseline_r':>10} "
          f"{'top1_share':>10} {'long_top10':>10}")  # fmt: skip
    for r in rows:
        print(
            f"{r['asset']:8} {r['period']:6} {r['days']:>5} {r['first_day']!s:10} "
            f"{r['baseline_r']:>10.3f} {r['top1_share']:>10.3f} {r['long_top10']:>10.3f}"
        )
    for variant in args.simulate:
        sim_rows = simulated_rows(args.data, assets, variant, args.traders)
        print(f"\nreplay {variant}, {args.traders} traders, static margin")
        print(table_text(sim_rows))
        rows = rows + sim_rows
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
