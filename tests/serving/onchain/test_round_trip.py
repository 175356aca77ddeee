"""Publish (Python) -> push to Chaos Labs' RiskOracle -> our steward applies -> read back,
on a real EVM (py-evm in process, or over JSON-RPC)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from serving.errors import OraclePushError
from serving.evm_chain import rpc_chain
from serving.oracle_encoding import UPDATE_TYPES, decode_envelope, decode_value
from serving.oracle_push import push_snapshots
from serving.signing import to_wad, unix_seconds
from serving.steward_deployment import apply_from_oracle, apply_signed, read_back
from tests.serving.onchain.conftest import ASSETS, PUBLISHED_AT, Stack, margin_state
from tests.serving.onchain.rpc_server import serve_json_rpc

WAD_PATHS = {
    "multiplier": ("margin", "multiplier"),
    "imf": ("margin", "imf"),
    "mmf": ("margin", "mmf"),
    "sigma": ("sigma",),
    "var99": ("var_99",),
    "es99": ("es_99",),
}


def _value(snapshot, path):
    for key in path:
        snapshot = snapshot[key]
    return snapshot


def test_published_batch_reaches_the_market_through_the_oracle_and_the_steward(stack: Stack):
    batch = stack.publish()
    stack.at(PUBLISHED_AT + timedelta(minutes=1))
    report = push_snapshots(stack.chain, stack.deployment.oracle, batch.snapshots)
    assert report.assets_pushed == sorted(ASSETS) and report.gas_used > 0
    oracle = stack.deployment.oracle
    for snapshot in batch.snapshots:
        asset = snapshot["asset"]
        # The chain record links back to the publication store by its reference id.
        stored = stack.store.latest(asset)
        for kind in UPDATE_TYPES:
            record = oracle.functions.getLatestUpdateByParameterAndMarket(
                kind, asset.encode()
            ).call()
            assert record[2] == stored.snapshot["provenance"]["reference_id"]
        carrier = oracle.functions.getLatestUpdateByParameterAndMarket(
            "marginMultiplier", asset.encode()
        ).call()
        envelope = decode_envelope(carrier[7])
        assert envelope.update_id == snapshot["update_id"]
        assert envelope.valid_until == unix_seconds(snapshot["valid_until"])
        assert decode_value(carrier[1]) == to_wad(snapshot["margin"]["multiplier"])

        outcome = apply_from_oracle(stack.deployment, asset)
        assert outcome.applied and outcome.rejection is None and not outcome.clamped
        back = read_back(stack.deployment, asset)
        # Values equal the signed snapshot after fixed-point rounding (WAD, floor).
        assert back["market_imf"] == to_wad(snapshot["margin"]["imf"])
        assert back["market_mmf"] == to_wad(snapshot["margin"]["mmf"])
        record = back["steward"]
        for name, path in WAD_PATHS.items():
            assert record[name] == to_wad(_value(snapshot, path)), name
        assert record["update_id"] == snapshot["update_id"]
        assert record["reference_id"] == stored.snapshot["provenance"]["reference_id"]
        assert record["published_at"] == unix_seconds(snapshot["published_at"])


def test_push_is_idempotent_and_a_newer_batch_goes_on_top(stack: Stack):
    first = stack.publish()
    stack.at(PUBLISHED_AT + timedelta(minutes=1))
    push_snapshots(stack.chain, stack.deployment.oracle, first.snapshots)
    counter = stack.deployment.oracle.functions.updateCounter().call()
    again = push_snapshots(stack.chain, stack.deployment.oracle, first.snapshots)
    assert again.calls == [] and sorted(again.already_on_chain) == sorted(ASSETS)
    assert stack.deployment.oracle.functions.updateCounter().call() == counter

    second = stack.publish(at=PUBLISHED_AT + timedelta(hours=1))
    stack.at(PUBLISHED_AT + timedelta(hours=1, minutes=1))
    newer = push_snapshots(stack.chain, stack.deployment.oracle, second.snapshots)
    assert newer.assets_pushed == sorted(ASSETS)
    # The older batch is never pushed over the newer one.
    stale = push_snapshots(stack.chain, stack.deployment.oracle, first.snapshots)
    assert stale.calls == []
    for asset in ASSETS:
        assert apply_from_oracle(stack.deployment, asset).applied
        assert read_back(stack.deployment, asset)["steward"]["update_id"] == 2


def test_push_chunks_under_the_gas_limit_and_reports_gas(stack: Stack):
    batch = stack.publish()
    stack.at(PUBLISHED_AT + timedelta(minutes=1))
    # One asset's six records cost about 3.9M gas: a 9M limit fits two per call (10% margin).
    report = push_snapshots(
        stack.chain, stack.deployment.oracle, batch.snapshots, gas_limit=9_000_000
    )
    assert [len(c.assets) for c in report.calls] == [2, 1]
    assert all(c.gas_used <= 9_000_000 for c in report.calls)
    assert report.gas_used == sum(c.gas_used for c in report.calls)
    with pytest.raises(OraclePushError, match="alone needs"):
        push_snapshots(
            stack.chain,
            stack.deployment.oracle,
            stack.publish(at=PUBLISHED_AT + timedelta(hours=1)).snapshots,
            gas_limit=1_000_000,
        )


class _Crash(Exception):
    pass


def test_push_resumes_after_a_crash_without_sending_twice(stack: Stack, tmp_path: Path):
    batch = stack.publish()
    stack.at(PUBLISHED_AT + timedelta(minutes=1))
    journal = tmp_path / "push-journal.json"

    def crash_after_first_send(event, details):
        if event == "sent":
            raise _Crash(details["tx_hash"])

    with pytest.raises(_Crash) as crashed:
        push_snapshots(
            stack.chain,
            stack.deployment.oracle,
            batch.snapshots,
            gas_limit=9_000_000,
            journal=journal,
            progress=crash_after_first_send,
        )
    pending = str(crashed.value)
    assert pending in journal.read_text()  # journaled before its receipt was awaited
    resumed = push_snapshots(
        stack.chain, stack.deployment.oracle, batch.snapshots, gas_limit=9_000_000, journal=journal
    )
    assert resumed.resumed == [pending]
    assert len(resumed.calls) == 1 and len(resumed.already_on_chain) == 2
    # Every asset exactly once: 3 assets x 6 records.
    assert stack.deployment.oracle.functions.updateCounter().call() == 3 * len(UPDATE_TYPES)
    assert '"pending": {}' in journal.read_text()


def test_a_relayed_signed_update_is_applied_without_the_oracle(stack: Stack):
    batch = stack.publish()
    stack.at(PUBLISHED_AT + timedelta(minutes=1))
    snapshot = batch.snapshots[0]
    relayer = stack.chain.accounts[5]  # anyone: the signature is the authority
    outcome = apply_signed(stack.deployment, snapshot, sender=relayer)
    assert outcome.applied
    assert read_back(stack.deployment, snapshot["asset"])["market_imf"] == to_wad(
        snapshot["margin"]["imf"]
    )


def test_push_over_json_rpc(stack: Stack):
    batch = stack.publish()
    stack.at(PUBLISHED_AT + timedelta(minutes=1))
    pusher_key = stack.chain.tester.backend.account_keys[3]
    pusher = pusher_key.public_key.to_checksum_address()
    stack.chain.transact(stack.deployment.oracle.functions.addAuthorizedSender(pusher))
    with serve_json_rpc(stack.chain) as url:
        remote = rpc_chain(url, pusher_key.to_hex())
        oracle = remote.w3.eth.contract(
            address=stack.deployment.oracle.address, abi=stack.deployment.oracle.abi
        )
        report = push_snapshots(remote, oracle, batch.snapshots)
    assert report.assets_pushed == sorted(ASSETS)
    before = margin_state(stack, "BTCUSDT")
    assert apply_from_oracle(stack.deployment, "BTCUSDT").applied
    assert margin_state(stack, "BTCUSDT") != before
