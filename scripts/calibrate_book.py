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

With ``--simulate BOOK/PATH/IMPACT`` (repeatable, e.g. ``legacy/wick/off``) it also replays
one static-margin scenario of ``--traders`` positions over each asset's 1h spot bars from the
fit period's start (BTC) or 2022-01 (the others) to the end of the test period, and prints
``sim_r`` (Pearson correlation, levels, of the replay's daily liquidated notional with the
real daily total), ``sim_top1`` (the replay's top-1%-day share), the longs' share on the ten
largest days (real and simulated) and the mean daily liquidations as a share of open
interest (real: Binance's open interest at the day's end valued at the day's last spot
close, BTC and ETH from 2022; simulated: the day's mean open notional of the replay's book)
beside the baseline. No scale is fitted: these are the *uncalibrated* books' figures (the
fit of issue #19 item 4 is not done).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd

from features.sources import load_market
from liquidation.calibration import (
    FIT_PERIOD,
    TEST_PERIOD,
    daily_liquidations,
    daily_log_range,
    in_period,
    liquidated_share_of_oi,
    long_share_of_top_days,
    pearson,
    top_day_share,
)
from liquidation.market_paths import market_paths
from liquidation.simulate import ReplayConfig, Scenario, constant_multiplier, simulate

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


def simulated_daily(data: Path, asset: str, options: dict[str, str], traders: int) -> pd.DataFrame:
    """One static-margin replay of ``asset``, by UTC day: liquidated notional (``total``,
    ``long``, ``short``, USD), mean open notional (``open_notional``) and the last close."""
    start = FIT_PERIOD[0] if asset == "BTCUSDT" else pd.Timestamp("2022-01-01", tz="UTC")
    market, _ = load_market(data, "1h", [asset], start, TEST_PERIOD[1])
    paths = market_paths(market.bars, market.funding, "1h", start, TEST_PERIOD[1])
    base = ReplayConfig()
    cfg = replace(base, book=replace(base.book, n_traders=traders), **options)
    scenario = Scenario("static", 0, constant_multiplier(paths, 1.0))
    [run] = simulate(paths, [scenario], cfg)
    ts = pd.to_datetime(run.ts_ms, unit="ms", utc=True)
    frame = pd.DataFrame(
        {
            "total": run.liquidated_notional,
            "long": run.liquidated_long,
            "open_notional": run.open_notional,
            "close": paths.close[0],
        },
        index=ts,
    )
    daily = frame.resample("1D").agg(
        {"total": "sum", "long": "sum", "open_notional": "mean", "close": "last"}
    )
    daily["short"] = daily["total"] - daily["long"]
    return daily


def simulated_rows(
    data: Path, rows: list[dict[str, object]], variant: str, traders: int
) -> list[dict[str, object]]:
    """``rows`` with the replay's figures of one ``BOOK/PATH/IMPACT`` variant added."""
    book, path, impact = variant.split("/")
    options = {"book_model": book, "path": path, "impact": impact}
    out = []
    for asset in sorted({str(r["asset"]) for r in rows}):
        sim = simulated_daily(data, asset, options, traders)
        raw = pd.read_csv(data / "positioning" / "liquidations_1d" / f"{asset}.csv.gz")
        real = daily_liquidations(raw)
        oi_file = data / "positioning" / "open_interest_1d" / f"{asset}.csv.gz"
        oi_usd = pd.Series(dtype=float, index=pd.DatetimeIndex([], tz="UTC"))
        if oi_file.is_file():
            oi = pd.read_csv(oi_file)
            coins = pd.Series(
                oi["open_interest"].to_numpy(dtype=float),
                index=pd.DatetimeIndex(pd.to_datetime(oi["ts"], utc=True)),
            )
            # Open interest at the day's end in coins, valued at the day's last close.
            oi_usd = (coins * sim["close"].reindex(coins.index)).where(coins > 0)
        for row in rows:
            if row["asset"] != asset:
                continue
            period = FIT_PERIOD if row["period"] == "fit" else TEST_PERIOD
            s, r = in_period(sim, period), in_period(real, period)
            out.append(
                {
                    **row,
                    "variant": variant,
                    "sim_r": pearson(s["total"], r["total"]),
                    "sim_top1": top_day_share(s["total"]),
                    "sim_long_top10": long_share_of_top_days(s),
                    "real_liq_oi": liquidated_share_of_oi(r["total"], in_period(oi_usd, period)),
                    "sim_liq_oi": liquidated_share_of_oi(s["total"], s["open_notional"]),
                }
            )
    return out


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
    baseline = rows
    for variant in args.simulate:
        sim_rows = simulated_rows(args.data, baseline, variant, args.traders)
        print(f"\nreplay {variant}, {args.traders} traders, static margin (not fitted)")
        print(f"{'asset':8} {'period':6} {'baseline_r':>10} {'sim_r':>7} {'top1_real':>9} "
              f"{'sim_top1':>8} {'long10_real':>11} {'long10_sim':>10} {'liq/OI_real':>11} "
              f"{'liq/OI_sim':>10}")  # fmt: skip
        for r in sim_rows:
            print(
                f"{r['asset']:8} {r['period']:6} {r['baseline_r']:>10.3f} {r['sim_r']:>7.3f} "
                f"{r['top1_share']:>9.3f} {r['sim_top1']:>8.3f} {r['long_top10']:>11.3f} "
                f"{r['sim_long_top10']:>10.3f} {r['real_liq_oi']:>11.4f} {r['sim_liq_oi']:>10.4f}"
            )
        rows = rows + sim_rows
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
