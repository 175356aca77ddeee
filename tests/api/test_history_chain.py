"""A consumer checks the publication chain from HTTP alone, as the README tells it to.

Only ``/v1/keys``, ``/v1/risk/{asset}/history`` and ``/v1/checkpoint`` are read; the checks
use ``hashlib`` and ``cryptography`` directly (and the canonical JSON of the standard), so
they stand for any other implementation.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from typer.testing import CliRunner

from pipelines.cli import app as cli
from serving.api import create_app
from serving.api_config import ApiConfig
from serving.standard import canonical_json

pytestmark = pytest.mark.anyio

GENESIS = "0" * 64


async def fetch_chain(client: httpx.AsyncClient, asset: str) -> tuple[list[Any], list[Any]]:
    snapshots: list[Any] = []
    chain: list[Any] = []
    params: dict[str, str] = {"limit": "3"}
    while True:
        page = (await client.get(f"/v1/risk/{asset}/history", params=params)).json()
        snapshots += page["snapshots"]
        chain += page["chain"]
        if page["next_cursor"] is None:
            return snapshots, chain
        params = {"limit": "3", "cursor": page["next_cursor"]}


def check_chain(key: Ed25519PublicKey, snapshots: list[Any], chain: list[Any]) -> None:
    previous = GENESIS
    for snapshot, link in zip(snapshots, chain, strict=True):
        payload = canonical_json({k: v for k, v in snapshot.items() if k != "signature"})
        key.verify(bytes.fromhex(snapshot["signature"]["ed25519"]["signature"]), payload)
        document = {
            "chain": "publications",
            "prev_hash": link["prev_hash"],
            "row": {"batch_id": link["batch_id"], "reason": link["reason"], "snapshot": snapshot},
        }
        assert hashlib.sha256(canonical_json(document)).hexdigest() == link["hash"]
        assert link["prev_hash"] == previous
        assert link["update_id"] == snapshot["update_id"]
        previous = link["hash"]


async def test_a_consumer_verifies_the_history_chain_and_the_signed_head(
    client: httpx.AsyncClient,
) -> None:
    keys = (await client.get("/v1/keys")).json()
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(keys["ed25519"]["public_key"]))
    signed = (await client.get("/v1/checkpoint")).json()
    key.verify(bytes.fromhex(signed["signature"]), canonical_json(signed["checkpoint"]))
    assert signed["public_key"] == keys["ed25519"]["public_key"]
    for asset in ("BTCUSDT", "ETHUSDT", "SOLUSDT"):
        snapshots, chain = await fetch_chain(client, asset)
        assert len(snapshots) == 8
        check_chain(key, snapshots, chain)
        head = signed["checkpoint"]["heads"]["publications"][asset]
        (at_head,) = [link for link in chain if link["update_id"] == head["update_id"]]
        assert at_head["hash"] == head["hash"]
        assert head["length"] == len(chain)


async def test_a_changed_byte_breaks_the_consumer_check(client: httpx.AsyncClient) -> None:
    keys = (await client.get("/v1/keys")).json()
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(keys["ed25519"]["public_key"]))
    snapshots, chain = await fetch_chain(client, "ETHUSDT")
    chain[3] = {**chain[3], "reason": "tightened" if chain[3]["reason"] != "tightened" else "x"}
    with pytest.raises(AssertionError):
        check_chain(key, snapshots, chain)
    del snapshots[2], chain[2]
    with pytest.raises(AssertionError):
        check_chain(key, snapshots, chain)


async def test_operator_actions_are_covered_once_a_checkpoint_is_signed(
    fresh_workdir: Path, make_client
) -> None:
    from serving.admin_auth import generate_admin_key, store_admin_key_hash

    key, key_hash = generate_admin_key()
    store_admin_key_hash(fresh_workdir, key_hash, "chain")
    app = create_app(ApiConfig.from_workdir(fresh_workdir, refresh_seconds=0))
    async with make_client(app) as client:
        halted = await client.post(
            "/v1/admin/assets/BTCUSDT/halt",
            json={"reason": "incident 7"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert halted.status_code == 200, halted.text
        before = (await client.get("/v1/checkpoint")).json()["checkpoint"]
        signed = CliRunner().invoke(
            cli, ["--workdir", str(fresh_workdir), "snapshots", "checkpoint"], env={}
        )
        assert signed.exit_code == 0, signed.output
        after = (await client.get("/v1/checkpoint")).json()["checkpoint"]
    app.state.backend.close()
    assert "BTCUSDT" not in before["heads"].get("audit", {})
    assert after["heads"]["audit"]["BTCUSDT"]["length"] == 1
    assert after["sequence"] == before["sequence"] + 1
    assert after["previous"] != GENESIS
