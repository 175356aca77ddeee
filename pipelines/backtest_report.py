"""Backtest outputs: a self-contained HTML report (base64 PNG plots) and MLflow logging.

The report shows, per policy: the price and the multiplier path, cumulative liquidations and
bad debt over time (mean over seeds), a bar chart of the headline metrics at the base IMF
and at equal margin, and the tables of the JSON summary.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: the report is written to files, never shown
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from contracts.files import atomic_write_text
from pipelines.backtest import POLICIES, BacktestResult

EXPERIMENT = "dynamargin-backtest"
"""MLflow experiment of every backtest run."""
_COLORS = {"static": "#555555", "ewma": "#1f77b4", "model": "#d62728", "oracle": "#2ca02c"}
_HEADLINE = ("bad_debt", "liquidations", "insurance_drawdown", "mean_im")


def write_report(result: BacktestResult, report_dir: Path) -> Path:
    """Write ``backtest.html`` (and ``backtest.json``) into ``report_dir``; return the HTML path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    figures = {
        "Price and multiplier": price_multiplier_figure(result),
        "Cumulative liquidations and bad debt (mean over seeds)": cumulative_figure(result),
        "Headline metrics per policy": bar_figure(result),
    }
    images = "\n".join(
        f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
        f"src='data:image/png;base64,{_png(fig)}'/>"
        for title, fig in figures.items()
    )
    summary = result.summary
    body = f"""<!doctype html><html><head><meta charset='utf-8'>
<title>dynamargin backtest</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}
img{{max-width:100%}}</style></head><body>
<h1>Margin backtest: {html.escape(", ".join(summary["data"]["assets"]))}</h1>
<p>{html.escape(summary["data"]["start"])} .. {html.escape(summary["data"]["end"])},
{summary["data"]["n_bars"]} bars, {summary["seeds"]} seeds. Model forecasts:
{html.escape(str(summary["forecasts"].get("model_source", "not used")))}.</p>
<h2>Same base parameters (mean over seeds)</h2>{_policy_table(summary)}
<h2>Equal mean margin (policy / static at the calibrated level)</h2>{_equal_table(summary)}
<h2>Aim</h2><pre>{html.escape(json.dumps(summary["aim"], indent=2))}</pre>
{images}
</body></html>"""
    path = report_dir / "backtest.html"
    path.write_text(body, encoding="utf-8")
    write_summary(summary, report_dir / "backtest.json")
    return path


def write_summary(summary: dict[str, Any], path: Path) -> None:
    """Write the JSON summary (numpy scalars become plain numbers)."""
    atomic_write_text(path, json.dumps(summary, indent=2, default=_json_default))


def price_multiplier_figure(result: BacktestResult) -> Figure:
    """Close price of each asset (top) and the multiplier of each policy (bottom, seed 0)."""
    paths = result.paths
    index = pd.to_datetime(paths.ts_ms, unit="ms", utc=True)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    for a, asset in enumerate(paths.assets):
        top.plot(index, paths.close[a] / paths.close[a, 0], lw=0.7, label=asset)
    top.set_yscale("log")
    top.set_ylabel("close / first close (log)")
    top.legend(fontsize=7, ncol=5)
    for name, runs in result.series.items():
        bottom.plot(index, runs[0].multiplier.mean(axis=0), lw=0.8, label=name, color=_COLORS[name])
    bottom.set_ylabel("multiplier (mean over assets)")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    return fig


