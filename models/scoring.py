"""Scores of out-of-sample forecasts: losses, Diebold–Mariano, VaR and ES backtests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from models.evaluation import (
    acerbi_szekely_z2,
    diebold_mariano,
    mincer_zarnowitz,
    mse_log,
    qlike,
    var_backtest,
)


@dataclass(frozen=True)
class Scoring:
    """What the scores are computed against.

    Attributes
    ----------
    primary
        The model whose VaR/ES are backtested (the challenger).
    horizon
        Target window in bars (Newey–West lag of the DM test).
    alpha
        VaR tail probability.
    daily_anchor_hour
        UTC hour of the bar whose forecast is backtested each day (23: the next calendar
        day), giving non-overlapping ``H = 24`` windows.
    """

    primary: str
    horizon: int
    alpha: float = 0.01
    daily_anchor_hour: int = 23


def score_forecasts(
    forecasts: pd.DataFrame, models: Sequence[str], scoring: Scoring
) -> dict[str, Any]:
    """Per-asset and mean scores of calibrated out-of-sample forecasts.

    Losses are compared on the rows where the realized variance and every model's
    forecast exist, so all models face the same targets. Diebold–Mariano compares each model
    with the best baseline (every model but the primary) using a Newey–West lag of ``H``.

    Parameters
    ----------
    forecasts
        Long frame ``ts, asset, model, variance, rv, ret_fwd, var_99, es_99``.
    models
        The models to score (columns of the comparison).
    scoring
        Primary model, horizon, VaR level and the daily anchor hour of the VaR backtest.

    Returns
    -------
    dict
        ``assets.<SYM>.{n, qlike, mse_log, mz_r2, dm_pvalue, dm_stat, best_baseline, var99,
        es99}`` and ``mean.{qlike, mse_log}``.
    """
    models = list(models)
    wide = forecasts.pivot_table(
        index=["ts", "asset"], columns="model", values="variance", aggfunc="first"
    )
    realized = forecasts.drop_duplicates(["ts", "asset"]).set_index(["ts", "asset"])["rv"]
    wide = wide.join(realized.rename("__rv__"), how="inner")
    wide = wide.dropna(subset=[*models, "__rv__"])
    wide = wide.loc[wide["__rv__"] > 0]
    baselines = [m for m in models if m != scoring.primary]
    out: dict[str, Any] = {"assets": {}, "mean": {"qlike": {}, "mse_log": {}}}
    for asset, block in wide.groupby(level="asset", sort=True):
        block = block.sort_index(level="ts")
        rv = block["__rv__"].to_numpy()
        losses = {m: qlike(rv, block[m].to_numpy()) for m in models}
        entry: dict[str, Any] = {
            "n": len(block),
            "qlike": {m: float(np.mean(v)) for m, v in losses.items()},
            "mse_log": {m: float(np.mean(mse_log(rv, block[m].to_numpy()))) for m in models},
            "mz_r2": {m: mincer_zarnowitz(rv, block[m].to_numpy()).r2 for m in models},
            "dm_pvalue": {},
            "dm_stat": {},
        }
        if baselines:
            best = min(baselines, key=lambda m: entry["qlike"][m])
            entry["best_baseline"] = best
            for m in models:
                if m == best:
                    continue
                dm = diebold_mariano(losses[m], losses[best], scoring.horizon)
                entry["dm_pvalue"][m] = dm.pvalue
                entry["dm_stat"][m] = dm.statistic
        entry.update(_risk_backtests(forecasts, str(asset), scoring))
        out["assets"][str(asset)] = entry
    for m in models:
        out["mean"]["qlike"][m] = float(np.mean([a["qlike"][m] for a in out["assets"].values()]))
        out["mean"]["mse_log"][m] = float(
            np.mean([a["mse_log"][m] for a in out["assets"].values()])
        )
    return out


def non_overlapping(ts: pd.Series, horizon: int, step: pd.Timedelta) -> np.ndarray:
    """Mask of the rows whose ``H``-bar windows do not overlap: one every ``H`` bars.

    Keeps the rows whose window ends (bar ``t + H`` closes) on a multiple of ``H`` bars
    since the Unix epoch, so the kept windows tile time exactly; for hourly bars and
    ``H = 24`` that is the bar opening at 23:00 UTC, the daily anchor of the VaR backtest.
    Coverage tests (Kupiec, Christoffersen) assume independent trials and need this.
    """
    bars = pd.DatetimeIndex(ts).asi8 // step.value
    return np.asarray((bars + 1) % horizon == 0)


def _risk_backtests(forecasts: pd.DataFrame, asset: str, scoring: Scoring) -> dict[str, Any]:
    rows = forecasts.loc[
        (forecasts["model"] == scoring.primary)
        & (forecasts["asset"] == asset)
        & (forecasts["ts"].dt.hour == scoring.daily_anchor_hour)
    ].sort_values("ts")
    days = -(-scoring.horizon // 24)
    if days > 1:
        # A window longer than a day: keep every days-th anchor so windows do not overlap.
        ordinal = (rows["ts"] - pd.Timestamp("1970-01-01", tz="UTC")).dt.days
        rows = rows.loc[ordinal % days == 0]
    rows = rows.dropna(subset=["var_99", "es_99", "ret_fwd"])
    if len(rows) < 10:
        return {"var99": {"n": len(rows)}, "es99": {}}
    loss = -np.expm1(rows["ret_fwd"].to_numpy())
    var = rows["var_99"].to_numpy()
    es = rows["es_99"].to_numpy()
    backtest = var_backtest(loss, var, scoring.alpha)
    # Basel reads the zone off the most recent 250 daily observations; the whole-period
    # zone (binomial thresholds scaled to n) is kept alongside.
    backtest["zone_scaled"] = backtest["zone"]
    last = slice(-250, None)
    recent = var_backtest(loss[last], var[last], scoring.alpha)
    backtest["n_250"] = recent["n"]
    backtest["exceptions_250"] = recent["exceptions"]
    backtest["zone"] = recent["zone"]
    z2 = acerbi_szekely_z2(loss, var, es, scoring.alpha)
    return {"var99": backtest, "es99": {"z2": z2.statistic, "p": z2.pvalue}}
