"""ETag/304, Cache-Control, gzip, body limits, CORS and problem+json, end to end and unit."""

from __future__ import annotations

import gzip
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from serving.api import create_app
from serving.api_config import ApiConfig
from serving.http_caching import (
    IMMUTABLE_MAX_AGE_SECONDS,
    conditional_response,
    etag_matches,
    max_age_seconds,
    render_bytes,
)
from serving.latest_view import parse_time

CACHED_PATHS = [
    "/v1/risk",
    "/v1/risk/BTCUSDT",
    "/v1/risk/BTCUSDT/history",
    "/v1/multipliers",
    "/v1/oracle-updates",
    "/v1/schema",
    "/v1/keys",
    "/",
]


@pytest.mark.anyio
@pytest.mark.parametrize("path", CACHED_PATHS)
async def test_if_none_match_with_the_etag_returns_a_bodiless_304(
    client: httpx.AsyncClient, path: str
) -> None:
    first = await client.get(path)
    assert first.status_code == 200
    etag = first.headers["etag"]
    again = await client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert "max-age" in again.headers["cache-control"]
    listed = await client.get(path, headers={"If-None-Match": f'"other", {etag}'})
    assert listed.status_code == 304
    stale = await client.get(path, headers={"If-None-Match": 'W/"not-the-etag"'})
    assert stale.status_code == 200


@pytest.mark.anyio
async def test_etag_changes_when_a_new_batch_is_published(fresh_workdir: Path, make_client) -> None:
    from tests.api.api_seeding import seed_store

    app = create_app(ApiConfig.from_workdir(fresh_workdir, refresh_seconds=0))
    async with make_client(app) as client:
        before = await client.get("/v1/multipliers")
        seed_store(fresh_workdir, ["BTCUSDT", "ETHUSDT", "SOLUSDT"], batches=1).close()
        after = await client.get(
            "/v1/multipliers", headers={"If-None-Match": before.headers["etag"]}
        )
    assert after.status_code == 200
    assert after.headers["etag"] != before.headers["etag"]
    assert {r["update_id"] for r in after.json()["multipliers"].values()} == {4}


