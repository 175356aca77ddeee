"""The human status page at ``/``: one server-rendered HTML document, no JavaScript.

Operators and integrators open it to see, per asset, the current multiplier and status,
a sparkline of the last week, the model version and how fresh the data is. CSS and the
SVG sparklines are inline so the page works from a single request, behind any proxy,
and renders the same in a headless browser for the screenshot test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

SPARK_WIDTH = 220
SPARK_HEIGHT = 44
STATUS_COLOURS = {"ok": "#1a7f37", "fallback": "#9a6700", "stale": "#cf222e", "halted": "#8250df"}


@dataclass(frozen=True)
class AssetRow:
    """Everything the page shows for one asset.

    Attributes
    ----------
    snapshot
        The newest RiskSnapshot as JSON data (the v1 wire shape).
    week
        ``(published_at, multiplier)`` over the last week, oldest first.
    live
        The asset's live data freshness record (:mod:`serving.live_data`), if any.
    """

    snapshot: Mapping[str, Any]
    week: Sequence[tuple[datetime, float]]
    live: Mapping[str, Any] | None = None


def render_status_page(rows: Sequence[AssetRow], *, now: datetime, title: str) -> str:
    """Render the status page.

    Parameters
    ----------
    rows
        One row per asset, in display order.
    now
        Render time (UTC), used for data freshness and expiry.
    title
        Page heading.

    Returns
    -------
    str
        A complete HTML5 document.
    """
    body_rows = "\n".join(_row(row, now) for row in rows) or (
        '<tr><td colspan="9" class="empty">No snapshot has been published yet.</td></tr>'
    )
    stamp = now.strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{_CSS}</style></head>
<body><main>
<h1>{escape(title)}</h1>
<p class="meta">Rendered {stamp} &middot; {len(rows)} assets &middot;
machine-readable: <a href="/v1/multipliers">/v1/multipliers</a>,
<a href="/v1/risk">/v1/risk</a>, <a href="/v1/schema">/v1/schema</a>,
<a href="/docs">API docs</a></p>
<table>
<thead><tr><th>Asset</th><th>Multiplier</th><th>Status</th><th>Last 7 days</th>
<th>IMF / MMF</th><th>Model</th><th>Data through</th><th>Data age</th>
<th>Valid until</th></tr></thead>
<tbody>
{body_rows}
</tbody></table>
</main></body></html>
"""


def sparkline_svg(points: Sequence[tuple[datetime, float]], *, label: str) -> str:
    """An inline SVG step line of ``points`` (the multiplier holds until the next update).

    Parameters
    ----------
    points
        ``(time, value)`` pairs, oldest first.
    label
        Accessible name of the chart.
    """
    if not points:
        return '<span class="muted">no history</span>'
    t0 = points[0][0].timestamp()
    span = max(points[-1][0].timestamp() - t0, 1.0)
    values = [v for _, v in points]
    low, high = min(values), max(values)
    pad = max((high - low) * 0.1, 0.05)
    low, high = low - pad, high + pad

    def xy(t: float, v: float) -> tuple[float, float]:
        x = (t - t0) / span * (SPARK_WIDTH - 4) + 2
        y = SPARK_HEIGHT - 2 - (v - low) / (high - low) * (SPARK_HEIGHT - 4)
        return round(x, 1), round(y, 1)

    coords: list[tuple[float, float]] = []
    for i, (when, value) in enumerate(points):
        x, y = xy(when.timestamp(), value)
        if i:
            coords.append((x, coords[-1][1]))
        coords.append((x, y))
    if len(coords) == 1:
        coords.append((SPARK_WIDTH - 2, coords[0][1]))
    path = " ".join(f"{x},{y}" for x, y in coords)
    last_x, last_y = coords[-1]
    summary = (
        f"{label}: {values[0]:.2f} to {values[-1]:.2f}, range {min(values):.2f}-{max(values):.2f}"
    )
    return (
        f'<svg class="spark" width="{SPARK_WIDTH}" height="{SPARK_HEIGHT}" '
        f'viewBox="0 0 {SPARK_WIDTH} {SPARK_HEIGHT}" role="img" aria-label="{escape(summary)}">'
        f"<title>{escape(summary)}</title>"
        f'<polyline fill="none" stroke="#0969da" stroke-width="1.5" points="{path}"/>'
        f'<circle cx="{last_x}" cy="{last_y}" r="2.5" fill="#0969da"/></svg>'
    )


