"""Estimate the market-aware book's behavioural parameters from real data (fit period only).

Usage::

    .venv/bin/python scripts/estimate_book.py [--data ../shared/data] [--json out.json]
        [--check]

Reads BTCUSDT (the one asset with 1h spot bars before 2022) from ``../shared/data`` up to the
end of the fit period (:data:`liquidation.calibration.FIT_PERIOD`; nothing of the test period
is loaded: the market is read with ``end = FIT_PERIOD[1]`` and every frame passes
:func:`liquidation.calibration.fit_window`). The signals are the book's own
(:func:`liquidation.market_book.signals`, point in time). Each parameter is an OLS
coefficient of a stated proxy, because the data hold no trader-level positions:

* ``rate_trend, rate_vol, rate_funding`` (entry rate): hourly log perp volume (base volume x
  close), minus its trailing 30-day mean and hour-of-day means, on ``|trend|``, ``vol`` and
  ``funding`` at the bar's open. Perp volume stands for the arrival of new positions;
* ``side_trend, side_funding`` (side): the logit of the longs' share of the day's real
  liquidations on ``trend`` and ``funding`` at the day's open, controlling for the day's own
  return (which decides which side is hit). A crowded side is liquidated more, so the tilt of
  the liquidation split measures the tilt of the book;
* ``lev_vol`` (leverage): log of the day's liquidations over open interest (USD, 2022: the
  open interest starts there) on ``vol`` at the day's open, controlling for the log of the
  day's log range. Given the move, a less levered book loses a smaller share of its open
  interest; the coefficient is read as the log leverage response (elasticity 1 assumed);
* ``hold_median_hours`` is *reported only* (open interest over half the perp volume, the
  mean holding time of a contract, 2022): it is dominated by market makers' turnover and
  is far below a retail position's, so the legacy book's 24 h is kept.

Not identified by these data, and kept at neutral values until the calibration against real
liquidations (issue #19 item 4) fits them: ``lev_trend`` and the exit shares and thresholds.

``--check`` compares the estimates with :class:`liquidation.market_book.MarketBookConfig`'s
defaults (rounded to two decimals) and exits 1 if they differ.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from features.sources import load_market
from liquidation.calibration import FIT_PERIOD, daily_liquidations, fit_window
from liquidation.market_book import MarketBookConfig, signals

ASSET = "BTCUSDT"
#: Bars before the fit period that warm the signals up (the 30-day volatility).
WARMUP = pd.Timedelta(days=31)
#: End of the load: the fit period's end plus the day that makes its last daily row known.
LOAD_END = FIT_PERIOD[1] + pd.Timedelta(days=1)
ESTIMATED = ("rate_trend", "rate_vol", "rate_funding", "side_trend", "side_funding", "lev_vol")


def _ols(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OLS coefficients (with intercept, dropped) and their HC0 standard errors."""
    ok = np.isfinite(y) & np.all(np.isfinite(x), axis=1)
    y, x = y[ok], np.column_stack([np.ones(ok.sum()), x[ok]])
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ beta
    xtx_inv = np.linalg.inv(x.T @ x)
    cov = xtx_inv @ (x.T * resid**2) @ x @ xtx_inv
    return beta[1:], np.sqrt(np.diag(cov))[1:]


