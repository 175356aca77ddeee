"""The replay's outputs: the result, a self-contained HTML report and the JSON summary.

The report shows, per policy: the price and the multiplier path, cumulative positions
liquidated and bad debt over time (mean over seeds), the risk-capital frontier (bad debt and
positions liquidated against mean margin posted, static over a range of levels and each
dynamic policy over a range of scales), a bar chart of the headline metrics, and the tables
of the JSON summary (:mod:`liquidation.replay_summary`), the oracle gain captured included.
matplotlib is imported only when a report is drawn, so the core stays light.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from contracts.files import atomic_write_text
from liquidation.replay_summary import POLICIES
from liquidation.simulate import MarketPaths, ReplaySeries

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_COLORS = {
    "static": "#555555",
    "ewma": "#1f77b4",
    "model": "#d62728",
    "oracle": "#2ca02c",
    "served": "#9467bd",
}
_HEADLINE = ("bad_debt", "positions_liquidated", "liquidated_notional", "mean_im")
_GAIN_SPLITS = ("overall", "first_jump", "aftershock")


@dataclass
class ReplayResult:
    """A finished margin replay: the JSON-able summary plus the per-bar series for plots.

    Attributes
    ----------
    summary
        The summary (:func:`liquidation.replay_summary.summarise` plus data and config).
    paths
        The market replayed.
    series
        Runs per policy, one per seed.
    equal_margin_series
        Per dynamic policy, the static runs at its equal-margin level.
    """

    summary: dict[str, Any]
    paths: MarketPaths
    series: dict[str, list[ReplaySeries]]
    equal_margin_series: dict[str, list[ReplaySeries]]


def write_report(result: ReplayResult, report_dir: Path) -> Path:
    """Write ``backtest.html`` (and ``backtest.json``) into ``report_dir``; return the HTML path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    figures = {
        "Price and multiplier": price_multiplier_figure(result),
        "Cumulative positions liquidated and bad debt (mean over seeds)": cumulative_figure(result),
        "Risk-capital frontier (mean over seeds)": frontier_figure(result),
        "Headline metrics per policy": bar_figure(result),
    }
    images = "\n".join(
        f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
        f"src='data:image/png;base64,{png_base64(fig)}'/>"
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
<h2>Equal mean margin (policy / static at the calibrated level)</h2>
<p>Every policy, static levels included, runs under the maintenance rule
<code>{html.escape(str(summary["config"]["replay"]["maintenance_rule"]))}</code>. Headline
counts are positions liquidated and notional liquidated; waterfall steps are counted apart.</p>
{_equal_table(summary)}
<h2>Oracle gain captured at equal mean margin (bad debt)</h2>
<p><code>(1 - policy/static) / (1 - oracle/static)</code>, the static and the oracle both at
the policy's mean margin; mean &plusmn; std of the per-seed ratios (seeds counted), n/a
where the oracle gains less than 5% in a split. First-jump bars: bad debt in the
equal-margin static run of the seed and none in its previous 24 h; aftershock: every other
bar.</p>{_gain_table(summary)}
<h2>Model against EWMA</h2><pre>{html.escape(json.dumps(summary["comparison"], indent=2))}</pre>
{images}
</body></html>"""
    path = atomic_write_text(report_dir / "backtest.html", body)
    write_summary(summary, report_dir / "backtest.json")
    return path


def write_summary(summary: dict[str, Any], path: Path) -> None:
    """Write the JSON summary (numpy scalars become plain numbers)."""
    atomic_write_text(path, json.dumps(summary, indent=2, default=_json_default))


def price_multiplier_figure(result: ReplayResult) -> Figure:
    """Close price of each asset (top) and the multiplier of each policy (bottom, seed 0)."""
    plt = pyplot()
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


def cumulative_figure(result: ReplayResult) -> Figure:
    """Cumulative liquidation steps and bad debt per policy (base IMF and equal margin)."""
    plt = pyplot()
    index = pd.to_datetime(result.paths.ts_ms, unit="ms", utc=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, runs in result.series.items():
        liq = np.mean([np.cumsum(r.positions_liquidated) for r in runs], axis=0)
        bad = np.mean([np.cumsum(r.bad_debt) for r in runs], axis=0)
        left.plot(index, liq, label=name, color=_COLORS[name])
        right.plot(index, bad, label=name, color=_COLORS[name])
    for name, runs in result.equal_margin_series.items():
        if runs:
            bad = np.mean([np.cumsum(r.bad_debt) for r in runs], axis=0)
            liq = np.mean([np.cumsum(r.positions_liquidated) for r in runs], axis=0)
            style = {"color": _COLORS[name], "ls": ":", "label": f"static @ {name} margin"}
            left.plot(index, liq, **style)
            right.plot(index, bad, **style)
    left.set_title("positions liquidated")
    right.set_title("bad debt (USD)")
    for ax in (left, right):
        ax.legend(fontsize=7)
        ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    return fig


def frontier_figure(result: ReplayResult) -> Figure:
    """Bad debt (left) and positions liquidated (right) against mean margin posted.

    Static is drawn over the levels its bisections tried, each dynamic policy over its
    frontier scales (the oracle over its bisection's scales); a policy below the static
    curve buys less risk with the same capital.
    """
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for family, points in result.summary.get("frontier", {}).items():
        x = [p["mean_im"] for p in points]
        style = {"color": _COLORS.get(family, "#000000"), "marker": "o", "ms": 3, "lw": 1}
        left.plot(x, [p["bad_debt"] for p in points], label=family, **style)
        right.plot(x, [p["positions_liquidated"] for p in points], label=family, **style)
    left.set_ylabel("bad debt (USD)")
    right.set_ylabel("positions liquidated")
    for ax in (left, right):
        ax.set_xlabel("mean initial margin posted (USD)")
        ax.set_xscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def bar_figure(result: ReplayResult) -> Figure:
    """Bars of the headline metrics per policy, with the min-max range over seeds."""
    plt = pyplot()
    policies = result.summary["policies"]
    names = [p for p in (*POLICIES, "served") if p in policies]
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


def _policy_table(summary: dict[str, Any]) -> str:
    keys = (
        "bad_debt",
        "positions_liquidated",
        "liquidated_notional",
        "waterfall_steps",
        "topups",
        "topup_collateral",
        "insurance_drawdown",
        "fee_income",
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


def _gain_table(summary: dict[str, Any]) -> str:
    head = "".join(f"<th>{k}</th>" for k in _GAIN_SPLITS)
    rows = []
    for name, block in summary["equal_margin"].items():
        gains = block.get("oracle_gain_captured")
        if gains is None:
            continue
        cells = "".join(f"<td>{_gain_cell(gains[k])}</td>" for k in _GAIN_SPLITS)
        scale = block.get("oracle_at_margin", {}).get("scale")
        at = "own margin" if scale is None else f"oracle scale {scale:.3f}"
        rows.append(f"<tr><th>{html.escape(name)} ({at})</th>{cells}</tr>")
    return f"<table><tr><th>policy</th>{head}</tr>{''.join(rows)}</table>"


def _gain_cell(gain: dict[str, Any]) -> str:
    if gain["mean"] is None:
        return "n/a"
    return f"{gain['mean']:.2f} &plusmn; {gain['std']:.2f} ({gain['n']} seeds)"


def _equal_table(summary: dict[str, Any]) -> str:
    keys = (
        "bad_debt",
        "positions_liquidated",
        "liquidated_notional",
        "waterfall_steps",
        "insurance_drawdown",
        "adl_events",
        "topups",
        "topup_collateral",
        "fee_income",
        "mean_im",
    )
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


def pyplot() -> Any:
    """matplotlib's pyplot on the headless Agg backend, imported on first use."""
    import matplotlib

    matplotlib.use("Agg")  # headless: the report is written to files, never shown
    import matplotlib.pyplot as plt

    return plt


def png_base64(fig: Figure) -> str:
    """``fig`` as a base64 PNG for an inline ``<img>``; the figure is closed."""
    plt = pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} in the backtest summary")
