"""Every error is an RFC 9457 problem with a 4xx or a 503, never a 500."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from serving.api import create_app
from serving.store import PublicationStore
from tests.api.test_http_behaviour import CACHED_PATHS
from tests.serving.security.conftest import Seeded

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int | set[int]) -> None:
    wanted = {status} if isinstance(status, int) else status
    assert response.status_code in wanted, (response.status_code, response.text)
    assert response.headers["content-type"] == PROBLEM


async def test_an_override_end_that_overflows_in_utc_is_a_422(
    api: httpx.AsyncClient, seeded: Seeded
) -> None:
    response = await api.post(
        "/v1/admin/assets/BTCUSDT/override",
        json={"multiplier": 1.0, "reason": "far future", "until": "9999-12-31T23:00:00-05:00"},
        headers=seeded.auth,
    )
    assert_problem(response, 422)


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


async def test_an_admin_write_while_the_database_is_locked_is_a_503(
    seeded: Seeded, make_client
) -> None:
    app = create_app(seeded.config(write_timeout_seconds=0.5))
    async with make_client(app) as client:
        assert (await client.get("/v1/risk/BTCUSDT")).status_code == 200
        with exclusive_lock(seeded.workdir / "publications.db"):
            response = await client.post(
                "/v1/admin/assets/BTCUSDT/halt", json={"reason": "locked"}, headers=seeded.auth
            )
    app.state.backend.close()
    assert_problem(response, 503)
    assert response.json()["type"].endswith("/store-busy")
    assert "retry-after" in response.headers


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i not possible here: {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize("target", ["file", "directory"])
async def test_an_immutable_store_is_a_503_for_admin_writes(
    seeded: Seeded, make_client, target: str
) -> None:
    db = seeded.workdir / "publications.db"
    with immutable(db if target == "file" else seeded.workdir):
        app = create_app(seeded.config())
        async with make_client(app) as client:
            response = await client.post(
                "/v1/admin/assets/BTCUSDT/halt", json={"reason": "immutable"}, headers=seeded.auth
            )
        app.state.backend.close()
    assert_problem(response, 503)
    with PublicationStore(seeded.url) as store:
        assert store.audit_log() == []


async def test_one_malformed_key_file_line_gives_401_without_and_503_with_a_key(
    api: httpx.AsyncClient, seeded: Seeded
) -> None:
    keys = seeded.workdir / "admin_keys"
    keys.write_text(keys.read_text() + "this is not a hash\n")
    anonymous = await api.post("/v1/admin/assets/BTCUSDT/halt", json={"reason": "no key"})
    keyed = await api.post(
        "/v1/admin/assets/BTCUSDT/halt", json={"reason": "with key"}, headers=seeded.auth
    )
    assert_problem(anonymous, 401)
    assert_problem(keyed, 503)
    assert "admin_keys" not in keyed.json()["detail"]  # the path stays in the server log


READ_PATHS = [*CACHED_PATHS, "/healthz"]


@pytest.mark.parametrize("path", READ_PATHS)
async def test_head_answers_like_get_without_a_body(api: httpx.AsyncClient, path: str) -> None:
    get = await api.get(path, headers={"Accept-Encoding": "identity"})
    head = await api.head(path, headers={"Accept-Encoding": "identity"})
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers.get("etag") == get.headers.get("etag")
    assert head.headers["content-type"] == get.headers["content-type"]


@pytest.mark.parametrize("body", [b"{not json", b"", b"[" * 50, b'{"reason": 1, "reason": 2}'])
async def test_unauthenticated_admin_calls_get_401_whatever_the_body(
    api: httpx.AsyncClient, body: bytes
) -> None:
    response = await api.post(
        "/v1/admin/assets/BTCUSDT/halt",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert_problem(response, 401)


async def test_a_trailing_slash_never_redirects_to_the_host_header(
    api: httpx.AsyncClient,
) -> None:
    response = await api.get("/v1/risk/", headers={"Host": "evil.example"})
    location = response.headers.get("location", "")
    assert "evil.example" not in location
    if response.status_code >= 400:
        assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    "reason", ["   ", " a ", "\u200b\u200b\u200b", "a\u200b\u200b", "ok\x1b[2J"]
)
async def test_a_reason_needs_three_visible_characters(
    api: httpx.AsyncClient, seeded: Seeded, reason: str
) -> None:
    response = await api.post(
        "/v1/admin/assets/BTCUSDT/halt", json={"reason": reason}, headers=seeded.auth
    )
    assert_problem(response, 422)
    with PublicationStore(seeded.url) as store:
        assert store.audit_log() == []


async def test_no_unexpected_exception_leaks_as_a_bare_500(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/risk/BTCUSDT", params={"at": "9999-12-31T23:00:00-05:00"})
    assert_problem(response, 422)
