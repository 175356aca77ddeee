"""Sign and verify RiskSnapshots: Ed25519 over canonical JSON, and EIP-712 typed data.

Ed25519
    ``signature.ed25519.signature = Ed25519(private, signing_payload(snapshot))`` where the
    payload is the canonical JSON of the snapshot without ``signature``
    (:func:`serving.standard.signing_payload`).

EIP-712
    An on-chain consumer verifies the struct below under :data:`DEFAULT_DOMAIN`::

        RiskUpdate(string market,string updateType,uint256 newValue,uint256 previousValue,
                   uint256 updateId,uint256 timestamp,uint256 validUntil,string status,
                   string referenceId,bytes32 payloadHash)

    ``updateType`` is ``"marginMultiplier"``; values are WAD-scaled (``x * 1e18``, exact
    from the 12-significant-digit canonical number); times are Unix seconds;
    ``payloadHash = keccak256(signing_payload(snapshot))`` binds every other field
    (sigma, VaR, ES, liquidity...) to the signature. ``ecrecover`` of the digest gives
    ``signature.eip712.signer``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import jsonschema
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from serving import strict_json
from serving.errors import SnapshotError
from serving.ethereum import Account, encode_typed_data, keccak
from serving.keys import SigningKeys
from serving.standard import (
    Ed25519Signature,
    Eip712Signature,
    RiskSnapshot,
    Signature,
    canonical_json,
    format_time,
    json_schema,
    parse_time,
    reference_id,
    signing_payload,
)

WAD = 10**18


@dataclass(frozen=True)
class Eip712Domain:
    """EIP-712 domain separator fields; a verifying contract pins the same values."""

    name: str = "dynamargin"
    version: str = "1"
    chain_id: int = 1
    verifying_contract: str = "0x0000000000000000000000000000000000000000"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }


DEFAULT_DOMAIN = Eip712Domain()

EIP712_TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "RiskUpdate": [
        {"name": "market", "type": "string"},
        {"name": "updateType", "type": "string"},
        {"name": "newValue", "type": "uint256"},
        {"name": "previousValue", "type": "uint256"},
        {"name": "updateId", "type": "uint256"},
        {"name": "timestamp", "type": "uint256"},
        {"name": "validUntil", "type": "uint256"},
        {"name": "status", "type": "string"},
        {"name": "referenceId", "type": "string"},
        {"name": "payloadHash", "type": "bytes32"},
    ],
}


def to_wad(value: float) -> int:
    """Exact ``value * 1e18`` of a canonical (12 significant digits) number."""
    return int(Decimal(repr(float(value))) * WAD)


def risk_update_typed_data(
    snapshot: Mapping[str, Any], domain: Eip712Domain = DEFAULT_DOMAIN
) -> dict[str, Any]:
    """EIP-712 ``full_message`` of a snapshot dict (signature ignored)."""
    return {
        "types": EIP712_TYPES,
        "primaryType": "RiskUpdate",
        "domain": domain.to_dict(),
        "message": {
            "market": snapshot["asset"],
            "updateType": "marginMultiplier",
            "newValue": to_wad(snapshot["margin"]["multiplier"]),
            "previousValue": to_wad(snapshot["margin"]["previous_multiplier"]),
            "updateId": int(snapshot["update_id"]),
            "timestamp": int(parse_time(snapshot["published_at"]).timestamp()),
            "validUntil": int(parse_time(snapshot["valid_until"]).timestamp()),
            "status": snapshot["status"],
            "referenceId": snapshot["provenance"]["reference_id"],
            "payloadHash": keccak(signing_payload(snapshot)),
        },
    }


class SnapshotSigner:
    """Sign snapshots with the publisher's keys.

    Parameters
    ----------
    keys
        From :func:`serving.keys.load_signing_keys`.
    domain
        EIP-712 domain.
    """

    def __init__(self, keys: SigningKeys, domain: Eip712Domain = DEFAULT_DOMAIN) -> None:
        self.keys = keys
        self.domain = domain

    def __repr__(self) -> str:
        return f"SnapshotSigner({self.keys!r}, chain_id={self.domain.chain_id})"

    @property
    def public_key(self) -> str:
        """Ed25519 public key (hex) that verifiers pin."""
        return self.keys.ed25519_public_hex

    @property
    def address(self) -> str:
        """EIP-712 signer address that verifiers pin."""
        return self.keys.eip712_address

    def sign_checkpoint(self, payload: bytes) -> str:
        """Ed25519 signature (hex) of a checkpoint body (:mod:`serving.checkpoints`).

        The body's ``schema`` member (``dynamargin.checkpoint/1``) keeps this signature
        from ever verifying as a snapshot's, whose payload says ``dynamargin.risk/1``.
        """
        return self.keys.ed25519.sign(payload).hex()

    def sign(self, snapshot: RiskSnapshot) -> RiskSnapshot:
        """Return a copy of ``snapshot`` with both signatures.

        Raises
        ------
        SnapshotError
            If the snapshot's reference id does not name its content.
        """
        data = snapshot.to_dict()
        data.pop("signature", None)
        expected = reference_id(data)
        if data["provenance"]["reference_id"] != expected:
            raise SnapshotError(
                f"{snapshot.asset} update {snapshot.update_id}: reference_id "
                f"{data['provenance']['reference_id']} != {expected}; build it with "
                "serving.standard.reference_id before signing"
            )
        ed = self.keys.ed25519.sign(signing_payload(data))
        typed = encode_typed_data(full_message=risk_update_typed_data(data, self.domain))
        eth = self.keys.eth_account.sign_message(typed)
        signature = Signature(
            ed25519=Ed25519Signature(public_key=self.public_key, signature=ed.hex()),
            eip712=Eip712Signature(
                signer=self.address, signature="0x" + bytes(eth.signature).hex()
            ),
        )
        return snapshot.model_copy(update={"signature": signature})


@dataclass(frozen=True)
class VerificationResult:
    """Outcome of :func:`verify_snapshot`; ``ok`` only if every check passed.

    Attributes
    ----------
    ok
        All checks passed.
    checks
        Name -> passed, for ``schema``, ``canonical``, ``reference_id``, ``ed25519``,
        ``eip712`` and, when pinned, ``trusted_key`` / ``trusted_signer``.
    errors
        Human-readable reasons of the failed checks.
    asset, update_id, public_key, signer
        What was verified and by whom it claims to be signed.
    """

    ok: bool
    checks: dict[str, bool]
    errors: tuple[str, ...]
    asset: str | None = None
    update_id: int | None = None
    public_key: str | None = None
    signer: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def verify_snapshot(
    document: Mapping[str, Any],
    *,
    trusted_public_keys: Collection[str] | None = None,
    trusted_signers: Collection[str] | None = None,
    domain: Eip712Domain = DEFAULT_DOMAIN,
    check_eip712: bool = True,
) -> VerificationResult:
    """Verify a published snapshot dict: schema, reference id and both signatures.

    Parameters
    ----------
    document
        Parsed snapshot JSON.
    trusted_public_keys, trusted_signers
        Pinned Ed25519 keys / EIP-712 addresses; without them the signatures only prove
        integrity under the keys the snapshot names, not who published it.
    domain
        EIP-712 domain the signer used.
    check_eip712
        Also recover the EIP-712 signer (pure Python, milliseconds per snapshot); the
        API's per-load checks skip it, since the EIP-712 signature is part of the bytes
        the Ed25519 signature and the hash chain already pin.
    """
    checks: dict[str, bool] = {}
    errors: list[str] = []
    asset = document.get("asset") if isinstance(document.get("asset"), str) else None
    update_id = document.get("update_id") if isinstance(document.get("update_id"), int) else None
    where = f"{asset or '?'} update {update_id if update_id is not None else '?'}"

    schema_errors = sorted(_VALIDATOR.iter_errors(dict(document)), key=str)
    checks["schema"] = not schema_errors
    if schema_errors:
        first = schema_errors[0]
        errors.append(
            f"{where}: schema violation at /{'/'.join(map(str, first.path))}: {first.message}"
        )
        return VerificationResult(False, checks, tuple(errors), asset, update_id)

    sig = document["signature"]
    public_key, signer = sig["ed25519"]["public_key"], sig["eip712"]["signer"]
    expected_ref = reference_id(document)
    checks["reference_id"] = document["provenance"]["reference_id"] == expected_ref
    if not checks["reference_id"]:
        errors.append(f"{where}: reference_id does not match the content (expected {expected_ref})")

    payload = signing_payload(document)
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(
            bytes.fromhex(sig["ed25519"]["signature"]), payload
        )
        checks["ed25519"] = True
    except (InvalidSignature, ValueError):
        checks["ed25519"] = False
        errors.append(f"{where}: Ed25519 signature does not match the canonical payload")

    if check_eip712:
        try:
            typed = encode_typed_data(full_message=risk_update_typed_data(document, domain))
            recovered = Account.recover_message(
                typed, signature=bytes.fromhex(sig["eip712"]["signature"][2:])
            )
            checks["eip712"] = recovered == signer
            if not checks["eip712"]:
                errors.append(f"{where}: EIP-712 signature recovers {recovered}, not {signer}")
        except Exception as exc:  # eth-account raises several types for malformed signatures
            checks["eip712"] = False
            errors.append(f"{where}: EIP-712 signature cannot be recovered: {exc}")

    if trusted_public_keys is not None:
        checks["trusted_key"] = public_key in {k.lower() for k in trusted_public_keys}
        if not checks["trusted_key"]:
            errors.append(f"{where}: Ed25519 key {public_key} is not among the trusted keys")
    if trusted_signers is not None:
        checks["trusted_signer"] = signer.lower() in {s.lower() for s in trusted_signers}
        if not checks["trusted_signer"]:
            errors.append(f"{where}: EIP-712 signer {signer} is not among the trusted signers")

    return VerificationResult(
        ok=all(checks.values()),
        checks=checks,
        errors=tuple(errors),
        asset=asset,
        update_id=update_id,
        public_key=public_key,
        signer=signer,
        extra={"published_at": format_time(parse_time(document["published_at"]))},
    )


def verify_snapshot_bytes(raw: bytes, **kwargs: Any) -> VerificationResult:
    """Verify a snapshot exactly as published: the bytes must be its canonical JSON.

    Any changed byte therefore fails: it breaks the JSON, the canonical form, the schema or
    a signature. Keyword arguments go to :func:`verify_snapshot`.
    """
    try:
        document = strict_json.loads(raw, what="snapshot")
    except strict_json.StrictJsonError as exc:
        return VerificationResult(False, {"json": False}, (f"not strict JSON: {exc}",))
    if not isinstance(document, dict):
        return VerificationResult(False, {"json": False}, ("a snapshot must be a JSON object",))
    try:
        canonical = canonical_json(document) == raw.strip()
    except SnapshotError as exc:
        canonical = False
        reason = str(exc)
    else:
        reason = "bytes are not the canonical JSON of the snapshot (re-encoded or edited)"
    result = verify_snapshot(document, **kwargs)
    checks = {"canonical": canonical, **result.checks}
    errors = result.errors if canonical else (reason, *result.errors)
    return VerificationResult(
        ok=result.ok and canonical,
        checks=checks,
        errors=errors,
        asset=result.asset,
        update_id=result.update_id,
        public_key=result.public_key,
        signer=result.signer,
        extra=result.extra,
    )


_VALIDATOR = jsonschema.Draft202012Validator(json_schema())
