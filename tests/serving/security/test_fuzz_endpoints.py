"""Hypothesis fuzzing of every endpoint's inputs beyond the OpenAPI schema.

Asset names, times, cursors, limits, headers and bodies are drawn from far outside what the
schema allows: any Unicode (control characters, case-folding look-alikes, surrogate-free
garbage), percent-encoding, huge and negative numbers, malformed and hostile JSON (duplicate
keys, deep nesting, booleans for numbers, 5000-digit integers). Every answer must be a
success or an RFC 9457 problem with a 4xx status: never a 500, never a crash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.admin_auth import generate_admin_key, store_admin_key_hash
from serving.api import create_app
from serving.api_config import ApiConfig
from tests.api.api_seeding import seed_store

# CI runs a short version; `make fuzz` runs the long one (DYNAMARGIN_FUZZ_EXAMPLES=5000).
EXAMPLES = int(os.environ.get("DYNAMARGIN_FUZZ_EXAMPLES", "400"))
PROBLEM = "application/problem+json"
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    workdir = tmp_path_factory.mktemp("fuzz")
    seed_store(workdir, ("BTCUSDT", "ETHUSDT"), batches=3).close()
    key, key_hash = generate_admin_key()
    store_admin_key_hash(workdir, key_hash, "fuzz")
    app = create_app(ApiConfig.from_workdir(workdir, refresh_seconds=0.2))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, key
    app.state.backend.close()


def check(response) -> None:
    """A success, a redirect or a problem with a 4xx status; never a server error."""
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert response.headers["content-type"] == PROBLEM, response.headers
        if response.request.method == "HEAD":
            assert response.content == b""
            return
        problem = response.json()
        assert problem["status"] == response.status_code
        assert problem["type"].startswith("https://")


anything = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=60)
asset_like = st.one_of(
    anything,
    st.sampled_from(["BTCUSDT", "btcusdt", "BTCUſDT", "BTCUSDT\n", "..", ".", "%00", "BTC/USDT"]),
    st.from_regex(r"[A-Za-z0-9_.\-]{0,80}", fullmatch=True),
)
times = st.one_of(
    anything,
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "9999-12-31T23:00:00-05:00",
            "0001-01-01T00:00:00+14:00",
            "2025-02-30",
            "1e999",
            "-1",
            "2025-06-30T23:00:00Z",
            "2025-06-30T23:00:00+25:00",
        ]
    ),
)
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    anything,
)
json_values = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(anything, children, max_size=4)
    ),
    max_leaves=12,
)
hostile_bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=1, max_value=5000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=1, max_value=3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.sampled_from(
        [
            b'{"reason": "dup", "reason": "dup key"}',
            b'{"multiplier": true, "reason": "boolean multiplier"}',
            b'{"multiplier": 1e999, "reason": "infinite"}',
            b'{"multiplier": NaN, "reason": "not a number"}',
            b'{"multiplier": ' + b"9" * 5000 + b', "reason": "huge"}',
            b'{"multiplier": 1.2, "reason": "far", "until": "9999-12-31T23:00:00-05:00"}',
            b'{"reason": "\\u0000\\u001b[2J"}',
            b"\xff\xfe{}",
        ]
    ),
)


@FUZZ
@given(asset=asset_like)
def test_asset_paths(fuzz_api, asset: str) -> None:
    client, _ = fuzz_api
    encoded = quote(asset, safe="")
    for path in (f"/v1/risk/{encoded}", f"/v1/risk/{encoded}/history"):
        response = client.get(path)
        check(response)
        if response.status_code == 200 and response.url.path == f"/v1/risk/{asset}":
            # Only the ASCII spelling of a published asset names it (no Unicode folding).
            assert asset.isascii() and asset.upper() == response.json()["asset"]


@FUZZ
@given(at=times, start=times, end=times)
def test_time_parameters(fuzz_api, at: str, start: str, end: str) -> None:
    client, _ = fuzz_api
    check(client.get("/v1/risk/BTCUSDT", params={"at": at}))
    check(client.get("/v1/risk/BTCUSDT/history", params={"from": start, "to": end}))


@FUZZ
@given(
    cursor=st.one_of(anything, st.integers().map(str), st.sampled_from(["9" * 5000, "-1", "0x10"])),
    limit=st.one_of(st.integers(min_value=-(10**20), max_value=10**20).map(str), anything),
)
def test_history_paging(fuzz_api, cursor: str, limit: str) -> None:
    client, _ = fuzz_api
    check(client.get("/v1/risk/ETHUSDT/history", params={"cursor": cursor, "limit": limit}))


@FUZZ
@given(
    action=st.sampled_from(["halt", "resume", "override", "clear-override", "nope"]),
    asset=asset_like,
    body=hostile_bodies,
    auth=st.sampled_from(["none", "valid", "wrong", "garbage"]),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "", "application/json; charset=utf-16"]
    ),
)
def test_admin_bodies(fuzz_api, action, asset, body, auth, content_type) -> None:
    client, key = fuzz_api
    headers = {"Content-Type": content_type} if content_type else {}
    if auth == "valid":
        headers["Authorization"] = f"Bearer {key}"
    elif auth == "wrong":
        headers["Authorization"] = "Bearer dmk_wrong"
    elif auth == "garbage":
        headers["Authorization"] = b"Bearer \xff\xfe"  # type: ignore[assignment]
    response = client.post(
        f"/v1/admin/assets/{quote(asset, safe='')}/{action}", content=body, headers=headers
    )
    check(response)
    if auth != "valid":
        assert response.status_code in {401, 403, 404, 405, 413}, response.text


@FUZZ
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]),
    path=st.one_of(
        st.sampled_from(
            [
                "/",
                "/v1/risk",
                "/v1/risk/",
                "/v1/multipliers",
                "/v1/oracle-updates",
                "/v1/keys",
                "/v1/schema",
                "/v1/checkpoint",
                "/readyz",
                "/healthz",
                "/metrics",
                "/v1/admin/",
            ]
        ),
        anything.map(lambda s: "/" + quote(s, safe="/")),
    ),
    etag=st.one_of(st.none(), anything.filter(lambda s: s.isascii() and s.isprintable())),
    encoding=st.one_of(st.none(), st.sampled_from(["gzip", "gzip;q=0", "*", "br", "identity;q=0"])),
)
def test_methods_paths_and_headers(fuzz_api, method, path, etag, encoding) -> None:
    client, _ = fuzz_api
    headers = {}
    if etag is not None:
        headers["If-None-Match"] = etag
    if encoding is not None:
        headers["Accept-Encoding"] = encoding
    response = client.request(method, path, headers=headers)
    check(response)
    assert "evil" not in response.headers.get("location", "")
