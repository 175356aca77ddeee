"""Every public read endpoint against the real app on a store of real signed snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import jsonschema
import pytest

from serving.signing import verify_snapshot, verify_snapshot_bytes
from serving.standard import ORACLE_UPDATE_TYPES
from tests.api.api_seeding import ASSETS

pytestmark = pytest.mark.anyio


async def test_risk_lists_the_newest_snapshot_of_every_asset(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/risk")
    assert response.status_code == 200
    body = response.json()
    assert [s["asset"] for s in body["snapshots"]] == sorted(ASSETS)
    assert body["count"] == len(ASSETS)
    assert {s["update_id"] for s in body["snapshots"]} == {8}


async def test_single_snapshot_body_is_the_signed_canonical_json(
    client: httpx.AsyncClient,
) -> None:
    keys = (await client.get("/v1/keys")).json()
    response = await client.get("/v1/risk/BTCUSDT", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    result = verify_snapshot_bytes(
        response.content,
        trusted_public_keys=[keys["ed25519"]["public_key"]],
        trusted_signers=[keys["eip712"]["signer"]],
    )
    assert result.ok, result.errors
    assert response.json()["asset"] == "BTCUSDT"


async def test_asset_names_are_case_insensitive(client: httpx.AsyncClient) -> None:
    lower = await client.get("/v1/risk/btcusdt")
    assert lower.status_code == 200
    assert lower.json()["asset"] == "BTCUSDT"


async def test_every_served_snapshot_validates_against_the_served_schema(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/v1/schema")).json()
    validator = jsonschema.Draft202012Validator(schema)
    for snap in (await client.get("/v1/risk")).json()["snapshots"]:
        assert list(validator.iter_errors(snap)) == []
        assert verify_snapshot(snap).ok


async def test_time_travel_returns_what_was_in_force(client: httpx.AsyncClient) -> None:
    history = (await client.get("/v1/risk/ETHUSDT/history?limit=100")).json()["snapshots"]
    third = history[2]
    published = datetime.fromisoformat(third["published_at"].replace("Z", "+00:00"))
    # One second after the third publication, the third one is in force...
    at = (published + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = await client.get("/v1/risk/ETHUSDT", params={"at": at})
    assert response.status_code == 200
    assert response.json()["update_id"] == third["update_id"]
    assert "immutable" in response.headers["cache-control"]
    # ...and one second before it, the second one.
    before = (published - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    earlier = await client.get("/v1/risk/ETHUSDT", params={"at": before})
    assert earlier.json()["update_id"] == history[1]["update_id"]


async def test_time_travel_before_the_first_publication_is_a_404_problem(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/risk/ETHUSDT", params={"at": "2001-01-01T00:00:00Z"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/no-snapshot-at-time")


async def test_time_travel_into_the_future_is_a_422_problem(client: httpx.AsyncClient) -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = await client.get("/v1/risk/ETHUSDT", params={"at": future})
    assert response.status_code == 422
    assert response.json()["parameter"] == "at"


async def test_history_pages_through_every_publication_once(client: httpx.AsyncClient) -> None:
    seen: list[int] = []
    url: str | None = "/v1/risk/SOLUSDT/history?limit=3"
    pages = 0
    while url is not None:
        response = await client.get(url)
        assert response.status_code == 200
        body = response.json()
        seen.extend(s["update_id"] for s in body["snapshots"])
        pages += 1
        if body["next_cursor"] is None:
            assert "link" not in response.headers
            url = None
        else:
            link = response.headers["link"]
            assert link.endswith('rel="next"')
            url = link[link.index("<") + 1 : link.index(">")]
    assert seen == list(range(1, 9))
    assert pages == 3


async def test_history_window_filters_by_publication_time(client: httpx.AsyncClient) -> None:
    everything = (await client.get("/v1/risk/BTCUSDT/history")).json()["snapshots"]
    start, end = everything[2]["published_at"], everything[4]["published_at"]
    window = await client.get("/v1/risk/BTCUSDT/history", params={"from": start, "to": end})
    assert [s["update_id"] for s in window.json()["snapshots"]] == [3, 4, 5]
    assert "immutable" in window.headers["cache-control"]


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "cursor=xyz",
        "from=yesterday",
        "from=2025-02-01T00:00:00Z&to=2025-01-01T00:00:00Z",
    ],
)
async def test_bad_history_parameters_are_422_problems(
    client: httpx.AsyncClient, query: str
) -> None:
    response = await client.get(f"/v1/risk/BTCUSDT/history?{query}")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert problem["title"] == "Unprocessable Entity"
    assert problem["instance"] == "/v1/risk/BTCUSDT/history"


@pytest.mark.parametrize("path", ["/v1/risk/DOGEUSDT", "/v1/risk/DOGEUSDT/history"])
async def test_unknown_asset_is_a_404_problem_naming_known_assets(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    problem = response.json()
    assert problem["type"].endswith("/unknown-asset")
    assert problem["asset"] == "DOGEUSDT"
    assert all(asset in problem["detail"] for asset in ASSETS)


async def test_multipliers_is_a_compact_map_consistent_with_the_snapshots(
    client: httpx.AsyncClient,
) -> None:
    table = (await client.get("/v1/multipliers")).json()["multipliers"]
    snapshots = {s["asset"]: s for s in (await client.get("/v1/risk")).json()["snapshots"]}
    assert set(table) == set(ASSETS)
    for asset, row in table.items():
        assert row["multiplier"] == snapshots[asset]["margin"]["multiplier"]
        assert row["status"] == snapshots[asset]["status"]
        assert row["valid_until"] == snapshots[asset]["valid_until"]
        assert row["imf"] == snapshots[asset]["margin"]["imf"]


async def test_oracle_updates_carry_previous_values_from_the_prior_publication(
    client: httpx.AsyncClient,
) -> None:
    updates = (await client.get("/v1/oracle-updates")).json()["updates"]
    assert len(updates) == len(ASSETS) * len(ORACLE_UPDATE_TYPES)
    history = (await client.get("/v1/risk/BTCUSDT/history")).json()["snapshots"]
    latest, prior = history[-1], history[-2]
    sigma = next(u for u in updates if u["market"] == "BTCUSDT" and u["updateType"] == "sigma")
    assert sigma["newValue"] == latest["sigma"]
    assert sigma["previousValue"] == prior["sigma"]
    assert sigma["referenceId"] == latest["provenance"]["reference_id"]
    assert sigma["updateId"] == latest["update_id"]


async def test_keys_expose_public_parts_only(client: httpx.AsyncClient) -> None:
    keys = (await client.get("/v1/keys")).json()
    assert len(keys["ed25519"]["public_key"]) == 64
    assert keys["eip712"]["signer"].startswith("0x")
    assert keys["eip712"]["domain"]["name"] == "dynamargin"
    text = str(keys).lower()
    assert "private" not in text and "begin" not in text


async def test_openapi_documents_every_endpoint(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    expected = {
        "/v1/risk",
        "/v1/risk/{asset}",
        "/v1/risk/{asset}/history",
        "/v1/multipliers",
        "/v1/oracle-updates",
        "/v1/schema",
        "/v1/keys",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/admin/assets/{asset}/halt",
        "/v1/admin/assets/{asset}/resume",
        "/v1/admin/assets/{asset}/override",
        "/v1/admin/assets/{asset}/clear-override",
        "/",
    }
    assert expected <= set(paths)


@pytest.mark.parametrize(
    "query",
    ["at=9999-12-31T23:00:00-05:00", "at=0001-01-01T00:30:00%2B01:00"],
)
async def test_times_outside_the_utc_range_are_422_not_500(
    client: httpx.AsyncClient, query: str
) -> None:
    response = await client.get(f"/v1/risk/BTCUSDT?{query}")
    assert response.status_code == 422
    history = await client.get(f"/v1/risk/BTCUSDT/history?{query.replace('at=', 'to=')}")
    assert history.status_code == 422
