"""Bad input on chain: each case gets a clear revert reason or a rejection event, and the
market and the steward's record stay exactly as they were."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from serving.errors import ContractRevert, OraclePushError
from serving.ethereum import Account
from serving.keys import SigningKeys
from serving.oracle_encoding import bulk_arguments, oracle_records
from serving.oracle_push import push_snapshots
from serving.signing import SnapshotSigner
from serving.solidity_build import Artifacts
from serving.standard import Eip712Domain
from serving.standard_vectors import vector_keys
from serving.steward_deployment import StewardConfig, apply_from_oracle, apply_signed
from tests.serving.onchain.conftest import (
    PUBLISHED_AT,
    Stack,
    fresh_bounds,
    make_stack,
    margin_state,
    signed_update,
)

T = PUBLISHED_AT + timedelta(minutes=1)


def _push_raw(stack: Stack, records, sender=None):
    call = stack.deployment.oracle.functions.publishBulkRiskParameterUpdates(
        *bulk_arguments(records)
    )
    return stack.chain.transact(call, sender=sender)


def _refused(stack: Stack, asset: str, action, reason: str) -> None:
    before = margin_state(stack, asset)
    with pytest.raises(ContractRevert, match=reason):
        action()
    assert margin_state(stack, asset) == before


def test_a_forged_signature_is_refused(stack: Stack):
    stack.at(T)
    forger = SnapshotSigner(
        SigningKeys(vector_keys().ed25519, bytes.fromhex("11" * 32)), stack.deployment.domain
    )
    forged = signed_update(forger, "BTCUSDT", 1, PUBLISHED_AT, imf=0.06, mmf=0.035)
    _refused(
        stack,
        "BTCUSDT",
        lambda: apply_signed(stack.deployment, forged),
        "not from an allowed signer",
    )
    # A genuine signature over other values is a forgery too: one value changed in transit.
    genuine = signed_update(stack.signer, "BTCUSDT", 1, PUBLISHED_AT, imf=0.06, mmf=0.035)
    tampered = {**genuine, "margin": {**genuine["margin"], "imf": 0.2}}
    _refused(
        stack,
        "BTCUSDT",
        lambda: apply_signed(stack.deployment, tampered),
        "not from an allowed signer",
    )


def test_a_pusher_changing_a_value_on_the_oracle_is_caught_by_the_steward(stack: Stack):
    stack.at(T)
    snapshot = signed_update(stack.signer, "BTCUSDT", 1, PUBLISHED_AT, imf=0.06, mmf=0.035)
    records = oracle_records(snapshot)
    imf = next(i for i, r in enumerate(records) if r.update_type == "initialMarginFraction")
    records[imf] = records[imf].__class__(
        **{**records[imf].__dict__, "new_value": (10**17).to_bytes(32, "big")}
    )
    _push_raw(stack, records)  # an authorized but dishonest pusher: the oracle takes anything
    _refused(
        stack,
        "BTCUSDT",
        lambda: apply_from_oracle(stack.deployment, "BTCUSDT"),
        "not from an allowed signer",
    )


def test_the_wrong_chain_id_and_the_wrong_feed_are_refused(stack: Stack):
    stack.at(T)
    for domain, reason in (
        (
            Eip712Domain(chain_id=1, verifying_contract=stack.deployment.oracle.address),
            "another chain id",
        ),
        (
            Eip712Domain(chain_id=stack.chain.chain_id, verifying_contract="0x" + "ab" * 20),
            "another verifying contract",
        ),
    ):
        update = signed_update(
            SnapshotSigner(vector_keys(), domain), "BTCUSDT", 1, PUBLISHED_AT, imf=0.06, mmf=0.035
        )
        _refused(stack, "BTCUSDT", lambda u=update: apply_signed(stack.deployment, u), reason)
        # The pusher refuses it before sending anything.
        with pytest.raises(OraclePushError, match="DYNAMARGIN_EIP712_CHAIN_ID"):
            push_snapshots(stack.chain, stack.deployment.oracle, [update])


def test_expired_stale_and_future_updates_are_refused(stack: Stack):
    stack.at(T)
    expired = signed_update(
        stack.signer, "BTCUSDT", 1, PUBLISHED_AT - timedelta(hours=3), imf=0.06, mmf=0.035
    )
    _refused(stack, "BTCUSDT", lambda: apply_signed(stack.deployment, expired), "update expired")
    stale = signed_update(
        stack.signer,
        "BTCUSDT",
        1,
        PUBLISHED_AT - timedelta(hours=2),
        imf=0.06,
        mmf=0.035,
        expiry=timedelta(days=1),
    )
    _refused(stack, "BTCUSDT", lambda: apply_signed(stack.deployment, stale), "update is stale")
    future = signed_update(stack.signer, "BTCUSDT", 1, T + timedelta(hours=1), imf=0.06, mmf=0.035)
    _refused(
        stack, "BTCUSDT", lambda: apply_signed(stack.deployment, future), "published in the future"
    )


def test_a_replayed_old_update_is_refused(stack: Stack):
    stack.at(T)
    first = signed_update(stack.signer, "BTCUSDT", 1, PUBLISHED_AT, imf=0.06, mmf=0.035)
    second = signed_update(stack.signer, "BTCUSDT", 2, PUBLISHED_AT, imf=0.065, mmf=0.036)
    assert apply_signed(stack.deployment, second).applied
    for old in (first, second):
        _refused(
            stack,
            "BTCUSDT",
            lambda o=old: apply_signed(stack.deployment, o),
            "not above the last applied",
        )


def test_a_step_beyond_bounds_is_rejected_with_an_event(stack: Stack):
    stack.at(T)
    before = margin_state(stack, "BTCUSDT")
    # IMF 5% -> 9%: +80%, beyond the 50% maximum relative change.
    outcome = apply_signed(
        stack.deployment,
        signed_update(stack.signer, "BTCUSDT", 1, PUBLISHED_AT, imf=0.09, mmf=0.035),
    )
    assert not outcome.applied
    assert outcome.rejection == "imf: step beyond the maximum relative change"
    assert margin_state(stack, "BTCUSDT") == before
    below = apply_signed(
        stack.deployment,
        signed_update(stack.signer, "BTCUSDT", 1, PUBLISHED_AT, imf=0.05, mmf=0.005),
    )
    assert below.rejection == "mmf: below the floor" and margin_state(stack, "BTCUSDT") == before
    halted = apply_signed(
        stack.deployment,
        signed_update(
            stack.signer, "BTCUSDT", 1, PUBLISHED_AT, imf=0.06, mmf=0.035, status="halted"
        ),
    )
    assert halted.rejection == "status halted is not applicable"
    assert margin_state(stack, "BTCUSDT") == before


def test_clamping_applies_the_nearest_value_inside_the_bounds(artifacts: Artifacts, tmp_path: Path):
    stack = make_stack(artifacts, tmp_path, fresh_bounds(clamp=True))
    stack.at(T)
    outcome = apply_signed(
        stack.deployment,
        signed_update(stack.signer, "BTCUSDT", 1, PUBLISHED_AT, imf=0.09, mmf=0.035),
    )
    assert outcome.applied
    assert outcome.clamped == (("imf", 9 * 10**16, 75 * 10**15, "maximum step up"),)
    assert stack.deployment.market.functions.marginFractions("BTCUSDT").call()[:2] == [
        75 * 10**15,
        35 * 10**15,
    ]


def test_an_update_sooner_than_the_minimum_delay_is_rejected(artifacts: Artifacts, tmp_path: Path):
    stack = make_stack(artifacts, tmp_path, fresh_bounds(min_delay_s=3600))
    stack.at(T)
    assert apply_signed(
        stack.deployment,
        signed_update(stack.signer, "BTCUSDT", 1, PUBLISHED_AT, imf=0.06, mmf=0.035),
    ).applied
    before = margin_state(stack, "BTCUSDT")
    soon = apply_signed(
        stack.deployment,
        signed_update(stack.signer, "BTCUSDT", 2, PUBLISHED_AT, imf=0.065, mmf=0.035),
    )
    assert soon.rejection == "imf: too soon after the last change"
    assert margin_state(stack, "BTCUSDT") == before


def test_an_unauthorized_pusher_is_refused_by_the_oracle(stack: Stack):
    stack.at(T)
    records = oracle_records(
        signed_update(stack.signer, "BTCUSDT", 1, PUBLISHED_AT, imf=0.06, mmf=0.035)
    )
    counter = stack.deployment.oracle.functions.updateCounter().call()
    with pytest.raises(ContractRevert, match="Unauthorized: Sender not authorized"):
        _push_raw(stack, records, sender=stack.chain.accounts[7])
    assert stack.deployment.oracle.functions.updateCounter().call() == counter
    outsider = Account.from_key(bytes.fromhex("22" * 32)).address
    assert not stack.deployment.oracle.functions.isAuthorized(outsider).call()


def test_a_malformed_new_value_is_refused(stack: Stack):
    stack.at(T)
    records = oracle_records(
        signed_update(stack.signer, "BTCUSDT", 1, PUBLISHED_AT, imf=0.06, mmf=0.035)
    )
    sigma = next(i for i, r in enumerate(records) if r.update_type == "sigma")
    records[sigma] = records[sigma].__class__(
        **{**records[sigma].__dict__, "new_value": b"\x01" * 31}
    )
    _push_raw(stack, records)
    _refused(
        stack,
        "BTCUSDT",
        lambda: apply_from_oracle(stack.deployment, "BTCUSDT"),
        "newValue is not one ABI-encoded uint256",
    )


def test_records_of_two_snapshots_are_not_mixed(stack: Stack):
    stack.at(T)
    one = oracle_records(
        signed_update(stack.signer, "BTCUSDT", 1, PUBLISHED_AT, imf=0.06, mmf=0.035)
    )
    two = oracle_records(
        signed_update(stack.signer, "BTCUSDT", 2, PUBLISHED_AT, imf=0.065, mmf=0.036)
    )
    _push_raw(stack, one)
    _push_raw(stack, [r for r in two if r.update_type == "sigma"])
    _refused(
        stack,
        "BTCUSDT",
        lambda: apply_from_oracle(stack.deployment, "BTCUSDT"),
        "belong to different snapshots",
    )


def test_the_steward_config_keeps_defaults(stack: Stack):
    config = StewardConfig()
    assert tuple(stack.deployment.steward.functions.boundsOf(0).call()) == config.imf.as_struct()
