"""Test vectors of the RiskSnapshot standard: inputs, canonical bytes, hashes, signatures.

:func:`build_vectors` derives every vector from fixed inputs and two well-known *test* keys
(never use them for anything else): the Ed25519 secret of RFC 8032's first test vector and
the secp256k1 key of eth-account's documentation. Both signature schemes are deterministic
(RFC 8032; RFC 6979 nonces), so the same code always gives the same bytes.

The committed file ``spec/risk-snapshot/vectors.json`` must equal :func:`build_vectors`:
a change to the canonical form, the signed payload, the reference id, the EIP-712 types or
the RiskOracle encoding changes a vector and fails CI. Python (``tests/serving/onchain``),
Solidity (the steward's pure functions) and JavaScript (``onchain/verifier``) check it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from serving.ethereum import Account, encode_typed_data, keccak
from serving.keys import SigningKeys
from serving.oracle_encoding import oracle_records
from serving.signing import EIP712_TYPES, EIP712_TYPES_V2, SnapshotSigner, typed_data_of
from serving.standard import (
    SCHEMA_V1,
    SCHEMA_V2,
    Eip712Domain,
    RiskSnapshot,
    canonical_json,
    payload_hash,
    reference_id,
    signing_payload,
)

VECTORS_PATH: Final[Path] = (
    Path(__file__).resolve().parents[1] / "spec" / "risk-snapshot" / "vectors.json"
)

ED25519_TEST_SEED: Final[str] = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
"""RFC 8032, section 7.1, TEST 1 secret key."""
SECP256K1_TEST_KEY: Final[str] = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
"""The example key of eth-account's documentation."""
TEST_DOMAIN: Final[Eip712Domain] = Eip712Domain(
    chain_id=1, verifying_contract="0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
)

CANONICAL_CASES: Final[tuple[tuple[str, str], ...]] = (
    ("keys sorted, whitespace dropped", '{ "b" : 1 , "a" : [ true , false , null ] }'),
    ("floats to 12 significant digits", "[0.30000000000000004, 1.0, 100.0, 0.5, 1e-7, 1e16]"),
    ("exponent form past 12 digits", "[123456789012345.0, 1.5e21, 0.00001234, 0.0001234]"),
    ("exact tie rounds half to even", "[3.814697265625e-06, 0.5]"),
    ("negative zero", "[-0.0, -0, 0.0, -1.5]"),
    ("integers stay integers", "[12345678901234567890, -42, 0]"),
    (
        "strings ASCII-escaped",
        r'["caf\u00e9 \ud83d\ude00", "tab\tquote\"slash/back\\", "\u0001\u007f"]',
    ),
    ("keys by code point", '{"\\uff46": 1, "\\ud83d\\ude00": 2, "B": 3, "a": 4, "\\u00e9": 5}'),
)


def vector_keys() -> SigningKeys:
    """The fixed test keys (Ed25519 and secp256k1)."""
    return SigningKeys(
        ed25519=Ed25519PrivateKey.from_private_bytes(bytes.fromhex(ED25519_TEST_SEED)),
        eth_private_key=bytes.fromhex(SECP256K1_TEST_KEY),
        source="test vectors",
    )


def example_snapshot(schema: str = SCHEMA_V2, **changes: Any) -> RiskSnapshot:
    """An unsigned example snapshot of BTCUSDT with its reference id; ``changes`` replace
    top-level members (``margin`` whole). The vectors' inputs, and a handy test fixture."""
    data: dict[str, Any] = {
        "schema": schema,
        "asset": "BTCUSDT",
        "venue": "binance",
        "update_id": 42,
        "as_of": datetime(2025, 6, 30, 23, 0, tzinfo=UTC),
        "published_at": datetime(2025, 6, 30, 23, 5, tzinfo=UTC),
        "valid_until": datetime(2025, 7, 1, 1, 5, tzinfo=UTC),
        "horizon_hours": 24,
        "sigma": 0.0312345678901,
        "sigma_lower": 0.024,
        "sigma_upper": 0.041,
        "var_99": 0.0726,
        "var_99_lower": 0.056,
        "var_99_upper": 0.095,
        "es_99": 0.0833,
        "es_99_lower": 0.064,
        "es_99_upper": 0.11,
        "liquidity": {
            "amihud": 1.2e-10,
            "spread_bps": 1.8,
            "slippage_bps": 6.5,
            "standard_size_usd": 1e6,
        },
        "margin": {
            "multiplier": 1.25,
            "previous_multiplier": 1.1,
            "base_imf": 0.05,
            "base_mmf": 0.03,
            "imf": 0.0625,
            "mmf": 0.0375,
        },
        "status": "ok",
        "provenance": {
            "model_name": "dynamargin-vol-24h",
            "model_version": "3",
            "mlflow_run_id": None,
            "feature_set_hash": "sha256:00",
            "data_through": datetime(2025, 6, 30, 23, 0, tzinfo=UTC),
            "reference_id": "pending",
        },
    }
    for key, value in changes.items():
        data[key] = value
    draft = RiskSnapshot.model_validate(data)
    ref = reference_id(draft.to_dict())
    return draft.model_copy(
        update={"provenance": draft.provenance.model_copy(update={"reference_id": ref})}
    )


