"""Admin endpoints: API-key auth (hashed, constant time, never logged) and audit rows."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipelines.cli import app as cli_app
from serving.admin_auth import (
    ADMIN_KEY_HASHES_ENV,
    AdminKeyFileError,
    AdminKeyring,
    admin_keys_path,
    generate_admin_key,
    hash_admin_key,
    load_keyring,
    store_admin_key_hash,
)
from serving.api import create_app
from serving.api_config import ApiConfig
from serving.store import PublicationStore

pytestmark = pytest.mark.anyio


@pytest.fixture()
def admin_key(fresh_workdir: Path) -> str:
    key, key_hash = generate_admin_key()
    store_admin_key_hash(fresh_workdir, key_hash, "test operator")
    return key


@pytest.fixture()
async def admin_client(fresh_workdir: Path, admin_key: str, make_client):
    app = create_app(ApiConfig.from_workdir(fresh_workdir, refresh_seconds=0))
    async with make_client(app) as client:
        yield client
    app.state.backend.close()


def audit_rows(workdir: Path) -> list:
    with PublicationStore(f"sqlite:///{workdir / 'publications.db'}") as store:
        return store.audit_log()


async def test_missing_key_is_401_with_a_bearer_challenge(
    admin_client: httpx.AsyncClient, fresh_workdir: Path
) -> None:
    response = await admin_client.post(
        "/v1/admin/assets/BTCUSDT/halt", json={"reason": "exchange outage"}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"
    assert audit_rows(fresh_workdir) == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer dmk_wrong"},
        {"X-API-Key": "dmk_wrong"},
        {"Authorization": "Basic eA=="},
    ],
)
async def test_wrong_key_is_refused_and_writes_nothing(
    admin_client: httpx.AsyncClient, fresh_workdir: Path, headers: dict[str, str]
) -> None:
    response = await admin_client.post(
        "/v1/admin/assets/BTCUSDT/halt", json={"reason": "exchange outage"}, headers=headers
    )
    assert response.status_code in {401, 403}
    assert response.json()["type"].endswith(("invalid-credentials", "missing-credentials"))
    assert audit_rows(fresh_workdir) == []


async def test_no_configured_key_means_admin_is_closed(
    fresh_workdir: Path, make_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ADMIN_KEY_HASHES_ENV, raising=False)
    app = create_app(ApiConfig.from_workdir(fresh_workdir))
    async with make_client(app) as client:
        response = await client.post(
            "/v1/admin/assets/BTCUSDT/halt",
            json={"reason": "exchange outage"},
            headers={"Authorization": "Bearer dmk_anything"},
        )
    assert response.status_code == 403
    assert response.json()["type"].endswith("/admin-disabled")


async def test_halt_then_resume_write_audit_rows_and_reach_the_next_publication(
    admin_client: httpx.AsyncClient, fresh_workdir: Path, admin_key: str
) -> None:
    auth = {"Authorization": f"Bearer {admin_key}"}
    halted = await admin_client.post(
        "/v1/admin/assets/btcusdt/halt", json={"reason": "oracle incident #12"}, headers=auth
    )
    assert halted.status_code == 200, halted.text
    body = halted.json()
    assert body["asset"] == "BTCUSDT"
    assert body["state"]["halted"] is True
    assert body["audit"]["note"] == "oracle incident #12"
    assert body["audit"]["operator"] == "admin-key:" + hash_admin_key(admin_key)[7:19]

    from tests.api.api_seeding import seed_store

    seed_store(fresh_workdir, ["BTCUSDT", "ETHUSDT", "SOLUSDT"], batches=1).close()
    snapshot = (await admin_client.get("/v1/risk/BTCUSDT")).json()
    assert snapshot["status"] == "halted"

    resumed = await admin_client.post(
        "/v1/admin/assets/BTCUSDT/resume", json={"reason": "incident closed"}, headers=auth
    )
    assert resumed.status_code == 200
    rows = audit_rows(fresh_workdir)
    assert [(r.asset, r.action, r.note) for r in rows] == [
        ("BTCUSDT", "halt", "oracle incident #12"),
        ("BTCUSDT", "resume", "incident closed"),
    ]
    assert all(r.operator.startswith("admin-key:") for r in rows)


async def test_override_within_the_cap_is_audited(
    admin_client: httpx.AsyncClient, fresh_workdir: Path, admin_key: str
) -> None:
    response = await admin_client.post(
        "/v1/admin/assets/ETHUSDT/override",
        json={"reason": "pre-announced event", "multiplier": 2.5, "until": "2099-01-01T00:00:00Z"},
        headers={"X-API-Key": admin_key},
    )
    assert response.status_code == 200, response.text
    assert response.json()["state"]["override_multiplier"] == 2.5
    (row,) = audit_rows(fresh_workdir)
    assert (row.action, row.override_multiplier) == ("override", 2.5)


@pytest.mark.parametrize("multiplier", [3.01, 50.0, 0.5])
async def test_override_outside_the_policy_bounds_is_refused(
    admin_client: httpx.AsyncClient, fresh_workdir: Path, admin_key: str, multiplier: float
) -> None:
    response = await admin_client.post(
        "/v1/admin/assets/ETHUSDT/override",
        json={"reason": "too far", "multiplier": multiplier},
        headers={"Authorization": f"Bearer {admin_key}"},
    )
    assert response.status_code == 422
    assert "cap=3.0" in response.json()["detail"]
    assert audit_rows(fresh_workdir) == []


@pytest.mark.parametrize(
    "body", [{}, {"reason": ""}, {"reason": "   "}, {"reason": "ok!", "extra": 1}, {"reason": 5}]
)
async def test_a_reason_is_required(
    admin_client: httpx.AsyncClient, fresh_workdir: Path, admin_key: str, body: dict
) -> None:
    response = await admin_client.post(
        "/v1/admin/assets/BTCUSDT/halt", json=body, headers={"Authorization": f"Bearer {admin_key}"}
    )
    assert response.status_code == 422
    assert audit_rows(fresh_workdir) == []


async def test_resume_without_halt_is_a_409_conflict(
    admin_client: httpx.AsyncClient, admin_key: str
) -> None:
    response = await admin_client.post(
        "/v1/admin/assets/SOLUSDT/resume",
        json={"reason": "nothing to resume"},
        headers={"Authorization": f"Bearer {admin_key}"},
    )
    assert response.status_code == 409
    assert "not halted" in response.json()["detail"]


async def test_admin_on_unknown_asset_is_404(
    admin_client: httpx.AsyncClient, admin_key: str
) -> None:
    response = await admin_client.post(
        "/v1/admin/assets/DOGEUSDT/halt",
        json={"reason": "never published"},
        headers={"Authorization": f"Bearer {admin_key}"},
    )
    assert response.status_code == 404


async def test_keys_are_never_logged(
    admin_client: httpx.AsyncClient, admin_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await admin_client.post(
        "/v1/admin/assets/BTCUSDT/halt",
        json={"reason": "log check"},
        headers={"Authorization": f"Bearer {admin_key}"},
    )
    await admin_client.post(
        "/v1/admin/assets/BTCUSDT/halt",
        json={"reason": "log check"},
        headers={"Authorization": "Bearer dmk_secret_wrong_key"},
    )
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "refused" in logged and "halt on BTCUSDT" in logged
    assert admin_key not in logged
    assert "dmk_secret_wrong_key" not in logged


# -- serving.admin_auth ---------------------------------------------------------------


def test_keygen_prints_the_key_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli_app, ["--workdir", str(tmp_path), "admin", "keygen", "--label", "ci", "--json"]
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    stored = admin_keys_path(tmp_path).read_text()
    assert shown["key"] not in stored
    assert hash_admin_key(shown["key"]) in stored
    assert admin_keys_path(tmp_path).stat().st_mode & 0o077 == 0
    assert load_keyring(tmp_path, env_value="").identify(shown["key"]) is not None


def test_env_hashes_are_accepted_and_malformed_ones_name_their_source(tmp_path: Path) -> None:
    key, key_hash = generate_admin_key()
    assert load_keyring(None, env_value=f" {key_hash} ,").identify(key) == key_hash
    with pytest.raises(AdminKeyFileError, match=ADMIN_KEY_HASHES_ENV):
        load_keyring(None, env_value=key)  # a plain key is not a hash
    admin_keys_path(tmp_path).write_text("sha256:nothex\n")
    with pytest.raises(AdminKeyFileError, match="admin_keys:1"):
        load_keyring(tmp_path, env_value="")


@settings(max_examples=50)
@given(keys=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=5, unique=True))
def test_keyring_identifies_exactly_its_own_keys(keys: list[str]) -> None:
    ring = AdminKeyring(hashes=tuple(hash_admin_key(k) for k in keys[1:]))
    assert ring.identify(keys[0]) is None
    for key in keys[1:]:
        assert ring.identify(key) == hash_admin_key(key)


async def test_override_can_be_cleared_and_past_end_times_are_refused(
    admin_client: httpx.AsyncClient, fresh_workdir: Path, admin_key: str
) -> None:
    auth = {"Authorization": f"Bearer {admin_key}"}
    past = await admin_client.post(
        "/v1/admin/assets/BTCUSDT/override",
        json={"reason": "late", "multiplier": 2.0, "until": "2001-01-01T00:00:00Z"},
        headers=auth,
    )
    assert past.status_code == 422
    assert past.json()["parameter"] == "until"
    forced = await admin_client.post(
        "/v1/admin/assets/BTCUSDT/override",
        json={"reason": "event", "multiplier": 2.0},
        headers=auth,
    )
    cleared = await admin_client.post(
        "/v1/admin/assets/BTCUSDT/clear-override", json={"reason": "event over"}, headers=auth
    )
    assert forced.status_code == cleared.status_code == 200
    assert cleared.json()["state"]["override_multiplier"] is None
    assert [r.action for r in audit_rows(fresh_workdir)] == ["override", "clear_override"]
