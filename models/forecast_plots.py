"""Figures of forecasts: calibration, forecast vs realized volatility, importance shift.

Figures are built with the object-oriented Matplotlib API on the Agg canvas, so no global
pyplot state or display is touched (safe in flows and tests).
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from models.review import FORECAST_COLUMN as FORECAST
from models.review import REALIZED_COLUMN as REALIZED

PALETTE = ("#1f4e79", "#c0392b", "#7f8c8d", "#27ae60", "#8e44ad", "#d35400")


def png_bytes(figure: Figure, dpi: int = 100) -> bytes:
    """Render a figure to PNG bytes (figures use the constrained layout, drawn once)."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def calibration_figure(forecasts: Mapping[str, pd.DataFrame], bins: int = 10) -> Figure:
    """Mean realized vs mean forecast variance in forecast deciles, log-log, per model.

    Parameters
    ----------
    forecasts
        Label -> frame with forecast (``variance``) and realized (``rv``) variance columns.
    bins
        Number of forecast quantile bins.
    """
    figure = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = figure.add_subplot()
    lows, highs = [], []
    for i, (label, frame) in enumerate(forecasts.items()):
        binned = calibration_bins(frame, bins)
        if binned.empty:
            continue
        ax.loglog(
            binned["forecast"],
            binned["realized"],
            "o-",
            color=PALETTE[i % len(PALETTE)],
            label=label,
            markersize=4,
        )
        lows.append(binned[["forecast", "realized"]].min().min())
        highs.append(binned[["forecast", "realized"]].max().max())
    if lows:
        line = [min(lows), max(highs)]
        ax.loglog(line, line, "k--", linewidth=0.8, label="perfect calibration")
    # Variances span less than a decade: label 1-2-5 steps, never the colliding minor ticks.
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.0e}"))
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("mean forecast variance (decile)")
    ax.set_ylabel("mean realized variance")
    ax.set_title("Calibration")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return figure


def calibration_bins(frame: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Mean forecast and realized variance per forecast quantile bin (positive rows only)."""
    ok = frame.loc[(frame[FORECAST] > 0) & (frame[REALIZED] > 0), [FORECAST, REALIZED]]
    if len(ok) < bins:
        return pd.DataFrame(columns=["forecast", "realized"])
    codes = pd.qcut(ok[FORECAST].rank(method="first"), bins, labels=False)
    binned = ok.groupby(codes).mean().reset_index(drop=True)
    return binned.rename(columns={FORECAST: "forecast", REALIZED: "realized"})


def forecast_vs_realized_figure(
    forecasts: Mapping[str, pd.DataFrame],
    highlight: str | None = None,
    max_assets: int = 4,
    max_points: int = 400,
) -> Figure:
    """Forecast and realized volatility (sqrt of variance, %) over time, one panel per asset.

    Longer series are averaged into at most ``max_points`` time buckets per line (variances
    are averaged before the square root), which keeps the figure readable and fast to draw.
    """
    assets: list[str] = sorted({a for f in forecasts.values() for a in f["asset"].unique()})
    assets = assets[:max_assets] or ["(none)"]
    figure = Figure(figsize=(9, 2.4 * len(assets)), layout="constrained")
    axes = figure.subplots(len(assets), 1, squeeze=False, sharex=True)[:, 0]
    for ax, asset in zip(axes, assets, strict=True):
        realized_drawn = False
        for i, (label, frame) in enumerate(forecasts.items()):
            rows = _bucketed(frame.loc[frame["asset"] == asset], max_points)
            if rows.empty:
                continue
            if not realized_drawn:
                ax.plot(
                    rows["ts"],
                    100 * np.sqrt(rows[REALIZED]),
                    color="black",
                    linewidth=0.7,
                    alpha=0.6,
                    label="realized",
                )
                realized_drawn = True
            emphasis = label == highlight
            ax.plot(
                rows["ts"],
                100 * np.sqrt(rows[FORECAST]),
                color=PALETTE[i % len(PALETTE)],
                linewidth=1.4 if emphasis else 0.9,
                alpha=1.0 if emphasis else 0.7,
                label=label,
            )
        ax.set_ylabel(f"{asset}\nvol %")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8, ncol=4, loc="upper right")
    axes[0].set_title("Forecast vs realized volatility over the horizon")
    figure.autofmt_xdate()
    return figure


def _bucketed(rows: pd.DataFrame, max_points: int) -> pd.DataFrame:
    rows = rows.sort_values("ts")
    if len(rows) <= max_points:
        return rows
    buckets = np.arange(len(rows)) * max_points // len(rows)
    grouped = rows.groupby(buckets)
    return pd.DataFrame(
        {
            "ts": grouped["ts"].first().to_numpy(),
            FORECAST: grouped[FORECAST].mean().to_numpy(),
            REALIZED: grouped[REALIZED].mean().to_numpy(),
        }
    )


def importance_shift_figure(shift: pd.DataFrame, top: int = 15) -> Figure:
    """Horizontal bars of champion vs challenger importance share for the largest shifts.

    Parameters
    ----------
    shift
        Frame indexed by feature with ``champion``, ``challenger`` and ``delta`` columns.
    top
        Number of features shown (largest absolute delta).
    """
    rows = shift.reindex(shift["delta"].abs().sort_values(ascending=False).index).head(top)
    rows = rows.iloc[::-1]
    figure = Figure(figsize=(7, 0.35 * max(len(rows), 3) + 1.2), layout="constrained")
    ax = figure.add_subplot()
    y = np.arange(len(rows))
    ax.barh(y - 0.2, rows["champion"], height=0.4, color=PALETTE[2], label="champion")
    ax.barh(y + 0.2, rows["challenger"], height=0.4, color=PALETTE[0], label="challenger")
    ax.set_yticks(y, [str(i) for i in rows.index], fontsize=8)
    ax.set_xlabel("share of total importance")
    ax.set_title("Feature-importance shift")
    ax.legend(fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    return figure
