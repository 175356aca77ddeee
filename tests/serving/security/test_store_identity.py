"""A store file deleted or replaced under a running API is noticed, not served or written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from serving.api import create_app
from serving.store import PublicationStore
from tests.api.api_seeding import seed_store
from tests.serving.security.conftest import Seeded

pytestmark = pytest.mark.anyio


def db_path(seeded: Seeded) -> Path:
    return seeded.workdir / "publications.db"


async def test_a_deleted_store_file_makes_reads_readiness_and_halts_fail(
    seeded: Seeded, make_client
) -> None:
    app = create_app(seeded.config())
    async with make_client(app) as client:
        assert (await client.get("/readyz")).status_code == 200
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path(seeded)}{suffix}").unlink(missing_ok=True)
        ready = await client.get("/readyz")
        read = await client.get("/v1/risk/BTCUSDT")
        halt = await client.post(
            "/v1/admin/assets/BTCUSDT/halt", json={"reason": "into the void"}, headers=seeded.auth
        )
    app.state.backend.close()
    assert ready.status_code == 503
    assert "deleted" in ready.text or "replaced" in ready.text
    assert read.status_code == 503
    assert halt.status_code == 503, halt.text
    assert halt.headers["content-type"] == "application/problem+json"


async def test_a_replaced_store_file_is_not_served_from_the_old_handle(
    seeded: Seeded, make_client, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copytree(seeded.workdir / "keys", other / "keys")
    seed_store(other, ("SOLUSDT",), batches=1).close()
    app = create_app(seeded.config())
    async with make_client(app) as client:
        assert (await client.get("/v1/risk/BTCUSDT")).status_code == 200
        os.replace(other / "publications.db", db_path(seeded))
        ready = await client.get("/readyz")
        read = await client.get("/v1/risk/BTCUSDT")
    app.state.backend.close()
    assert ready.status_code == 503
    assert "replaced" in ready.text
    assert read.status_code == 503


def test_the_publisher_refuses_to_write_into_a_deleted_store(seeded: Seeded) -> None:
    from serving.errors import PublicationStoreError

    with PublicationStore(seeded.url) as store:
        store.latest()
        db_path(seeded).unlink()
        with pytest.raises(PublicationStoreError, match="deleted or replaced"):
            store.last_update_ids()
