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


def test_data_age_comes_from_the_live_ingest_with_status_and_reason() -> None:
    snap = snapshot("BTCUSDT", "stale", "2025-07-01T01:00:00Z")
    snap["published_at"] = "2025-06-30T23:00:05Z"
    live = {
        "status": "stale",
        "reason": "binance-spot: venue answered HTTP 503 <after retries>",
        "venue_time": "2025-06-30T23:00:05+00:00",
        "age_seconds": 3 * 3600 + 5,
    }
    eth_snap = snapshot("ETHUSDT", "ok", "2025-07-01T01:00:00Z")
    eth_snap["published_at"] = "2025-06-30T23:00:05Z"
    html = render_status_page(
        [AssetRow(snap, [], live=live), AssetRow(eth_snap, [])],
        now=NOW,
        title="t",
    )
    btc = html[html.index('id="asset-BTCUSDT"') : html.index('id="asset-ETHUSDT"')]
    assert "data stale" in btc and "3.0 h" in btc
    assert "venue answered HTTP 503 &lt;after retries&gt;" in btc  # escaped, shown
    eth = html[html.index('id="asset-ETHUSDT"') :]
    # Without a live record: the data's age when the snapshot was published.
    assert '5 s<br><span class="muted">at publication' in eth
    assert "Data age" in html


def test_live_data_file_is_read_strictly_and_a_bad_one_is_ignored(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from serving.live_data import read_live_data

    path = tmp_path / "freshness.json"
    assert read_live_data(path) == {}
    path.write_text('{"schema": "dynamargin.freshness/1", "assets": {"BTCUSDT": {"status": "ok"}}}')
    assert read_live_data(path) == {"BTCUSDT": {"status": "ok"}}
    path.write_text('{"schema": "dynamargin.freshness/1", "assets": {"A": 1, "A": 2}}')
    assert read_live_data(path) == {}  # duplicate keys: refused, page still renders
    path.write_text('{"schema": "other", "assets": {}}')
    assert read_live_data(path) == {}
