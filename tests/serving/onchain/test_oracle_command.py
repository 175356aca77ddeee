"""``dynamargin oracle push`` on a work dir's publications: over JSON-RPC, and rehearsed
in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from serving.evm_chain import ENV_PUSHER_KEY
from serving.keys import load_signing_keys
from serving.policy import PolicyBook, PolicyConfig
from serving.publishing import ProvenanceInfo, publish_batch
from serving.signing import SnapshotSigner
from serving.standard import Eip712Domain
from serving.store import PublicationStore, default_store_url
from tests.serving.conftest import liquidity_for, make_forecasts
from tests.serving.onchain.conftest import ASSETS, PUBLISHED_AT, Stack
from tests.serving.onchain.rpc_server import serve_json_rpc


def _publish(workdir: Path, domain: Eip712Domain) -> None:
    signer = SnapshotSigner(load_signing_keys(workdir, environ={}), domain)
    with PublicationStore(default_store_url(workdir), mode="replay") as store:
        publish_batch(
            make_forecasts(ASSETS),
            liquidity_for(ASSETS),
            PolicyBook.uniform(PolicyConfig()),
            store,
            signer,
            ProvenanceInfo(model_name="har", model_version="1"),
            PUBLISHED_AT,
        )


def _cli(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def test_push_over_json_rpc_then_again_is_a_no_op(
    stack: Stack, workdir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("DYNAMARGIN_PUBLICATIONS_URL", raising=False)
    _publish(workdir, stack.deployment.domain)
    key = stack.chain.tester.backend.account_keys[4]
    stack.chain.transact(
        stack.deployment.oracle.functions.addAuthorizedSender(key.public_key.to_checksum_address())
    )
    oracle = stack.deployment.oracle.address
    with serve_json_rpc(stack.chain) as url:
        args = ("oracle", "push", "--rpc-url", url, "--oracle", oracle, "--json")
        missing_key = _cli(*args)
        assert missing_key.exit_code == 1 and ENV_PUSHER_KEY in missing_key.output
        first = _cli(*args, env={ENV_PUSHER_KEY: key.to_hex()})
        assert first.exit_code == 0, first.output
        pushed = json.loads(first.output)
        assert sorted(a for c in pushed["calls"] for a in c["assets"]) == sorted(ASSETS)
        assert pushed["gas_used"] == sum(c["gas_used"] for c in pushed["calls"]) > 0
        again = json.loads(_cli(*args, env={ENV_PUSHER_KEY: key.to_hex()}).output)
        assert again["calls"] == [] and sorted(again["already_on_chain"]) == sorted(ASSETS)
    assert (workdir / "onchain" / "push-journal.json").exists()


def test_snapshots_signed_for_another_domain_are_refused_with_the_settings_to_use(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("DYNAMARGIN_PUBLICATIONS_URL", raising=False)
    _publish(workdir, Eip712Domain())  # the default: chain 1, no verifying contract
    refused = _cli("oracle", "push", "--in-process")
    assert refused.exit_code == 1
    assert "DYNAMARGIN_EIP712_CHAIN_ID=131277322940537" in refused.output.replace("\n", "")
    assert _cli("oracle", "push").exit_code == 1  # neither --rpc-url nor --in-process


def test_in_process_rehearsal_deploys_pushes_and_applies(workdir: Path, monkeypatch):
    monkeypatch.delenv("DYNAMARGIN_PUBLICATIONS_URL", raising=False)
    from pipelines import onchain_round_trip

    # The rehearsal's RiskOracle is the first contract of a fresh chain: its address is fixed.
    session = onchain_round_trip.start()
    _publish(
        workdir,
        Eip712Domain(chain_id=session.chain.chain_id, verifying_contract=session.oracle.address),
    )
    done = _cli("oracle", "push", "--in-process", "--json")
    assert done.exit_code == 0, done.output
    summary = json.loads(done.output)
    assert all(a["applied"] and a["values_equal_signed"] for a in summary["assets"])
    assert set(summary["deploy_gas"]) == {"RiskOracle", "PerpMarket", "MarginSteward"}
