"""The human review report: one self-contained HTML page and a Markdown summary.

The page compares the challenger with the champion and the baselines (pooled and per-asset
QLIKE on a common sample, DM statistics, VaR backtests), shows the gate outcomes, forecast and
calibration plots, and the feature-importance shift. CSS is inline and plots are embedded
as base64 PNG, so the file opens anywhere with no network access.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from models.evaluation import EvaluationError, diebold_mariano, qlike
from models.forecast_plots import (
    calibration_figure,
    forecast_vs_realized_figure,
    importance_shift_figure,
    png_bytes,
)
from models.review import (
    FORECAST_COLUMN,
    FORECAST_KEY,
    REALIZED_COLUMN,
    CandidateEvidence,
    GateReport,
    flatten_evaluation,
)

QLIKE_FORMAT: Final = "{:.4f}"


@dataclass(frozen=True)
class ReviewContext:
    """Everything a review report shows.

    Parameters
    ----------
    model_name
        Registered model name (``dynamargin-vol-<H>h``).
    challenger, champion
        Evidence of both versions (``champion`` None before the first promotion).
    gates
        The gate outcomes of the challenger.
    challenger_importance, champion_importance
        Feature importance per feature, if the models have one.
    run_id
        MLflow run of the challenger.
    """

    model_name: str
    challenger: CandidateEvidence
    champion: CandidateEvidence | None
    gates: GateReport
    challenger_importance: pd.Series | None = None
    champion_importance: pd.Series | None = None
    run_id: str | None = None

    @property
    def title(self) -> str:
        return f"Review of {self.model_name} v{self.challenger.version or '?'}"


@dataclass(frozen=True)
class ReportPaths:
    """Where the report was written."""

    html: Path
    markdown: Path


def write_review_report(context: ReviewContext, reports_dir: Path) -> ReportPaths:
    """Write the HTML page and the Markdown summary under ``reports_dir``.

    Returns
    -------
    ReportPaths
        ``review-<model>-v<version>.html`` and ``.md``.
    """
    reports_dir.mkdir(parents=True, exist_ok=True)
    stem = f"review-{context.model_name}-v{context.challenger.version or 'unregistered'}"
    tables = build_tables(context)
    html_path = reports_dir / f"{stem}.html"
    markdown_path = reports_dir / f"{stem}.md"
    html_path.write_text(render_html(context, tables), encoding="utf-8")
    markdown_path.write_text(render_markdown(context, tables), encoding="utf-8")
    return ReportPaths(html=html_path, markdown=markdown_path)


@dataclass(frozen=True)
class ReportTables:
    """The comparison tables shared by the HTML and Markdown renderings."""

    pooled: pd.DataFrame
    per_asset: pd.DataFrame
    var: pd.DataFrame
    gates: pd.DataFrame
    importance: pd.DataFrame | None
    common: Mapping[str, pd.DataFrame]
    gate_details: pd.DataFrame | None = None


def build_tables(context: ReviewContext) -> ReportTables:
    """Compute every comparison table of the report."""
    common = common_sample(context)
    return ReportTables(
        pooled=pooled_table(common, context.challenger.horizon_hours),
        per_asset=per_asset_table(common),
        var=var_table(context),
        gates=gate_table(context.gates),
        importance=importance_shift(context.champion_importance, context.challenger_importance),
        common=common,
        gate_details=gate_detail_table(context.gates),
    )


def model_labels(context: ReviewContext) -> dict[str, str]:
    """Display label per source: challenger, champion, then each baseline."""
    chal = context.challenger
    labels = {"challenger": f"challenger v{chal.version or '?'} ({chal.model})"}
    if context.champion is not None:
        labels["champion"] = (
            f"champion v{context.champion.version or '?'} ({context.champion.model})"
        )
    return labels


def common_sample(context: ReviewContext) -> dict[str, pd.DataFrame]:
    """Forecasts of every compared model restricted to the ``(ts, asset)`` rows they share.

    All models are scored against the challenger's realized variance on the same rows, so
    the numbers in one table are comparable.
    """
    chal = context.challenger
    labels = model_labels(context)
    sources: dict[str, pd.DataFrame] = {labels["challenger"]: chal.model_forecasts()}
    if context.champion is not None:
        sources[labels["champion"]] = context.champion.model_forecasts()
    for name in sorted(set(chal.forecasts["model"].astype(str)) - {chal.model}):
        sources[name] = chal.model_forecasts(name)
    truth = sources[labels["challenger"]][[*FORECAST_KEY, REALIZED_COLUMN]]
    keys = truth[list(FORECAST_KEY)]
    for frame in sources.values():
        finite = frame.loc[np.isfinite(frame[FORECAST_COLUMN]) & (frame[FORECAST_COLUMN] > 0)]
        keys = keys.merge(finite[list(FORECAST_KEY)], on=list(FORECAST_KEY), how="inner")
    keys = keys.merge(truth, on=list(FORECAST_KEY))
    keys = keys.loc[np.isfinite(keys[REALIZED_COLUMN]) & (keys[REALIZED_COLUMN] > 0)]
    out = {}
    for label, frame in sources.items():
        rows = keys.merge(frame[[*FORECAST_KEY, FORECAST_COLUMN]], on=list(FORECAST_KEY))
        rows["loss"] = qlike(rows[REALIZED_COLUMN], rows[FORECAST_COLUMN])
        out[label] = rows.sort_values(list(FORECAST_KEY)).reset_index(drop=True)
    return out


def pooled_table(common: Mapping[str, pd.DataFrame], horizon: int) -> pd.DataFrame:
    """Pooled QLIKE per model on the common sample, with DM of the challenger against each.

    Negative DM means the challenger has the lower loss.
    """
    labels = list(common)
    challenger = _hourly(common[labels[0]])
    rows = []
    for label in labels:
        frame = common[label]
        hourly = _hourly(frame)
        statistic, pvalue = np.nan, np.nan
        if label != labels[0]:
            try:
                dm = diebold_mariano(challenger.to_numpy(), hourly.to_numpy(), horizon)
                statistic, pvalue = dm.statistic, dm.pvalue
            except EvaluationError:
                pass  # too few common hours: the table shows "n/a" and the gate says why
        rows.append(
            {
                "model": label,
                "pooled QLIKE": float(frame["loss"].mean()) if len(frame) else np.nan,
                "rows": len(frame),
                "DM (challenger vs)": statistic,
                "p (two-sided)": "n/a" if not np.isfinite(pvalue) else f"{pvalue:.3g}",
            }
        )
    return pd.DataFrame(rows)


def per_asset_table(common: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Mean QLIKE per asset (rows) and model (columns) on the common sample."""
    columns = {label: frame.groupby("asset")["loss"].mean() for label, frame in common.items()}
    table = pd.DataFrame(columns)
    table.index.name = "asset"
    return table.reset_index()