def _row(row: AssetRow, now: datetime) -> str:
    snap = row.snapshot
    asset = str(snap.get("asset", "?"))
    margin = snap.get("margin") or {}
    provenance = snap.get("provenance") or {}
    status = str(snap.get("status", "?"))
    colour = STATUS_COLOURS.get(status, "#57606a")
    multiplier = _num(margin.get("multiplier"))
    previous = _num(margin.get("previous_multiplier"))
    arrow = ""
    if multiplier is not None and previous is not None and multiplier != previous:
        arrow = " &#9650;" if multiplier > previous else " &#9660;"
    data_through = str(provenance.get("data_through") or snap.get("as_of", ""))
    valid_until = str(snap.get("valid_until", ""))
    expired = _parse(valid_until) is not None and _parse(valid_until) <= now
    model = f"{provenance.get('model_name', '?')} v{provenance.get('model_version', '?')}"
    return (
        f'<tr id="asset-{escape(asset)}"><th scope="row">{escape(asset)}</th>'
        f'<td class="num">{_fmt(multiplier, 3)}{arrow}</td>'
        f'<td><span class="badge" style="background:{colour}">{escape(status)}</span></td>'
        f"<td>{sparkline_svg(row.week, label=f'{asset} multiplier, last 7 days')}"
        f"{_range_caption(row.week)}</td>"
        f'<td class="num">{_fmt(_num(margin.get("imf")), 4)} / '
        f"{_fmt(_num(margin.get('mmf')), 4)}</td>"
        f"<td>{escape(model)}</td>"
        f'<td>{escape(data_through)}<br><span class="muted">{_ago(data_through, now)}</span></td>'
        f'<td class="data-age">{_data_age(snap, row.live)}</td>'
        f'<td class="{"expired" if expired else ""}">{escape(valid_until)}'
        f"{' (expired)' if expired else ''}</td></tr>"
    )


def _data_age(snap: Mapping[str, Any], live: Mapping[str, Any] | None) -> str:
    """The data's age: from the live ingest when it runs, else at publication time.

    The live record is evaluated on the venue's clock (the age of the newest closed bar
    when the ingest last looked), with its status and reason; without one, the snapshot
    says how old its data were when it was published.
    """
    if live:
        status = str(live.get("status", "?"))
        colour = STATUS_COLOURS.get(status, "#9a6700" if status == "late" else "#57606a")
        age = live.get("age_seconds")
        text = _span(float(age)) if isinstance(age, int | float) else "no data yet"
        reason = str(live.get("reason") or "")
        venue_time = str(live.get("venue_time") or "")
        return (
            f'<span class="badge" style="background:{colour}">data {escape(status)}</span> '
            f"{escape(text)}"
            f'<br><span class="muted">at venue time {escape(venue_time[:16])}</span>'
            + (f'<br><span class="reason">{escape(reason)}</span>' if reason else "")
        )
    published = _parse(str(snap.get("published_at", "")))
    provenance = snap.get("provenance") or {}
    through = _parse(str(provenance.get("data_through") or snap.get("as_of", "")))
    if published is None or through is None:
        return "&ndash;"
    age = _span((published - through).total_seconds())
    return f'{escape(age)}<br><span class="muted">at publication</span>'


def _span(seconds: float) -> str:
    if seconds < 0:
        return "in the future"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 172800 else f"{seconds / 86400:.1f} days"


def _range_caption(points: Sequence[tuple[datetime, float]]) -> str:
    if not points:
        return ""
    values = [v for _, v in points]
    return (
        f'<span class="muted">{min(values):.2f}&ndash;{max(values):.2f} '
        f"&middot; {len(values)} updates</span>"
    )


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _fmt(value: float | None, digits: int) -> str:
    return "&ndash;" if value is None else f"{value:.{digits}f}"


def _parse(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _ago(text: str, now: datetime) -> str:
    when = _parse(text)
    if when is None:
        return ""
    minutes = int((now - when).total_seconds() // 60)
    if minutes < 0:
        return "in the future"
    if minutes < 120:
        return f"{minutes} min ago"
    return f"{minutes // 60} h ago" if minutes < 2880 else f"{minutes // 1440} days ago"


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;
background:#f6f8fa;color:#1f2328}
main{max-width:1200px;margin:24px auto;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}
.meta{color:#57606a;margin:0 0 16px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d0d7de}
th,td{padding:8px 10px;border-bottom:1px solid #d8dee4;text-align:left;vertical-align:middle}
thead th{background:#eaeef2;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
td.num{font-variant-numeric:tabular-nums;text-align:right;white-space:nowrap}
.badge{color:#fff;border-radius:10px;padding:2px 8px;font-size:12px;font-weight:600}
.muted{color:#57606a;font-size:12px}
.expired{color:#cf222e;font-weight:600}
.empty{text-align:center;color:#57606a;padding:24px}
.reason{color:#cf222e;font-size:12px}
svg.spark{display:block}
"""
