"""The API with least privilege: a read-only store and no private key on its side.

SQLite: the database file is chmod 0444 and opened through a ``mode=ro`` URI, which makes
SQLite open it ``O_RDONLY`` (so the test means something even when run as root, who
ignores file modes). PostgreSQL: a real LOGIN role with only ``SELECT``. In both cases the
private key files are deleted once the publisher has written the public ones.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from serving.admin_auth import generate_admin_key, store_admin_key_hash
from serving.api import create_app
from serving.api_config import ApiConfig
from serving.keys import (
    ED25519_FILE,
    ED25519_PUBLIC_FILE,
    EIP712_ADDRESS_FILE,
    EIP712_FILE,
)
from serving.signing import verify_snapshot
from serving.store import PublicationStore, sqlite_read_only_url
from tests.api.api_seeding import ASSETS, seed_store
from tests.serving.test_store_readonly import (  # noqa: F401  (pg_schema_url is a fixture)
    pg_schema_url,
    read_only_role,
)

pytestmark = pytest.mark.anyio


def drop_private_keys(workdir: Path) -> None:
    """Leave only the public key files, as on a host that serves but never signs."""
    key_dir = workdir / "keys"
    for name in (ED25519_FILE, EIP712_FILE):
        (key_dir / name).unlink()
    assert sorted(p.name for p in key_dir.iterdir()) == [ED25519_PUBLIC_FILE, EIP712_ADDRESS_FILE]


def admin_headers(workdir: Path) -> dict[str, str]:
    key, key_hash = generate_admin_key()
    store_admin_key_hash(workdir, key_hash, "read-only test")
    return {"Authorization": f"Bearer {key}"}


def seed_url(url: str, workdir: Path, batches: int = 3) -> None:
    """Publish ``batches`` batches of every asset into the store at ``url`` (the last now)."""
    seed_store(workdir, ASSETS, batches=batches, url=url).close()


async def assert_serves_verified_reads(client: httpx.AsyncClient, batches: int) -> None:
    """Every read endpoint answers, and the served keys verify every served snapshot."""
    keys = await client.get("/v1/keys")
    assert keys.status_code == 200
    trusted = keys.json()
    risk = await client.get("/v1/risk")
    assert risk.status_code == 200
    snapshots = risk.json()["snapshots"]
    assert [s["asset"] for s in snapshots] == sorted(ASSETS)
    assert {s["update_id"] for s in snapshots} == {batches}
    history = (await client.get("/v1/risk/BTCUSDT/history")).json()["snapshots"]
    assert [s["update_id"] for s in history] == list(range(1, batches + 1))
    for snap in [*snapshots, *history]:
        result = verify_snapshot(
            snap,
            trusted_public_keys=[trusted["ed25519"]["public_key"]],
            trusted_signers=[trusted["eip712"]["signer"]],
        )
        assert result.ok, result.errors
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    for path in ("/v1/multipliers", "/v1/oracle-updates", "/"):
        assert (await client.get(path)).status_code == 200, path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_serves_a_read_only_sqlite_file_without_private_keys(
    fresh_workdir: Path, make_client
) -> None:
    database = fresh_workdir / "publications.db"
    headers = admin_headers(fresh_workdir)
    drop_private_keys(fresh_workdir)
    os.chmod(database, 0o444)
    before = digest(database)
    config = ApiConfig.from_workdir(
        fresh_workdir, store_url=sqlite_read_only_url(database), refresh_seconds=0
    )
    app = create_app(config)
    async with make_client(app) as client:
        await assert_serves_verified_reads(client, batches=3)
        halt = await client.post(
            "/v1/admin/assets/BTCUSDT/halt", json={"reason": "probe"}, headers=headers
        )
    app.state.backend.close()
    assert halt.status_code == 503
    assert halt.headers["content-type"] == "application/problem+json"
    assert halt.json()["type"].endswith("/store-read-only")
    assert digest(database) == before
    assert oct(os.stat(database).st_mode & 0o777) == "0o444"


async def test_uninitialised_store_is_not_ready_and_is_never_created(
    tmp_path: Path, make_client
) -> None:
    app = create_app(ApiConfig.from_workdir(tmp_path, refresh_seconds=0))
    async with make_client(app) as client:
        ready = await client.get("/readyz")
        risk = await client.get("/v1/risk")
        keys = await client.get("/v1/keys")
        assert not (tmp_path / "publications.db").exists()
        # The first publish creates the store; the running API picks it up.
        seed_url(f"sqlite:///{tmp_path / 'publications.db'}", tmp_path, batches=2)
        ready_after = await client.get("/readyz")
        risk_after = await client.get("/v1/risk")
    app.state.backend.close()
    assert ready.status_code == 503
    assert ready.headers["content-type"] == "application/problem+json"
    store_check = ready.json()["checks"]["store"]
    assert store_check.startswith("uninitialised: no publication store at sqlite:///")
    assert "run `dynamargin publish` first" in store_check
    assert risk.json() == {"count": 0, "snapshots": []}
    assert keys.status_code == 503
    assert keys.json()["type"].endswith("/signing-keys-unavailable")
    assert ready_after.status_code == 200
    assert risk_after.json()["count"] == len(ASSETS)


async def test_serves_postgres_through_a_select_only_role(
    pg_schema_url: str,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
    make_client,
) -> None:
    seed_url(pg_schema_url, tmp_path, batches=3)
    headers = admin_headers(tmp_path)
    drop_private_keys(tmp_path)
    with read_only_role(pg_schema_url) as ro_url:
        app = create_app(ApiConfig.from_workdir(tmp_path, store_url=ro_url, refresh_seconds=0))
        async with make_client(app) as client:
            await assert_serves_verified_reads(client, batches=3)
            halt = await client.post(
                "/v1/admin/assets/ETHUSDT/halt", json={"reason": "probe"}, headers=headers
            )
        app.state.backend.close()
    assert halt.status_code == 503
    assert halt.json()["type"].endswith("/store-read-only")
    assert "permission denied" in halt.json()["detail"]
    with PublicationStore(pg_schema_url, create=False) as owner:
        assert owner.audit_log() == []


async def test_postgres_role_on_an_empty_schema_is_uninitialised(
    pg_schema_url: str,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
    make_client,
) -> None:
    with read_only_role(pg_schema_url) as ro_url:
        app = create_app(ApiConfig.from_workdir(tmp_path, store_url=ro_url))
        async with make_client(app) as client:
            ready = await client.get("/readyz")
        app.state.backend.close()
    assert ready.status_code == 503
    assert ready.json()["checks"]["store"].startswith("uninitialised: no publication store")
