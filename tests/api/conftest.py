"""Fixtures of the API tests: seeded work dirs (real signed publications) and ASGI clients."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from serving.api import create_app
from serving.api_config import ApiConfig
from tests.api.api_seeding import ASSETS, seed_store


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def seeded_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work dir with 8 batches (6 h apart, the last one now) of three assets.

    Module-scoped because publishing signs every snapshot; tests that write (admin) use
    :func:`fresh_workdir` instead.
    """
    workdir = tmp_path_factory.mktemp("api-seeded")
    seed_store(workdir, ASSETS, batches=8).close()
    return workdir


@pytest.fixture(scope="session")
def _fresh_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("api-template")
    seed_store(workdir, ASSETS, batches=3).close()
    return workdir


@pytest.fixture()
def fresh_workdir(_fresh_template: Path, tmp_path: Path) -> Path:
    """A work dir of its own (a copy of a seeded one) with 3 batches of the three assets."""
    workdir = tmp_path / "workdir"
    shutil.copytree(_fresh_template, workdir)
    return workdir


@pytest.fixture()
def make_client() -> Callable[[FastAPI], httpx.AsyncClient]:
    """Wrap an app in an HTTPX client over the ASGI transport (no network)."""

    def make(app: FastAPI) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")

    return make


@pytest.fixture()
async def client(seeded_workdir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """Client of an app on the shared seeded store, re-reading it on every request."""
    app = create_app(ApiConfig.from_workdir(seeded_workdir, refresh_seconds=0))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as http:
        yield http
    app.state.backend.close()
