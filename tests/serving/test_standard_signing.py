"""RiskSnapshot v1, canonical JSON, JSON Schema, signatures, keys and the oracle mapping."""

from __future__ import annotations

import json
import os
import pickle
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.errors import SigningKeyError, SnapshotError
from serving.ethereum import Account, encode_typed_data
from serving.keys import ENV_ED25519, ENV_EIP712, load_signing_keys
from serving.signing import (
    SnapshotSigner,
    risk_update_typed_data,
    to_wad,
    verify_snapshot,
    verify_snapshot_bytes,
)
from serving.standard import (
    RiskSnapshot,
    canonical_json,
    json_schema,
    oracle_updates,
    reference_id,
    signing_payload,
    snapshot_from_dict,
)

NOW = datetime(2025, 6, 30, 23, 5, tzinfo=UTC)


def unsigned(asset: str = "BTCUSDT", update_id: int = 42, multiplier: float = 1.25) -> RiskSnapshot:
    data = {
        "schema": "dynamargin.risk/1",
        "asset": asset,
        "venue": "binance",
        "update_id": update_id,
        "as_of": NOW - timedelta(minutes=5),
        "published_at": NOW,
        "valid_until": NOW + timedelta(hours=2),
        "horizon_hours": 24,
        "sigma": 0.031,
        "sigma_lower": 0.024,
        "sigma_upper": 0.041,
        "var_99": 0.072,
        "var_99_lower": 0.056,
        "var_99_upper": 0.095,
        "es_99": 0.083,
        "es_99_lower": 0.064,
        "es_99_upper": 0.11,
        "liquidity": {
            "amihud": 1.2e-10,
            "spread_bps": 1.8,
            "slippage_bps": 6.5,
            "standard_size_usd": 1e6,
        },
        "margin": {
            "multiplier": multiplier,
            "previous_multiplier": 1.1,
            "base_imf": 0.05,
            "base_mmf": 0.03,
            "imf": 0.05 * multiplier,
            "mmf": 0.03 * multiplier,
        },
        "status": "ok",
        "provenance": {
            "model_name": "dynamargin-vol-24h",
            "model_version": "3",
            "mlflow_run_id": "abc",
            "feature_set_hash": "sha256:00",
            "data_through": NOW - timedelta(minutes=5),
            "reference_id": "x",
        },
    }
    draft = RiskSnapshot.model_validate(data)
    ref = reference_id(draft.to_dict())
    return draft.model_copy(
        update={"provenance": draft.provenance.model_copy(update={"reference_id": ref})}
    )


@pytest.fixture(scope="module")
def signed(signer: SnapshotSigner) -> dict:
    return signer.sign(unsigned()).to_dict()


def test_snapshot_shape_matches_the_agreed_contract(signed):
    assert signed["schema"] == "dynamargin.risk/1"
    assert signed["as_of"] == "2025-06-30T23:00:00Z"
    assert signed["published_at"] == "2025-06-30T23:05:00Z"
    assert set(signed["margin"]) == {
        "multiplier",
        "previous_multiplier",
        "base_imf",
        "base_mmf",
        "imf",
        "mmf",
    }
    assert set(signed["signature"]) == {"ed25519", "eip712"}
    assert signed["provenance"]["reference_id"].startswith("BTCUSDT:42:")
    assert snapshot_from_dict(signed).to_dict() == signed


def test_canonical_json_is_sorted_compact_and_fixed_precision():
    text = canonical_json({"b": 1.0, "a": [0.1 + 0.2, 1e-10, -0.0, 1000000.0, 3], "c": None})
    assert text == b'{"a":[0.3,1e-10,0,1000000,3],"b":1,"c":null}'
    with pytest.raises(SnapshotError):
        canonical_json({"x": float("nan")})
    assert canonical_json(json.loads(text)) == text


def test_naive_times_and_non_finite_numbers_are_rejected():
    data = unsigned().to_dict()
    with pytest.raises(SnapshotError):
        snapshot_from_dict({**data, "sigma": float("inf")})
    with pytest.raises(SnapshotError):
        snapshot_from_dict({**data, "as_of": "2025-06-30T23:00:00"})


def test_json_schema_validates_emitted_snapshots_and_rejects_broken_ones(signed):
    validator = jsonschema.Draft202012Validator(json_schema(1))
    validator.validate(json.loads(canonical_json(signed)))
    for broken in (
        {k: v for k, v in signed.items() if k != "signature"},
        {**signed, "status": "fine"},
        {**signed, "as_of": "2025-06-30T23:00:00+01:00"},
        {**signed, "extra": 1},
        {**signed, "sigma": -0.1},
    ):
        assert not validator.is_valid(broken)


def test_signature_verifies_and_pinned_keys_are_checked(signed, signer):
    result = verify_snapshot(
        signed, trusted_public_keys=[signer.public_key], trusted_signers=[signer.address]
    )
    assert result.ok, result.errors
    assert result.checks == {
        "schema": True,
        "reference_id": True,
        "ed25519": True,
        "eip712": True,
        "trusted_key": True,
        "trusted_signer": True,
    }
    other = verify_snapshot(signed, trusted_signers=["0x" + "11" * 20])
    assert not other.ok and not other.checks["trusted_signer"]