def estimate(data: Path) -> dict[str, dict[str, float | None]]:
    """The estimates with their standard errors and sample sizes (see the module docstring)."""
    cfg = MarketBookConfig()
    # A daily positioning row is stamped when known (the day's close): the fit's last day is
    # known at the test period's first instant, so the load reaches one day further and
    # fit_window drops every bar of that day.
    market, _ = load_market(data, "1h", [ASSET], FIT_PERIOD[0] - WARMUP, LOAD_END)
    bars = market.bars.sort_values("ts").set_index("ts")
    grid = pd.date_range(bars.index.min(), bars.index.max(), freq="1h")
    close = bars["close"].reindex(grid).ffill()
    funding = (
        market.funding.assign(bar=market.funding["ts"].dt.floor("1h"))
        .groupby("bar")["funding_rate"]
        .sum()
        .reindex(grid)
        .fillna(0.0)
    )
    sig = signals(close.to_numpy()[None, :], funding.to_numpy()[None, :], 1.0, cfg)
    frame = pd.DataFrame(
        {
            "ts": grid,
            "trend": sig.trend[0],
            "vol": sig.vol[0],
            "funding": sig.funding[0],
            "close": close.to_numpy(),
        }
    )
    perp = market.perp.sort_values("ts").set_index("ts")
    frame["perp_usd"] = (perp["volume"] * perp["close"]).reindex(grid).to_numpy()
    frame = fit_window(frame)
    out: dict[str, dict[str, float]] = {}

    # Entry rate: de-seasonalised log perp volume on the signals.
    logv = np.log(frame["perp_usd"].where(frame["perp_usd"] > 0))
    trailing = logv.shift(1).rolling(24 * 30, min_periods=24 * 7).mean()
    y = logv - trailing
    y = y - y.groupby(frame["ts"].dt.hour).transform("mean")
    x = np.column_stack([frame["trend"].abs(), frame["vol"], frame["funding"]])
    beta, se = _ols(y.to_numpy(), x)
    for name, b, s in zip(("rate_trend", "rate_vol", "rate_funding"), beta, se, strict=True):
        out[name] = {"value": float(b), "se": float(s), "n": int(np.isfinite(y).sum())}

    # Daily frames: signals at the day's open, the day's return and range.
    day = frame.set_index("ts")
    opens = day.loc[day.index.hour == 0, ["trend", "vol", "funding"]]
    daily_close = day["close"].resample("1D").last()
    daily_ret = np.log(daily_close / daily_close.shift(1))
    spot = market.bars.set_index("ts")
    rng = np.log(spot["high"].resample("1D").max() / spot["low"].resample("1D").min()).rename(
        "log_range"
    )
    positioning = market.positioning.loc[market.positioning["asset"] == ASSET]
    liq = daily_liquidations(positioning, day_open=False)
    liq = fit_window(liq.reset_index().rename(columns={"day": "ts"})).set_index("ts")
    daily = opens.join([daily_ret.rename("ret"), rng, liq], how="inner")

    # Side: logit of the longs' share of liquidations.
    share = (daily["long"] / daily["total"]).clip(0.01, 0.99)
    y = np.log(share / (1 - share)).to_numpy()
    x = np.column_stack([daily["ret"], daily["trend"], daily["funding"]])
    beta, se = _ols(y, x)
    out["side_trend"] = {"value": float(beta[1]), "se": float(se[1]), "n": len(daily)}
    out["side_funding"] = {"value": float(beta[2]), "se": float(se[2]), "n": len(daily)}

    # Leverage: liquidated share of open interest, given the day's range.
    oi = positioning.assign(day=positioning["ts"] - pd.Timedelta(days=1)).set_index("day")[
        "open_interest"
    ]
    # Open interest at the previous day's end (coins) times the day's open price: known at the open.
    oi_usd = (oi.shift(1) * daily_close.shift(1).reindex(oi.index)).rename("oi_usd")
    lev = daily.join(oi_usd, how="inner").dropna(subset=["oi_usd"])
    lev = lev.loc[(lev["oi_usd"] > 0) & (lev["total"] > 0)]
    y = np.log(lev["total"] / lev["oi_usd"]).to_numpy()
    x = np.column_stack([np.log(lev["log_range"]), lev["vol"]])
    beta, se = _ols(y, x)
    out["lev_vol"] = {"value": float(beta[1]), "se": float(se[1]), "n": len(lev)}

    # Holding time of a contract (reported only, see the docstring).
    perp_daily = (day["perp_usd"]).resample("1D").sum()
    turnover = (oi_usd / (perp_daily.reindex(oi_usd.index) / 2)).dropna()
    turnover = turnover[np.isfinite(turnover) & (turnover > 0)]
    out["contract_hold_hours"] = {
        "value": float(24 * turnover.median()),
        "se": None,
        "n": len(turnover),
    }
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = Path(os.environ.get("DYNAMARGIN_SHARED_DATA", "../shared/data"))
    parser.add_argument("--data", type=Path, default=default, help="shared data root")
    parser.add_argument("--json", type=Path, help="also write the estimates as JSON")
    parser.add_argument("--check", action="store_true", help="compare with the defaults")
    args = parser.parse_args(argv)
    est = estimate(args.data)
    defaults = MarketBookConfig()
    print(f"{'parameter':20} {'estimate':>9} {'se':>8} {'n':>6} {'default':>8}")
    differ = []
    for name, row in est.items():
        d = getattr(defaults, name, None)
        shown = f"{d:>8.2f}" if d is not None else f"{'-':>8}"
        se = f"{row['se']:>8.3f}" if row["se"] is not None else f"{'-':>8}"
        print(f"{name:20} {row['value']:>9.3f} {se} {row['n']:>6} {shown}")
        if name in ESTIMATED and round(row["value"], 2) != round(float(d), 2):
            differ.append(name)
    if args.json:
        args.json.write_text(json.dumps(est, indent=2))
    if args.check and differ:
        print(f"defaults differ from the estimates: {differ}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