def _snapshot_vector(name: str, snapshot: RiskSnapshot, signer: SnapshotSigner) -> dict[str, Any]:
    signed = signer.sign(snapshot).to_dict()
    typed = typed_data_of(signed)
    encoded = encode_typed_data(full_message=typed)
    domain_separator = bytes(encoded.header)
    struct_hash = bytes(encoded.body)
    digest = keccak(b"\x19\x01" + domain_separator + struct_hash)
    primary = typed["primaryType"]
    types = EIP712_TYPES_V2 if primary == "RiskParameters" else EIP712_TYPES
    type_string = f"{primary}(" + ",".join(f"{f['type']} {f['name']}" for f in types[primary]) + ")"
    vector: dict[str, Any] = {
        "name": name,
        "schema": signed["schema"],
        "document": canonical_json(signed).decode("ascii"),
        "signing_payload": signing_payload(signed).decode("ascii"),
        "payload_sha256": payload_hash(signed),
        "reference_id": signed["provenance"]["reference_id"],
        "payload_keccak256": "0x" + keccak(signing_payload(signed)).hex(),
        "ed25519": signed["signature"]["ed25519"],
        "eip712": {
            "primaryType": primary,
            "typeString": type_string,
            "typeHash": "0x" + keccak(type_string.encode("ascii")).hex(),
            "domain": typed["domain"],
            "message": {
                key: ("0x" + value.hex() if isinstance(value, bytes) else str(value))
                for key, value in typed["message"].items()
            },
            "domainSeparator": "0x" + domain_separator.hex(),
            "structHash": "0x" + struct_hash.hex(),
            "digest": "0x" + digest.hex(),
            "signature": signed["signature"]["eip712"]["signature"],
            "signer": signed["signature"]["eip712"]["signer"],
        },
    }
    if signed["schema"] == SCHEMA_V2:
        vector["risk_oracle"] = [
            {
                "updateType": r.update_type,
                "market": "0x" + r.market.hex(),
                "newValue": "0x" + r.new_value.hex(),
                "referenceId": r.reference_id,
                "additionalData": "0x" + r.additional_data.hex(),
            }
            for r in oracle_records(signed)
        ]
    return vector


def build_vectors() -> dict[str, Any]:
    """Every vector, from the fixed inputs and test keys (deterministic)."""
    from serving import strict_json

    keys = vector_keys()
    signer = SnapshotSigner(keys, TEST_DOMAIN)
    canonical = []
    for name, text in CANONICAL_CASES:
        out = canonical_json(strict_json.loads(text, what=name))
        canonical.append(
            {
                "name": name,
                "input": text,
                "canonical": out.decode("ascii"),
                "sha256": hashlib.sha256(out).hexdigest(),
            }
        )
    snapshots = [
        _snapshot_vector("v2 ok", example_snapshot(SCHEMA_V2), signer),
        _snapshot_vector(
            "v2 halted, microsecond times, large update id",
            example_snapshot(
                SCHEMA_V2,
                update_id=9_007_199_254_740_993,
                status="halted",
                published_at=datetime(2025, 6, 30, 23, 5, 7, 123456, tzinfo=UTC),
                sigma=3.814697265625e-06,
            ),
            signer,
        ),
        _snapshot_vector("v1 (legacy RiskUpdate)", example_snapshot(SCHEMA_V1), signer),
    ]
    return {
        "description": "Test vectors of the dynamargin RiskSnapshot standard (spec/risk-snapshot/"
        "README.md). Keys are public test keys: never use them for anything else.",
        "keys": {
            "ed25519_seed": ED25519_TEST_SEED,
            "ed25519_public_key": keys.ed25519_public_hex,
            "secp256k1_private_key": SECP256K1_TEST_KEY,
            "eip712_signer": Account.from_key(bytes.fromhex(SECP256K1_TEST_KEY)).address,
        },
        "canonical": canonical,
        "snapshots": snapshots,
    }


def vectors_text() -> str:
    """The vectors file's exact text."""
    return json.dumps(build_vectors(), indent=1, sort_keys=True, ensure_ascii=True) + "\n"
