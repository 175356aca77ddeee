"""The calibration table as text and as a self-contained HTML report (issue #19 item 4).

The rows are :func:`liquidation.calibration.calibration_rows`'; the report adds, per asset, a
plot of real against simulated daily liquidated notional (the simulated series times the
level scale fitted on the fit period), with the fit/test boundary marked. matplotlib is
imported only when a report is drawn (as in :mod:`liquidation.replay_report`).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from contracts.files import atomic_write_text
from liquidation.calibration import FIT_PERIOD, TEST_PERIOD
from liquidation.replay_report import png_base64, pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Columns of the table: (row key, header). Real, simulated and baseline side by side.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("asset", "asset"),
    ("period", "period"),
    ("side", "side"),
    ("days", "days"),
    ("corr_sim", "r sim"),
    ("corr_baseline", "r base"),
    ("top1_real", "top1 real"),
    ("top1_sim", "top1 sim"),
    ("top1_baseline", "top1 base"),
    ("long_top10_real", "long10 real"),
    ("long_top10_sim", "long10 sim"),
    ("long_top10_baseline", "long10 base"),
    ("liq_oi_real", "liq/OI real"),
    ("liq_oi_sim", "liq/OI sim"),
    ("liq_oi_baseline", "liq/OI base"),
    ("level_real", "M$/d real"),
    ("level_sim", "M$/d sim"),
    ("level_baseline", "M$/d base"),
)
_SHARE = {"liq_oi_real", "liq_oi_sim", "liq_oi_baseline"}
_LEVEL = {"level_real", "level_sim", "level_baseline"}

LEGEND = (
    "r: Pearson correlation (levels) of daily liquidated notional with the real one, the "
    "simulated book's (sim) and the day's log(high/low) range's (base); top1: share of the "
    "volume on the top floor(1% x days) days; long10: longs' share on the ten largest days "
    "(base: the range line's notional, all to longs on a down day); liq/OI: mean daily "
    "liquidations over open interest (sim: the book's own open notional; BTC, ETH from "
    "2022); M$/d: mean daily liquidations, million USD (sim: times the level scale, base: "
    "the range line, both fitted on the fit period only)."
)


def cell(key: str, value: Any) -> str:
    """One cell of the table as text (``-`` where a figure does not apply)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key in _LEVEL:
        return f"{float(value) / 1e6:.1f}"
    if key in _SHARE:
        return f"{float(value):.4f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def table_text(rows: list[dict[str, Any]]) -> str:
    """The table as fixed-width text (what ``dynamargin backtest --calibration`` prints)."""
    grid = [[h for _, h in COLUMNS]] + [[cell(k, r.get(k)) for k, _ in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(COLUMNS))]
    return "\n".join(
        " ".join(text.rjust(w) if i > 2 else text.ljust(w) for i, (text, w) in enumerate(
            zip(line, widths, strict=True)))
        for line in grid
    )  # fmt: skip


def liquidations_figure(
    rows: list[dict[str, Any]],
    real: dict[str, pd.DataFrame],
    simulated: dict[str, pd.DataFrame],
) -> Figure:
    """Per asset: real and scaled simulated daily liquidated notional (log scale)."""
    plt = pyplot()
    assets = list(real)
    fig, axes = plt.subplots(len(assets), 1, figsize=(11, 2.6 * len(assets)), squeeze=False)
    scales = {r["asset"]: r["scale"] for r in rows}
    for ax, asset in zip(axes[:, 0], assets, strict=True):
        r = real[asset]["total"]
        s = simulated[asset]["total"] * float(scales.get(asset, math.nan))
        r = r.loc[(r.index >= s.index.min()) & (r.index < TEST_PERIOD[1])]
        ax.plot(r.index, r / 1e6, lw=0.6, color="#000000", label="real (Binance)")
        ax.plot(s.index, s / 1e6, lw=0.6, color="#d62728", alpha=0.8, label="simulated x scale")
        ax.axvline(TEST_PERIOD[0], color="#888888", ls="--", lw=0.8)
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_ylim(bottom=0.0)
        ax.set_ylabel(f"{asset}\nM USD / day")
        ax.legend(fontsize=7, loc="upper right")
    axes[0, 0].set_title(
        f"fit {FIT_PERIOD[0].date()}..{FIT_PERIOD[1].date()} | "
        f"test {TEST_PERIOD[0].date()}..{TEST_PERIOD[1].date()} (dashed)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def write_calibration_report(
    rows: list[dict[str, Any]],
    real: dict[str, pd.DataFrame],
    simulated: dict[str, pd.DataFrame],
    config: dict[str, Any],
    report_dir: Path,
) -> Path:
    """Write ``calibration.html`` (table and plot) and ``calibration.json`` (rows and config)
    into ``report_dir``; return the HTML path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in COLUMNS)
    body_rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell(k, r.get(k)))}</td>" for k, _ in COLUMNS) + "</tr>"
        for r in rows
    )
    title = "Real against simulated daily liquidations"
    image = png_base64(liquidations_figure(rows, real, simulated))
    page = f"""<!doctype html><html><head><meta charset='utf-8'>
<title>dynamargin book calibration</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}
table{{border-collapse:collapse;font-size:12px}}td,th{{border:1px solid #ccc;padding:2px 6px;
text-align:right}}img{{max-width:100%}}</style></head><body>
<h1>Book calibration against Binance liquidations</h1>
<p>Replay {html.escape(json.dumps(config))}. Fitted on the fit period only, reported on both.</p>
<table><tr>{head}</tr>{body_rows}</table>
<p>{html.escape(LEGEND)}</p>
<h2>{title}</h2><img alt='{title}' src='data:image/png;base64,{image}'/>
</body></html>"""
    path = atomic_write_text(report_dir / "calibration.html", page)
    atomic_write_text(
        report_dir / "calibration.json",
        json.dumps(
            {"config": config, "rows": [_finite(r) for r in rows]}, indent=2, default=_plain
        ),
    )
    return path


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    """The row with NaN as ``null`` (JSON has no NaN)."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__} in the calibration report")
