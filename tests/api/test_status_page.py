"""Unit and property tests of the server-rendered status page."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from serving.status_page import (
    SPARK_HEIGHT,
    SPARK_WIDTH,
    AssetRow,
    render_status_page,
    sparkline_svg,
)

NOW = datetime(2025, 6, 30, 23, 30, tzinfo=UTC)


def snapshot(asset: str, status: str, valid_until: str, multiplier: float = 1.25) -> dict:
    return {
        "asset": asset,
        "status": status,
        "valid_until": valid_until,
        "as_of": "2025-06-30T23:00:00Z",
        "margin": {
            "multiplier": multiplier,
            "previous_multiplier": 1.1,
            "imf": 0.0625,
            "mmf": 0.0375,
        },
        "provenance": {
            "model_name": "m",
            "model_version": "7",
            "data_through": "2025-06-30T23:00:00Z",
        },
    }


def test_page_shows_status_expiry_model_and_freshness() -> None:
    rows = [
        AssetRow(snapshot("BTCUSDT", "ok", "2025-07-01T01:00:00Z"), week=[(NOW, 1.25)]),
        AssetRow(snapshot("ETHUSDT", "halted", "2025-06-30T22:00:00Z"), week=[]),
    ]
    html = render_status_page(rows, now=NOW, title="risk <oracle>")
    assert "risk &lt;oracle&gt;" in html  # escaped
    assert 'id="asset-BTCUSDT"' in html and 'id="asset-ETHUSDT"' in html
    assert ">halted</span>" in html
    assert "(expired)" in html and html.count("(expired)") == 1
    assert "m v7" in html
    assert "30 min ago" in html
    assert "no history" in html
    assert "&#9650;" in html  # 1.25 > previous 1.1: arrow up
    assert "<script" not in html


def test_empty_store_renders_a_message() -> None:
    html = render_status_page([], now=NOW, title="t")
    assert "No snapshot has been published yet." in html


@given(
    values=st.lists(
        st.floats(min_value=0.1, max_value=10, allow_nan=False), min_size=1, max_size=200
    ),
    step_minutes=st.integers(min_value=1, max_value=600),
)
def test_sparkline_stays_inside_its_box(values: list[float], step_minutes: int) -> None:
    points = [(NOW + timedelta(minutes=i * step_minutes), v) for i, v in enumerate(values)]
    svg = sparkline_svg(points, label="x")
    coords = re.search(r'points="([^"]+)"', svg).group(1).split()
    for pair in coords:
        x, y = map(float, pair.split(","))
        assert 0 <= x <= SPARK_WIDTH
        assert 0 <= y <= SPARK_HEIGHT
    # A step line has two vertices per change after the first point.
    assert len(coords) == max(2 * len(values) - 1, 2)