def cumulative_figure(result: BacktestResult) -> Figure:
    """Cumulative liquidation steps and bad debt per policy (base IMF and equal margin)."""
    index = pd.to_datetime(result.paths.ts_ms, unit="ms", utc=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, runs in result.series.items():
        liq = np.mean([np.cumsum(r.liquidations) for r in runs], axis=0)
        bad = np.mean([np.cumsum(r.bad_debt) for r in runs], axis=0)
        left.plot(index, liq, label=name, color=_COLORS[name])
        right.plot(index, bad, label=name, color=_COLORS[name])
    for name, runs in result.equal_margin_series.items():
        if runs:
            bad = np.mean([np.cumsum(r.bad_debt) for r in runs], axis=0)
            liq = np.mean([np.cumsum(r.liquidations) for r in runs], axis=0)
            style = {"color": _COLORS[name], "ls": ":", "label": f"static @ {name} margin"}
            left.plot(index, liq, **style)
            right.plot(index, bad, **style)
    left.set_title("liquidation steps")
    right.set_title("bad debt (USD)")
    for ax in (left, right):
        ax.legend(fontsize=7)
        ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    return fig


def bar_figure(result: BacktestResult) -> Figure:
    """Bars of the headline metrics per policy, with the min-max range over seeds."""
    policies = result.summary["policies"]
    names = [p for p in POLICIES if p in policies]
    fig, axes = plt.subplots(1, len(_HEADLINE), figsize=(12, 3.2))
    for ax, key in zip(axes, _HEADLINE, strict=True):
        means = [policies[n][key] for n in names]
        lows = [policies[n][key] - policies[n]["spread"][key]["min"] for n in names]
        highs = [policies[n]["spread"][key]["max"] - policies[n][key] for n in names]
        ax.bar(names, means, yerr=[lows, highs], color=[_COLORS[n] for n in names], capsize=3)
        ax.set_title(key, fontsize=9)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    return fig


def log_to_mlflow(
    result: BacktestResult, tracking_uri: str, artifact_root: Path, files: list[Path]
) -> str:
    """Log params, flattened metrics and the report files to ``dynamargin-backtest``.

    Returns
    -------
    str
        The MLflow run id.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        artifact_root.mkdir(parents=True, exist_ok=True)
        experiment_id = client.create_experiment(
            EXPERIMENT, artifact_location=artifact_root.resolve().as_uri()
        )
    else:
        experiment_id = experiment.experiment_id
    summary = result.summary
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params(
            {
                "assets": ",".join(summary["data"]["assets"]),
                "start": summary["data"]["start"],
                "end": summary["data"]["end"],
                "seeds": summary["seeds"],
                "policies": ",".join(summary["policies"]),
                "n_traders": summary["config"]["replay"]["book"]["n_traders"],
                "base_imf": summary["config"]["replay"]["asset"]["base_imf"],
                "model_source": summary["forecasts"].get("model_source", "none"),
            }
        )
        mlflow.log_metrics(flatten_metrics(summary))
        for path in files:
            mlflow.log_artifact(str(path), artifact_path="backtest")
        return run.info.run_id


def flatten_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """``policies.<p>.<metric>`` and ``equal_margin.<p>.ratio.<metric>`` as MLflow metrics."""
    out: dict[str, float] = {}
    for name, block in summary["policies"].items():
        for key, value in block.items():
            if isinstance(value, int | float):
                out[_key(f"policies.{name}.{key}")] = float(value)
    for name, block in summary["equal_margin"].items():
        out[_key(f"equal_margin.{name}.static_level")] = float(block["static_level"])
        for key, value in block["ratio"].items():
            if value is not None:
                out[_key(f"equal_margin.{name}.ratio.{key}")] = float(value)
    return out


def _policy_table(summary: dict[str, Any]) -> str:
    keys = (
        "bad_debt",
        "liquidations",
        "positions_liquidated",
        "insurance_drawdown",
        "adl_events",
        "mean_im",
        "mean_imf",
        "multiplier_changes",
    )
    head = "".join(f"<th>{k}</th>" for k in keys)
    rows = []
    for name, block in summary["policies"].items():
        cells = "".join(
            f"<td>{_fmt(block[k])} &plusmn; {_fmt(block['spread'][k]['std'])}</td>" for k in keys
        )
        rows.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    return f"<table><tr><th>policy</th>{head}</tr>{''.join(rows)}</table>"


def _equal_table(summary: dict[str, Any]) -> str:
    keys = ("bad_debt", "liquidations", "insurance_drawdown", "adl_events", "mean_im")
    head = "".join(f"<th>{k}</th>" for k in keys)
    rows = []
    for name, block in summary["equal_margin"].items():
        cells = "".join(f"<td>{_fmt(block['ratio'][k])}</td>" for k in keys)
        rows.append(
            f"<tr><th>{html.escape(name)} (static level {block['static_level']:.3f})</th>"
            f"{cells}</tr>"
        )
    return f"<table><tr><th>policy</th>{head}</tr>{''.join(rows)}</table>"


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    value = float(value)
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _key(text: str) -> str:
    # MLflow keys allow alphanumerics, _ - . / and spaces only.
    return re.sub(r"[^0-9A-Za-z_\-./ ]", "_", text)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} in the backtest summary")