def test_eip712_signature_recovers_the_signer_address(signed, signer):
    typed = encode_typed_data(full_message=risk_update_typed_data(signed))
    recovered = Account.recover_message(typed, signature=signed["signature"]["eip712"]["signature"])
    assert recovered == signer.address == signed["signature"]["eip712"]["signer"]
    message = risk_update_typed_data(signed)["message"]
    assert message["newValue"] == 1_250_000_000_000_000_000 == to_wad(1.25)
    assert message["updateId"] == 42


def test_changed_content_breaks_both_signatures(signed):
    tampered = json.loads(canonical_json(signed))
    tampered["margin"]["multiplier"] = 1.0
    result = verify_snapshot(tampered)
    assert not result.ok
    assert not result.checks["ed25519"] and not result.checks["eip712"]


@pytest.fixture(scope="module")
def published_bytes(signed) -> bytes:
    return canonical_json(signed)


def test_published_bytes_verify_exactly(published_bytes):
    assert verify_snapshot_bytes(published_bytes).ok


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_changed_byte_of_the_payload_fails_verification(published_bytes, data):
    position = data.draw(st.integers(0, len(published_bytes) - 1), label="position")
    replacement = data.draw(
        st.integers(0, 255).filter(lambda b: b != published_bytes[position]), label="byte"
    )
    mutated = bytearray(published_bytes)
    mutated[position] = replacement
    assert not verify_snapshot_bytes(bytes(mutated)).ok


def test_every_single_byte_of_the_signed_payload_is_covered(signed, signer):
    # Exhaustive over positions of the signed payload: flip one bit at each.
    payload = signing_payload(signed)
    public = signer.keys.ed25519.public_key()
    signature = bytes.fromhex(signed["signature"]["ed25519"]["signature"])
    public.verify(signature, payload)
    from cryptography.exceptions import InvalidSignature

    for position in range(len(payload)):
        mutated = bytearray(payload)
        mutated[position] ^= 0x01
        with pytest.raises(InvalidSignature):
            public.verify(signature, bytes(mutated))


def test_keys_are_generated_with_mode_0600_and_reused(tmp_path: Path):
    keys = load_signing_keys(tmp_path, environ={})
    for name in ("ed25519.pem", "eip712.key"):
        mode = stat.S_IMODE((tmp_path / "keys" / name).stat().st_mode)
        assert mode == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    again = load_signing_keys(tmp_path, environ={})
    assert again.eip712_address == keys.eip712_address
    assert again.ed25519_public_hex == keys.ed25519_public_hex


def test_private_keys_never_appear_in_repr_or_pickle(tmp_path: Path):
    keys = load_signing_keys(tmp_path, environ={})
    secret = keys.eth_private_key.hex()
    ed_secret = (tmp_path / "keys" / "ed25519.pem").read_text()
    signer = SnapshotSigner(keys)
    for text in (repr(keys), str(keys), repr(signer)):
        assert secret not in text and ed_secret.splitlines()[1] not in text
    with pytest.raises(TypeError):
        pickle.dumps(keys)
    snapshot = json.dumps(signer.sign(unsigned()).to_dict())
    assert secret not in snapshot


def test_keys_from_env_and_unsafe_permissions(tmp_path: Path):
    env = {ENV_ED25519: "01" * 32, ENV_EIP712: "02" * 32}
    keys = load_signing_keys(tmp_path, environ=env)
    assert keys.eip712_address == Account.from_key(bytes.fromhex("02" * 32)).address
    assert not (tmp_path / "keys").exists()
    with pytest.raises(SigningKeyError, match="not 32 bytes") as excinfo:
        load_signing_keys(tmp_path, environ={ENV_EIP712: "zz" * 32})
    assert "zz" not in str(excinfo.value)
    load_signing_keys(tmp_path, environ={})
    os.chmod(tmp_path / "keys" / "eip712.key", 0o644)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        load_signing_keys(tmp_path, environ={})


def test_oracle_updates_carry_previous_value_per_market_and_type(signer):
    snaps = [
        signer.sign(unsigned("BTCUSDT", 1, 1.1)).to_dict(),
        signer.sign(unsigned("ETHUSDT", 1, 1.4)).to_dict(),
        signer.sign(unsigned("BTCUSDT", 2, 1.3)).to_dict(),
    ]
    snaps[2]["published_at"] = "2025-06-30T23:10:00Z"
    updates = oracle_updates(snaps)
    multipliers = [u for u in updates if u.updateType == "marginMultiplier"]
    assert [(u.market, u.newValue, u.previousValue) for u in multipliers] == [
        ("BTCUSDT", 1.1, 1.1),
        ("ETHUSDT", 1.4, 1.1),
        ("BTCUSDT", 1.3, 1.1),
    ]
    sigma = [u for u in updates if u.updateType == "sigma"]
    assert [u.previousValue for u in sigma] == [None, None, 0.031]
    assert {u.updateType for u in updates} == {
        "marginMultiplier",
        "initialMarginFraction",
        "maintenanceMarginFraction",
        "sigma",
        "var99",
        "es99",
    }
    assert multipliers[2].referenceId == snaps[2]["provenance"]["reference_id"]
    assert multipliers[0].timestamp == int(NOW.timestamp())
