"""The store price feed never quotes a bar before it closes; the status endpoint is read-only."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.venue.conftest import ASSETS, HOUR_MS, World
from venue.errors import PriceFeedError
from venue.metrics import VenueMetrics
from venue.price_feed import micro_price
from venue.status_http import StatusServer


def test_a_quote_is_the_close_of_the_newest_bar_closed_by_then(world: World) -> None:
    feed = world.feed()
    bars = world.store.read_bars("1h", list(ASSETS))
    closes = feed.bar_closes("BTCUSDT")
    last_open = closes[-1] - HOUR_MS
    btc = bars[bars["asset"] == "BTCUSDT"].sort_values("ts")
    # One millisecond before the last bar closes, the quote is still the previous bar's.
    early = feed.quotes(int(closes[-1]) - 1)["BTCUSDT"]
    assert early.observed_ms == closes[-2]
    assert early.price == micro_price(float(btc["close"].iloc[-2]), "x")
    on_time = feed.quotes(int(closes[-1]))["BTCUSDT"]
    assert on_time.observed_ms == closes[-1] and on_time.observed_ms - HOUR_MS == last_open
    assert on_time.price == micro_price(float(btc["close"].iloc[-1]), "x")
    assert feed.quotes(int(closes[0]) - 1) == {}  # nothing closed yet


@pytest.mark.parametrize("bad", [float("nan"), 0.0, -1.0, float("inf"), 2e9])
def test_unusable_prices_are_refused(bad: float) -> None:
    with pytest.raises(PriceFeedError):
        micro_price(bad, "BTCUSDT bar")


def test_status_endpoint_serves_status_and_metrics_and_refuses_writes() -> None:
    metrics = VenueMetrics()
    metrics.refused.labels("tampered", "BTCUSDT").inc()
    server = StatusServer(lambda: {"clock": "2024-01-01T00:00:00Z"}, metrics.render).start()
    try:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            assert json.loads(client.get("/status").content) == {"clock": "2024-01-01T00:00:00Z"}
            text = client.get("/metrics").text
            assert (
                'dynamargin_venue_snapshots_refused_total{asset="BTCUSDT",reason="tampered"} 1.0'
                in text
            )
            assert client.post("/status", content=b"{}").status_code == 405
            assert client.delete("/status").status_code == 405
            assert client.get("/nothing").status_code == 404
    finally:
        server.stop()


def test_a_state_dir_refuses_to_restart_under_other_rules(world: World) -> None:
    from venue.errors import VenueConfigError
    from venue.service import Venue
    from venue.settings import VenueSettings

    state = world.workdir / "venue"
    Venue(VenueSettings(ASSETS, state), world.feed()).close()
    Venue(VenueSettings(ASSETS, state), world.feed()).close()  # same rules: fine
    with pytest.raises(VenueConfigError, match="same settings"):
        Venue(VenueSettings(ASSETS, state, fallback_multiplier=1.5), world.feed())
