"""Rows rewritten behind the triggers' back are never served as if signed.

With the triggers disabled (a superuser on PostgreSQL, anyone who can write the SQLite
file), SQL can change anything. The hash chain, the signatures and the signed checkpoints
make every such change visible: the API answers 503 for the asset concerned (with a log
line and a metric, never a 200), and ``dynamargin snapshots audit`` fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from pipelines.cli import app as cli
from serving.api import create_app
from serving.errors import PublishError
from serving.policy import PolicyBook
from serving.publishing import apply_operator_action
from serving.store import PublicationStore
from tests.api.api_seeding import seed_store
from tests.serving.security import tamper
from tests.serving.security.conftest import Seeded, invoke

pytestmark = pytest.mark.anyio

PUBLICATION_TAMPERS: dict[str, Callable[[str], None]] = {
    "forged newest snapshot": lambda url: tamper.forge_latest_publication(url, "BTCUSDT"),
    "newest snapshot deleted": lambda url: tamper.delete_latest_publication(url, "BTCUSDT"),
    "middle snapshot deleted": lambda url: tamper.delete_publication(url, "BTCUSDT", 2),
}


def audit_command(seeded: Seeded):
    return CliRunner().invoke(
        cli,
        ["--workdir", str(seeded.workdir), "snapshots", "audit"],
        env={"DYNAMARGIN_PUBLICATIONS_URL": seeded.url},
        catch_exceptions=False,
    )


async def test_an_untouched_store_passes_the_audit_and_serves_every_asset(
    seeded_any: Seeded, make_client
) -> None:
    result = audit_command(seeded_any)
    assert result.exit_code == 0, result.output
    app = create_app(seeded_any.config())
    async with make_client(app) as client:
        assert (await client.get("/v1/risk/BTCUSDT")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
    app.state.backend.close()


@pytest.mark.parametrize("how", sorted(PUBLICATION_TAMPERS))
async def test_a_tampered_publication_gives_503_a_log_line_and_a_metric(
    seeded_any: Seeded, make_client, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    app = create_app(seeded_any.config())
    async with make_client(app) as client:
        assert (await client.get("/v1/risk/BTCUSDT")).status_code == 200
        PUBLICATION_TAMPERS[how](seeded_any.url)
        caplog.set_level(logging.WARNING)
        one = await client.get("/v1/risk/BTCUSDT")
        other = await client.get("/v1/risk/ETHUSDT")
        table = (await client.get("/v1/multipliers")).json()
        everything = await client.get("/v1/risk")
        ready = await client.get("/readyz")
        metrics = (await client.get("/metrics")).text
    app.state.backend.close()
    assert one.status_code == 503, one.text
    assert one.headers["content-type"] == "application/problem+json"
    assert one.json()["type"].endswith("/integrity-failure")
    assert other.status_code == 200
    assert "BTCUSDT" not in table["multipliers"]
    assert [s["asset"] for s in everything.json()["snapshots"]] == ["ETHUSDT"]
    assert ready.status_code == 503
    assert any(
        "BTCUSDT" in r.getMessage() and "integrity" in r.getMessage() for r in caplog.records
    )
    assert 'dynamargin_integrity_failures_total{asset="BTCUSDT"' in metrics
    result = audit_command(seeded_any)
    assert result.exit_code == 1
    assert "BTCUSDT" in result.output
    shown = invoke(seeded_any, "snapshots", "show", "BTCUSDT")
    assert shown.exit_code == 1 and "integrity failure" in shown.output


async def test_a_forged_old_snapshot_is_refused_when_time_travel_reaches_it(
    seeded_any: Seeded, make_client
) -> None:
    app = create_app(seeded_any.config())
    async with make_client(app) as client:
        history = (await client.get("/v1/risk/BTCUSDT/history")).json()["snapshots"]
        tamper.forge_publication(seeded_any.url, "BTCUSDT", 2)
        newest = await client.get("/v1/risk/BTCUSDT")
        then = await client.get("/v1/risk/BTCUSDT", params={"at": history[1]["published_at"]})
        page = await client.get("/v1/risk/BTCUSDT/history")
    app.state.backend.close()
    assert newest.status_code == 200  # its own row and links are intact
    for response in (then, page):
        assert response.status_code == 503, response.text
        assert response.json()["type"].endswith("/integrity-failure")
    assert audit_command(seeded_any).exit_code == 1


async def test_a_cleared_halt_or_a_rewritten_audit_note_is_detected(
    seeded_any: Seeded, make_client
) -> None:
    with PublicationStore(seeded_any.url) as store:
        apply_operator_action(
            store, PolicyBook.uniform(), "BTCUSDT", "halt", "ops", "incident", datetime.now(UTC)
        )
    tamper.clear_halt(seeded_any.url, "BTCUSDT")
    tamper.rewrite_audit_note(seeded_any.url, "BTCUSDT", "nothing happened")
    app = create_app(seeded_any.config())
    async with make_client(app) as client:
        resume = await client.post(
            "/v1/admin/assets/BTCUSDT/halt", json={"reason": "again"}, headers=seeded_any.auth
        )
        ready = await client.get("/readyz")
    app.state.backend.close()
    assert resume.status_code == 503, resume.text
    assert resume.json()["type"].endswith("/integrity-failure")
    assert ready.status_code == 503
    result = audit_command(seeded_any)
    assert result.exit_code == 1
    assert "policy_states" in result.output and "audit" in result.output
    with pytest.raises(PublishError, match="integrity"):
        seed_store(seeded_any.workdir, ("BTCUSDT", "ETHUSDT"), batches=1, url=seeded_any.url)


STORE_TAMPERS: dict[str, Callable[[str], None]] = {
    "checkpoint signature rewritten": lambda url: tamper.rewrite_column(
        url, "checkpoints", "signature", "00" * 64
    ),
    "every checkpoint deleted": lambda url: tamper.delete_all(url, "checkpoints"),
    "newest batch rewritten": lambda url: tamper.rewrite_column(url, "batches", "n_snapshots", 9),
    "store mode flipped": lambda url: tamper.rewrite_column(url, "store_meta", "mode", "replay"),
}


@pytest.mark.parametrize("how", sorted(STORE_TAMPERS))
async def test_a_tampered_store_row_withholds_every_asset(
    seeded_any: Seeded, make_client, how: str
) -> None:
    STORE_TAMPERS[how](seeded_any.url)
    app = create_app(seeded_any.config())
    async with make_client(app) as client:
        responses = [
            await client.get(path)
            for path in ("/v1/risk", "/v1/multipliers", "/v1/risk/BTCUSDT", "/readyz")
        ]
        metrics = (await client.get("/metrics")).text
    app.state.backend.close()
    for response in responses:
        assert response.status_code == 503, (response.request.url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert 'dynamargin_integrity_failures_total{asset="store"}' in metrics
    result = audit_command(seeded_any)
    assert result.exit_code == 1, result.output


async def test_a_whole_store_rollback_is_caught_by_the_running_api(
    seeded_any: Seeded, make_client
) -> None:
    # A store rolled back to an earlier, fully consistent copy verifies on its own (as any
    # transparency log, only a party that saw the later checkpoint can tell); the running
    # API is such a party.
    app = create_app(seeded_any.config())
    async with make_client(app) as client:
        assert (await client.get("/v1/risk/BTCUSDT")).status_code == 200
        tamper.roll_back_newest_batch(seeded_any.url)
        running = await client.get("/v1/risk/BTCUSDT")
        ready = await client.get("/readyz")
    app.state.backend.close()
    assert running.status_code == 503
    assert "rolled back" in running.json()["detail"]
    assert ready.status_code == 503
    fresh = create_app(seeded_any.config())
    async with make_client(fresh) as client:
        assert (await client.get("/v1/risk/BTCUSDT")).json()["update_id"] == 2
    fresh.state.backend.close()
    assert audit_command(seeded_any).exit_code == 0
