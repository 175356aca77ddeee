"""Fixtures shared by the whole suite: real shared data, a work dir, a real PostgreSQL."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Everything the suite writes stays under tmp dirs; never ~/.prefect or ~/.mlflow. Prefect
# creates its home when it is first imported, so this must run before any test module loads.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="dynamargin-test-prefect-"))

# No per-example deadline: Hypothesis's 200 ms default is a timing assert, which a loaded
# 2-core CI machine trips on correct code (a ramp property did once). Speed lives in benchmarks.
settings.register_profile("dynamargin", deadline=None)
settings.load_profile("dynamargin")


def shared_data_root() -> Path:
    """``DYNAMARGIN_SHARED_DATA`` or ``../shared/data`` beside the project."""
    env = os.environ.get("DYNAMARGIN_SHARED_DATA")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real historical data; its absence fails in CI and skips elsewhere."""
    root = shared_data_root()
    if not (root / "binance").is_dir():
        message = f"real shared data not found at {root} (set DYNAMARGIN_SHARED_DATA)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return root


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh dynamargin work dir, exported as ``DYNAMARGIN_WORKDIR``."""
    path = tmp_path / "workdir"
    path.mkdir()
    monkeypatch.setenv("DYNAMARGIN_WORKDIR", str(path))
    return path


POSTGRES_ADMIN_URL = os.environ.get(
    "DYNAMARGIN_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL to a fresh database on the real PostgreSQL server.

    The database is created for this test session and dropped afterwards. Without a
    server the tests skip with the reason, except under ``CI=true``, where they fail.
    """
    sqlalchemy = pytest.importorskip("sqlalchemy")
    try:
        admin = sqlalchemy.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # any driver or connection error means "no server here"
        message = f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    name = f"dynamargin_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        admin.dispose()
