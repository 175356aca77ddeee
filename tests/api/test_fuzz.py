"""Schemathesis fuzzing of every operation in the app's OpenAPI spec: no request may 5xx.

Requests carry a valid admin key, so the admin operations are exercised past the auth
check too. The example count is bounded to keep the suite within its CI budget.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from serving.admin_auth import generate_admin_key, store_admin_key_hash
from serving.api import create_app
from serving.api_config import ApiConfig
from tests.api.api_seeding import seed_store

MAX_EXAMPLES = 30
# The app opens its store lazily, so it can be built at import (schemathesis needs the
# schema at collection) and the store seeded by the fixture before any request.
WORKDIR = Path(tempfile.mkdtemp(prefix="dynamargin-fuzz-"))
APP = create_app(ApiConfig.from_workdir(WORKDIR, refresh_seconds=0))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module")
def admin_key() -> Iterator[str]:
    """Seed the store and register an admin key; remove the work dir afterwards."""
    seed_store(WORKDIR, ["BTCUSDT", "ETHUSDT"], batches=3).close()
    key, key_hash = generate_admin_key()
    store_admin_key_hash(WORKDIR, key_hash, "fuzz")
    yield key
    APP.state.backend.close()
    shutil.rmtree(WORKDIR, ignore_errors=True)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_produces_a_server_error(case: schemathesis.Case, admin_key: str) -> None:
    response = case.call(headers={"Authorization": f"Bearer {admin_key}"})
    case.validate_response(response, checks=[not_a_server_error])
    assert response.status_code < 500, response.text