def var_table(context: ReviewContext) -> pd.DataFrame:
    """99% VaR backtest per asset: exceptions, Kupiec p and zone, challenger and champion."""
    rows: dict[str, dict[str, object]] = {}
    sources = [("challenger", context.challenger)]
    if context.champion is not None:
        sources.append(("champion", context.champion))
    for role, evidence in sources:
        for key, value in flatten_evaluation(evidence.evaluation).items():
            parts = key.split(".")
            if len(parts) == 4 and parts[0] == "assets" and parts[2] == "var99":
                if parts[3] in ("exceptions", "kupiec_p", "zone"):
                    rows.setdefault(parts[1], {})[f"{role} {parts[3]}"] = value
    table = pd.DataFrame.from_dict(rows, orient="index").sort_index()
    table.index.name = "asset"
    return table.reset_index()


def gate_table(gates: GateReport) -> pd.DataFrame:
    """One row per gate: name, PASS/FAIL and the reviewer sentence."""
    return pd.DataFrame(
        [
            {"gate": r.name, "result": "PASS" if r.passed else "FAIL", "detail": r.summary}
            for r in gates.results
        ]
    )


GATE_DETAIL_KEYS: dict[str, str] = {
    "dm_statistic": "statistic",
    "dm_pvalue": "p-value",
    "kupiec_lr": "statistic",
    "kupiec_p": "p-value",
    "exceptions": "exceptions",
    "n": "n",
}
"""Per-asset gate metrics (``<key>.<asset>``) and their column in :func:`gate_detail_table`."""


def gate_detail_table(gates: GateReport) -> pd.DataFrame | None:
    """One row per gate and asset: the per-asset statistic and p-value behind a gate.

    The per-horizon DM gates list each asset's DM statistic and two-sided p-value; the
    tail-coverage gates each asset's exceptions, Kupiec LR statistic and p-value. ``None``
    when no gate has per-asset numbers.
    """
    rows: dict[tuple[str, str], dict[str, object]] = {}
    for result in gates.results:
        for key, value in result.metrics.items():
            stem, _, asset = str(key).partition(".")
            if asset and stem in GATE_DETAIL_KEYS:
                row = rows.setdefault((result.name, asset), {"gate": result.name, "asset": asset})
                row[GATE_DETAIL_KEYS[stem]] = value
    if not rows:
        return None
    return pd.DataFrame(list(rows.values()))


def importance_shift(
    champion: pd.Series | None, challenger: pd.Series | None
) -> pd.DataFrame | None:
    """Importance shares (each sums to 1) of both models and their difference per feature."""
    if challenger is None:
        return None
    shares = {"challenger": _share(challenger)}
    shares["champion"] = _share(champion) if champion is not None else shares["challenger"] * 0.0
    table = pd.DataFrame(shares).fillna(0.0)[["champion", "challenger"]]
    table["delta"] = table["challenger"] - table["champion"]
    table.index.name = "feature"
    return table.reindex(table["delta"].abs().sort_values(ascending=False).index)


