"""Operations endpoints: /healthz, /readyz (expiry, store down, missing assets), /metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.api import create_app
from serving.api_config import ApiConfig
from tests.api.api_seeding import seed_store

pytestmark = pytest.mark.anyio


async def test_healthz_answers_without_touching_the_store(tmp_path: Path, make_client) -> None:
    config = ApiConfig.from_workdir(tmp_path, store_url="postgresql+psycopg://nobody@127.0.0.1:1/x")
    async with make_client(create_app(config)) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_ready_when_every_asset_is_live(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]["assets"]) == {"BTCUSDT", "ETHUSDT", "SOLUSDT"}
    assert response.headers["cache-control"] == "no-store"


async def test_readyz_is_not_ready_once_a_snapshot_expired(tmp_path: Path, make_client) -> None:
    # The last batch was published 3 h ago; snapshots expire 2 h after publication.
    seed_store(tmp_path, ["BTCUSDT"], batches=2, end=datetime.now(UTC) - timedelta(hours=3))
    async with make_client(create_app(ApiConfig.from_workdir(tmp_path))) as client:
        response = await client.get("/readyz")
        still_served = await client.get("/v1/risk/BTCUSDT")
    assert response.status_code == 503
    problem = response.json()
    assert problem["type"].endswith("/not-ready")
    assert problem["checks"]["assets"]["BTCUSDT"].startswith("expired at")
    assert still_served.status_code == 200  # data stays readable; consumers see valid_until


async def test_readyz_requires_the_configured_assets(seeded_workdir: Path, make_client) -> None:
    config = ApiConfig.from_workdir(seeded_workdir, assets=("BTCUSDT", "XRPUSDT"))
    async with make_client(create_app(config)) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["assets"]["XRPUSDT"] == "never published"


async def test_readyz_is_not_ready_on_an_empty_store(tmp_path: Path, make_client) -> None:
    async with make_client(create_app(ApiConfig.from_workdir(tmp_path))) as client:
        response = await client.get("/readyz")
        risk = await client.get("/v1/risk")
    assert response.status_code == 503
    assert "no snapshot" in response.json()["checks"]["store"]
    assert risk.json() == {"count": 0, "snapshots": []}


async def test_unreachable_store_is_503_everywhere_but_healthz(tmp_path: Path, make_client) -> None:
    config = ApiConfig.from_workdir(tmp_path, store_url="postgresql+psycopg://nobody@127.0.0.1:1/x")
    async with make_client(create_app(config)) as client:
        ready = await client.get("/readyz")
        risk = await client.get("/v1/multipliers")
        metrics = await client.get("/metrics")
    assert ready.status_code == 503
    assert ready.json()["checks"]["store"].startswith("unreachable")
    assert risk.status_code == 503
    assert risk.json()["type"].endswith("/store-unavailable")
    assert metrics.status_code == 200


async def test_metrics_count_requests_by_route_and_report_snapshot_age(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/v1/risk/BTCUSDT")
    await client.get("/v1/risk/ETHUSDT")
    await client.get("/v1/risk/NOPE")
    text = (await client.get("/metrics")).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    route = ("route", "/v1/risk/{asset}")
    assert (
        samples[("dynamargin_http_requests_total", (("method", "GET"), route, ("status", "200")))]
        == 2
    )
    assert (
        samples[("dynamargin_http_requests_total", (("method", "GET"), route, ("status", "404")))]
        == 1
    )
    count = samples[("dynamargin_http_request_duration_seconds_count", (("method", "GET"), route))]
    assert count == 3
    for asset in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
        age = samples[("dynamargin_snapshot_age_seconds", (("asset", asset),))]
        assert 0 <= age < 600
        assert samples[("dynamargin_snapshot_seconds_to_expiry", (("asset", asset),))] > 0
        assert samples[("dynamargin_margin_multiplier", (("asset", asset),))] > 0


async def test_unmatched_paths_share_one_metrics_label(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await client.get(f"/random/{i}")
    text = (await client.get("/metrics")).text
    assert 'route="unmatched"' in text
    assert "/random/" not in text
