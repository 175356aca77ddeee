"""Asset names: one normalisation for the CLI and the API, nothing else reaches the store."""

from __future__ import annotations

import logging

import httpx
import pytest

from serving.store import PublicationStore
from tests.api.api_seeding import seed_store
from tests.serving.security.conftest import ASSETS, Seeded, invoke


def test_cli_halt_of_a_lower_case_name_halts_the_asset_at_the_next_publish(
    seeded: Seeded,
) -> None:
    result = invoke(seeded, "policy", "halt", "--operator", "x", "--note", "incident", "btcusdt")
    assert result.exit_code == 0, result.output
    seed_store(seeded.workdir, ASSETS, batches=1, url=seeded.url).close()
    with PublicationStore(seeded.url) as store:
        assert [r.asset for r in store.audit_log()] == ["BTCUSDT"]
        assert store.latest("BTCUSDT").status == "halted"
        assert store.latest("ETHUSDT").status != "halted"


@pytest.mark.parametrize("name", ["NOPEUSDT", "BTC USDT", "BTCUſDT", "../etc", ""])
def test_cli_halt_of_an_unknown_or_malformed_asset_fails_and_writes_nothing(
    seeded: Seeded, name: str
) -> None:
    result = invoke(seeded, "policy", "halt", "--operator", "x", "--note", "incident", name)
    assert result.exit_code == 1
    assert "audited" not in result.output
    with PublicationStore(seeded.url) as store:
        assert store.audit_log() == []


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/v1/risk/BTCUſDT", "/v1/risk/BTCUſDT/history"])
async def test_unicode_case_folding_does_not_alias_an_asset(
    api: httpx.AsyncClient, path: str
) -> None:
    response = await api.get(path)
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.anyio
async def test_control_characters_in_a_path_never_reach_the_log_raw(
    api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    nasty = "/v1/admin/assets/BTC%0AUSDT%1b%5B31m%0D/halt"
    response = await api.post(nasty, json={"reason": "log injection"})
    assert response.status_code in {401, 404, 422}
    await api.get("/v1/risk/BTC%0Afake%20log%20line")
    messages = [record.getMessage() for record in caplog.records]
    assert messages, "the refused admin call must be logged"
    for message in messages:
        assert "\n" not in message and "\r" not in message and "\x1b" not in message
