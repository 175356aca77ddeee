"""Evaluation plots (PNG, matplotlib Agg): forecast vs realized and calibration.

Each function draws one figure from the long forecast frame of
:class:`models.walkforward.EvaluationResult` and returns the written path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def plot_forecast_vs_realized(
    forecasts: pd.DataFrame, asset: str, models: list[str], path: Path
) -> Path:
    """Daily-sampled realized volatility against each model's forecast, with the 99% VaR.

    Parameters
    ----------
    forecasts
        Long frame with ``ts, asset, model, variance, rv, var_99``.
    asset
        The asset to draw.
    models
        Models to overlay (the first one's VaR band is drawn).
    path
        Output PNG.
    """
    plt = _pyplot()
    rows = forecasts.loc[(forecasts["asset"] == asset) & (forecasts["ts"].dt.hour == 23)]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    realized = rows.drop_duplicates("ts").sort_values("ts")
    ax.plot(realized["ts"], np.sqrt(realized["rv"]), color="black", lw=0.8, label="realized")
    for model in models:
        part = rows.loc[rows["model"] == model].sort_values("ts")
        ax.plot(part["ts"], np.sqrt(part["variance"]), lw=1.0, label=model)
    if models:
        first = rows.loc[rows["model"] == models[0]].sort_values("ts")
        ax.plot(first["ts"], first["var_99"], ls="--", lw=0.8, label=f"{models[0]} VaR 99%")
    ax.set_title(f"{asset}: 24h volatility, forecast at 23:00 UTC vs realized")
    ax.set_ylabel("sigma of the 24h log return")
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def plot_calibration(
    forecasts: pd.DataFrame, models: list[str], path: Path, bins: int = 10
) -> Path:
    """Mean realized vs mean forecast variance per forecast decile (log axes), all assets.

    A calibrated forecaster lies on the diagonal.
    """
    from matplotlib.ticker import NullFormatter

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    lo, hi = np.inf, -np.inf
    for model in models:
        part = forecasts.loc[(forecasts["model"] == model) & (forecasts["rv"] > 0)]
        part = part.dropna(subset=["variance", "rv"])
        if part.empty:
            continue
        decile = pd.qcut(part["variance"], bins, labels=False, duplicates="drop")
        grouped = part.groupby(decile)[["variance", "rv"]].mean()
        ax.plot(grouped["variance"], grouped["rv"], marker="o", lw=1.0, label=model)
        lo = min(lo, grouped.min().min())
        hi = max(hi, grouped.max().max())
    if np.isfinite(lo):
        ax.plot([lo, hi], [lo, hi], color="grey", ls=":", lw=1.0, label="ideal")
    ax.set_xscale("log")
    ax.set_yscale("log")
    # Minor log ticks on a short range overprint each other; the major ones suffice.
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("mean forecast variance (decile)")
    ax.set_ylabel("mean realized variance")
    ax.set_title("Calibration of 24h variance forecasts")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path
