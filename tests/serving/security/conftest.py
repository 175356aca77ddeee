"""Fixtures of the security suite: seeded stores on both backends, admin keys, clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner, Result

from pipelines.cli import app as cli
from serving.admin_auth import generate_admin_key, store_admin_key_hash
from serving.api import create_app
from serving.api_config import ApiConfig
from tests.api.api_seeding import seed_store
from tests.api.conftest import anyio_backend, make_client  # noqa: F401  (shared fixtures)
from tests.serving.conftest import private_schema_url

ASSETS = ("BTCUSDT", "ETHUSDT")


@dataclass(frozen=True)
class Seeded:
    """A work dir with three published batches of :data:`ASSETS` and an admin key."""

    workdir: Path
    url: str
    admin_key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def config(self, **overrides: object) -> ApiConfig:
        values: dict[str, object] = {"store_url": self.url, "refresh_seconds": 0}
        values.update(overrides)
        return ApiConfig.from_workdir(self.workdir, **values)


def _seed(workdir: Path, url: str) -> Seeded:
    seed_store(workdir, ASSETS, batches=3, url=url).close()
    key, key_hash = generate_admin_key()
    store_admin_key_hash(workdir, key_hash, "security suite")
    return Seeded(workdir, url, key)


@pytest.fixture()
def seeded(tmp_path: Path) -> Seeded:
    """SQLite store in a fresh work dir."""
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    return _seed(workdir, f"sqlite:///{workdir / 'publications.db'}")


def seeded_store(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> Seeded:
    """A seeded store on ``backend`` (``sqlite`` or ``postgresql``), removed after the test."""
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    if backend == "sqlite":
        return _seed(workdir, f"sqlite:///{workdir / 'publications.db'}")
    schema = private_schema_url(request.getfixturevalue("postgres_url"), prefix="sec")
    url = schema.__enter__()
    request.addfinalizer(lambda: schema.__exit__(None, None, None))
    return _seed(workdir, url)


@pytest.fixture(params=["sqlite", "postgresql"])
def seeded_any(request: pytest.FixtureRequest, tmp_path: Path) -> Seeded:
    """The same seeded store on SQLite and on the real PostgreSQL (a private schema)."""
    return seeded_store(request, tmp_path, request.param)


@pytest.fixture()
async def api(
    seeded: Seeded,
    make_client: Callable[[FastAPI], httpx.AsyncClient],  # noqa: F811  (the fixture above)
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app on :func:`seeded`, re-reading the store on every request."""
    app = create_app(seeded.config())
    async with make_client(app) as client:
        yield client
    app.state.backend.close()


def invoke(seeded: Seeded, *args: str) -> Result:
    """Run ``dynamargin --workdir <seeded> ARGS`` on the seeded store, in process."""
    return CliRunner().invoke(
        cli,
        ["--workdir", str(seeded.workdir), *args],
        env={"DYNAMARGIN_PUBLICATIONS_URL": seeded.url},
        catch_exceptions=False,
    )