# -- rendering ------------------------------------------------------------------------------

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px 32px;
color:#1b1f23;max-width:1180px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid
#d0d7de;padding-bottom:4px}.meta{color:#57606a;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #d0d7de;
padding:4px 8px;text-align:right}th{background:#f6f8fa}
td:first-child,th:first-child,td.detail,th.detail{text-align:left}td.detail{max-width:620px}.pass{color:#1a7f37;font-weight:600}
.fail{color:#cf222e;font-weight:600}.banner{padding:10px 14px;border-radius:6px;margin:12px 0;
font-weight:600}.banner.ok{background:#dafbe1;border:1px solid #1a7f37}
.banner.bad{background:#ffebe9;border:1px solid #cf222e}img{max-width:100%;border:1px solid #d0d7de;
margin:6px 0}.grid{display:flex;gap:16px;flex-wrap:wrap}
"""


def render_html(context: ReviewContext, tables: ReportTables) -> str:
    """The self-contained HTML page."""
    gates = context.gates
    banner = (
        '<div class="banner ok">All gates passed: the version may be approved.</div>'
        if gates.passed
        else '<div class="banner bad">Gates failed: '
        + html.escape(", ".join(r.name for r in gates.failures))
        + ". Approval needs an explicit, recorded override.</div>"
    )
    champion = context.champion
    meta = [
        f"challenger run {context.run_id or 'n/a'}",
        f"champion v{champion.version}" if champion is not None else "no champion yet",
        f"data through {pd.Timestamp(context.challenger.data_through).isoformat()}",
        f"gates evaluated {gates.evaluated_at.isoformat()}",
        f"reference time {gates.reference_time.isoformat()}",
    ]
    common = tables.common
    frames_for_plots = {label: frame for label, frame in common.items()}
    plots = [
        _img(calibration_figure(frames_for_plots), "calibration"),
        _img(
            forecast_vs_realized_figure(frames_for_plots, highlight=next(iter(common), None)),
            "forecast vs realized",
        ),
    ]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(context.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(context.title)}</h1>",
        f"<div class='meta'>{html.escape(' · '.join(meta))}</div>",
        banner,
        "<h2>Review gates</h2>",
        _html_gates(tables.gates),
        *(
            ["<h2>Gates per asset</h2>", _html_table(tables.gate_details)]
            if tables.gate_details is not None
            else []
        ),
        "<h2>Pooled QLIKE on the common sample (lower is better)</h2>",
        _html_table(tables.pooled),
        "<h2>QLIKE per asset</h2>",
        _html_table(tables.per_asset),
        "<h2>99% VaR backtest per asset</h2>",
        _html_table(tables.var),
        "<h2>Forecasts and calibration</h2>",
        f"<div class='grid'>{plots[0]}</div>{plots[1]}",
    ]
    if tables.importance is not None and not tables.importance.empty:
        parts += [
            "<h2>Feature-importance shift (share of total)</h2>",
            _img(importance_shift_figure(tables.importance), "feature importance shift"),
            _html_table(tables.importance.head(20).reset_index()),
        ]
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(context: ReviewContext, tables: ReportTables) -> str:
    """The Markdown summary (tables only, no images)."""
    status = "PASSED" if context.gates.passed else "FAILED"
    lines = [
        f"# {context.title}",
        "",
        f"Gates: **{status}**. Run `{context.run_id or 'n/a'}`; data through "
        f"{pd.Timestamp(context.challenger.data_through).isoformat()}.",
        "",
        "## Review gates",
        "",
        markdown_table(tables.gates),
        "",
        *(
            ["## Gates per asset", "", markdown_table(tables.gate_details), ""]
            if tables.gate_details is not None
            else []
        ),
        "## Pooled QLIKE on the common sample (lower is better)",
        "",
        markdown_table(tables.pooled),
        "",
        "## QLIKE per asset",
        "",
        markdown_table(tables.per_asset),
        "",
        "## 99% VaR backtest per asset",
        "",
        markdown_table(tables.var),
    ]
    if tables.importance is not None and not tables.importance.empty:
        lines += ["", "## Feature-importance shift (top 10)", ""]
        lines.append(markdown_table(tables.importance.head(10).reset_index()))
    return "\n".join(lines) + "\n"


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table with the report's number formatting."""
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = [
        "| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])


def _html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_gates(frame: pd.DataFrame) -> str:
    rows = []
    for gate, result, detail in frame[["gate", "result", "detail"]].itertuples(index=False):
        css = "pass" if result == "PASS" else "fail"
        rows.append(
            f"<tr><td>{html.escape(gate)}</td><td class='{css}'>{result}</td>"
            f"<td class='detail'>{html.escape(detail)}</td></tr>"
        )
    return (
        "<table><thead><tr><th>gate</th><th>result</th><th class='detail'>detail</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _img(figure: object, alt: str) -> str:
    encoded = base64.b64encode(png_bytes(figure)).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{encoded}'>"


def _cell(value: object) -> str:
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            return "n/a"
        return QLIKE_FORMAT.format(value)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return str(value)


def _hourly(frame: pd.DataFrame) -> pd.Series:
    return frame.groupby("ts")["loss"].mean().sort_index()


def _share(importance: pd.Series) -> pd.Series:
    values = importance.astype(float).abs()
    total = values.sum()
    return values / total if total > 0 else values


def format_qlike(value: float) -> str:
    """How the report prints a QLIKE number (tests look for this exact text)."""
    return QLIKE_FORMAT.format(value)