@pytest.mark.anyio
async def test_max_age_counts_down_to_the_next_expected_publication(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/risk/BTCUSDT")
    published = parse_time(response.json()["published_at"])
    max_age = int(re.search(r"max-age=(\d+)", response.headers["cache-control"]).group(1))
    expected = (published + timedelta(hours=1) - datetime.now(UTC)).total_seconds()
    assert abs(max_age - expected) <= 5
    assert 0 < max_age <= 3600


@pytest.mark.anyio
async def test_late_publisher_means_max_age_zero(fresh_workdir: Path, make_client) -> None:
    # Everything was published over 6 hours ago with an hourly cadence: revalidate always.
    app = create_app(ApiConfig.from_workdir(fresh_workdir, update_interval=timedelta(seconds=1)))
    async with make_client(app) as client:
        response = await client.get("/v1/multipliers")
    assert "max-age=0" in response.headers["cache-control"]


@pytest.mark.anyio
async def test_gzip_is_served_when_accepted_and_decodes_to_the_same_body(
    client: httpx.AsyncClient,
) -> None:
    plain = await client.get("/v1/risk", headers={"Accept-Encoding": "identity"})
    packed = await client.get("/v1/risk", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.headers["vary"] == "Accept-Encoding"
    assert packed.json() == plain.json()  # httpx decoded it
    assert int(packed.headers["content-length"]) < len(plain.content)
    refused = await client.get("/v1/risk", headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers


@pytest.mark.anyio
async def test_oversized_bodies_are_refused_with_413_problem(client: httpx.AsyncClient) -> None:
    big = b'{"reason": "' + b"x" * 20_000 + b'"}'
    response = await client.post(
        "/v1/admin/assets/BTCUSDT/halt", content=big, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/content-too-large")


@pytest.mark.anyio
async def test_streamed_oversized_body_without_length_is_refused(
    fresh_workdir: Path, make_client
) -> None:
    # Bodies are read only once the key is checked, so this stream carries a valid one.
    from serving.admin_auth import generate_admin_key, store_admin_key_hash

    key, key_hash = generate_admin_key()
    store_admin_key_hash(fresh_workdir, key_hash, "stream")

    async def chunks():
        for _ in range(40):
            yield b"x" * 1024

    app = create_app(ApiConfig.from_workdir(fresh_workdir))
    async with make_client(app) as client:
        response = await client.post(
            "/v1/admin/assets/BTCUSDT/halt",
            content=chunks(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
    app.state.backend.close()
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.anyio
async def test_cors_is_off_by_default_and_configurable(seeded_workdir: Path, make_client) -> None:
    origin = {"Origin": "https://dash.example"}
    closed = create_app(ApiConfig.from_workdir(seeded_workdir))
    async with make_client(closed) as client:
        response = await client.get("/v1/multipliers", headers=origin)
    assert "access-control-allow-origin" not in response.headers

    opened = create_app(
        ApiConfig.from_workdir(seeded_workdir, cors_origins=("https://dash.example",))
    )
    async with make_client(opened) as client:
        response = await client.get("/v1/multipliers", headers=origin)
        preflight = await client.options(
            "/v1/multipliers",
            headers={**origin, "Access-Control-Request-Method": "GET"},
        )
        other = await client.get("/v1/multipliers", headers={"Origin": "https://evil.example"})
    assert response.headers["access-control-allow-origin"] == "https://dash.example"
    assert "etag" in response.headers["access-control-expose-headers"].lower()
    assert preflight.status_code == 200
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nope", 404), ("DELETE", "/v1/risk", 405), ("GET", "/v1/risk/bad%20name", 422)],
)
async def test_routing_errors_are_problems(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status


# -- unit and property tests of serving.http_caching ------------------------------------


def test_rendered_body_gzip_is_deterministic_and_lossless() -> None:
    data = b'{"a":' + b"1" * 2000 + b"}"
    one, two = (
        render_bytes(data, media_type="application/json", fresh_until=None),
        render_bytes(data, media_type="application/json", fresh_until=None),
    )
    assert one.gzipped == two.gzipped
    assert gzip.decompress(one.gzipped) == data
    assert one.etag.startswith('W/"')


def test_small_bodies_are_not_compressed() -> None:
    small = render_bytes(b"{}", media_type="application/json", fresh_until=None)
    assert small.gzipped is None
    response = conditional_response(small, if_none_match=None, accept_encoding="gzip")
    assert "content-encoding" not in response.headers


def test_immutable_content_gets_the_long_max_age() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert max_age_seconds(None, now) == IMMUTABLE_MAX_AGE_SECONDS
    rendered = render_bytes(b"{}", media_type="application/json", fresh_until=None)
    response = conditional_response(rendered, if_none_match=None, accept_encoding=None, now=now)
    assert response.headers["cache-control"].endswith("immutable")


tags = st.text(alphabet="abcdef0123456789", min_size=1, max_size=12)


@given(tag=tags, others=st.lists(tags, max_size=4), weak=st.booleans())
def test_etag_matches_any_listed_tag_weak_or_strong(
    tag: str, others: list[str], weak: bool
) -> None:
    etag = f'W/"{tag}"'
    listed = [f'"{o}"' for o in others if o != tag] + [f'W/"{tag}"' if weak else f'"{tag}"']
    assert etag_matches(", ".join(listed), etag)
    assert etag_matches("*", etag)
    assert not etag_matches(", ".join(f'"{o}"' for o in others if o != tag), etag)


@given(seconds=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_max_age_is_never_negative_and_counts_down(seconds: float) -> None:
    now = datetime(2025, 6, 30, tzinfo=UTC)
    age = max_age_seconds(now + timedelta(seconds=seconds), now)
    assert age >= 0
    assert age <= max(seconds, 0) + 1e-3  # timedelta keeps microseconds only
    assert age >= seconds - 1


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/v1/multipliers", "/v1/risk", "/v1/risk/ETHUSDT"])
async def test_fast_path_serves_exactly_what_the_routes_serve(
    client: httpx.AsyncClient, path: str
) -> None:
    # A query string bypasses the fast path, so the FastAPI route answers the second call.
    fast = await client.get(path, headers={"Accept-Encoding": "identity"})
    routed = await client.get(path + "?via=route", headers={"Accept-Encoding": "identity"})
    assert fast.status_code == routed.status_code == 200
    assert fast.content == routed.content
    assert fast.headers["etag"] == routed.headers["etag"]
    assert fast.headers["content-type"] == routed.headers["content-type"]
