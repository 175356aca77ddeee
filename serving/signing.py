"""Sign and verify RiskSnapshots: Ed25519 over canonical JSON, and EIP-712 typed data.

Ed25519 (every revision)
    ``signature.ed25519.signature = Ed25519(private, signing_payload(snapshot))`` where the
    payload is the canonical JSON of the snapshot without ``signature``
    (:func:`serving.standard.signing_payload`).

EIP-712, ``dynamargin.risk/2`` (current)
    The struct a steward contract verifies (``onchain/src/MarginSteward.sol``)::

        RiskParameters(string market,uint256 updateId,uint256 multiplier,uint256 imf,
                       uint256 mmf,uint256 sigma,uint256 var99,uint256 es99,
                       uint256 publishedAt,uint256 validUntil,string status,
                       string referenceId,bytes32 payloadHash)

    under the domain ``(name "dynamargin", version "2", chainId, verifyingContract)``, which
    the publisher is configured with (:func:`configured_domain`) and writes into
    ``signature.eip712.domain``. Values are WAD (``x * 1e18``, :func:`to_wad`), times Unix
    seconds (fraction dropped), ``payloadHash = keccak256(signing_payload(snapshot))``.

EIP-712, ``dynamargin.risk/1``
    ``RiskUpdate(string market,string updateType,uint256 newValue,uint256 previousValue,
    uint256 updateId,uint256 timestamp,uint256 validUntil,string status,string referenceId,
    bytes32 payloadHash)`` with ``updateType = "marginMultiplier"`` under the fixed
    :data:`V1_DOMAIN`. Verified as before; new snapshots are signed in v2.

``ecrecover`` of the digest gives ``signature.eip712.signer``.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import jsonschema
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from serving import strict_json
from serving.errors import InvalidInputError, SnapshotError
from serving.ethereum import (
    Account,
    encode_typed_data,
    is_checksum_address,
    keccak,
    to_checksum_address,
)
from serving.keys import SigningKeys
from serving.standard import (
    REVISIONS,
    ZERO_ADDRESS,
    Ed25519Signature,
    Eip712Domain,
    Eip712Signature,
    RiskSnapshot,
    Signature,
    canonical_json,
    format_time,
    json_schema,
    parse_time,
    reference_id,
    revision_of,
    signing_payload,
)

WAD = 10**18
ENV_CHAIN_ID = "DYNAMARGIN_EIP712_CHAIN_ID"
ENV_VERIFYING_CONTRACT = "DYNAMARGIN_EIP712_VERIFYING_CONTRACT"

V1_DOMAIN = Eip712Domain(version="1", chain_id=1, verifying_contract=ZERO_ADDRESS)
"""The fixed domain of every ``dynamargin.risk/1`` EIP-712 signature."""
DEFAULT_DOMAIN = V1_DOMAIN
"""Kept for v1 callers; v2 signers use :func:`configured_domain`."""

_DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

EIP712_TYPES_V2: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": _DOMAIN_FIELDS,
    "RiskParameters": [
        {"name": "market", "type": "string"},
        {"name": "updateId", "type": "uint256"},
        {"name": "multiplier", "type": "uint256"},
        {"name": "imf", "type": "uint256"},
        {"name": "mmf", "type": "uint256"},
        {"name": "sigma", "type": "uint256"},
        {"name": "var99", "type": "uint256"},
        {"name": "es99", "type": "uint256"},
        {"name": "publishedAt", "type": "uint256"},
        {"name": "validUntil", "type": "uint256"},
        {"name": "status", "type": "string"},
        {"name": "referenceId", "type": "string"},
        {"name": "payloadHash", "type": "bytes32"},
    ],
}
"""The v2 typed-data types (primary type ``RiskParameters``)."""

EIP712_TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": _DOMAIN_FIELDS,
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


"""The v1 typed-data types (primary type ``RiskUpdate``)."""


def to_wad(value: float) -> int:
    """``value * 1e18`` of a canonical (12 significant digits) number, truncated to an integer.

    Exact for every value of at least 1e-7 (12 significant digits then end at or above
    1e-18); below, digits past the 18th decimal are dropped.
    """
    return int(Decimal(repr(float(value))) * WAD)


def unix_seconds(value: str | Any) -> int:
    """Unix seconds of a snapshot time (fractions of a second dropped)."""
    return int(parse_time(value).timestamp())


def payload_keccak(snapshot: Mapping[str, Any]) -> bytes:
    """``payloadHash``: keccak256 of the signed payload (the canonical JSON sans signature)."""
    return keccak(signing_payload(snapshot))


def configured_domain(environ: Mapping[str, str] | None = None) -> Eip712Domain:
    """The v2 domain the publisher signs under.

    ``DYNAMARGIN_EIP712_CHAIN_ID`` (default 1) and ``DYNAMARGIN_EIP712_VERIFYING_CONTRACT``
    (the RiskOracle the updates are published to; default the zero address, which no
    steward accepts) name the deployment.

    Raises
    ------
    InvalidInputError
        For a chain id that is not a positive integer or an address that is not 20-byte hex
        (a mixed-case address must carry a valid EIP-55 checksum).
    """
    env = os.environ if environ is None else environ
    raw_chain = env.get(ENV_CHAIN_ID, "1").strip()
    if not raw_chain.isdigit() or int(raw_chain) < 1 or len(raw_chain) > 78:
        raise InvalidInputError(ENV_CHAIN_ID, f"{ENV_CHAIN_ID}={raw_chain!r} is not a chain id")
    contract = env.get(ENV_VERIFYING_CONTRACT, ZERO_ADDRESS).strip()
    return Eip712Domain(chain_id=int(raw_chain), verifying_contract=checked_address(contract))


def checked_address(value: str, what: str = ENV_VERIFYING_CONTRACT) -> str:
    """``value`` as a checksummed address, or :class:`InvalidInputError`."""
    body = value[2:] if value.startswith("0x") else ""
    if len(body) != 40 or any(c not in "0123456789abcdefABCDEF" for c in body):
        raise InvalidInputError(what, f"{what}: {value!r} is not a 0x-prefixed 20-byte address")
    mixed = body != body.lower() and body != body.upper()
    if mixed and not is_checksum_address(value):
        raise InvalidInputError(what, f"{what}: {value!r} has a wrong EIP-55 checksum")
    return to_checksum_address(value)


def risk_parameters_typed_data(snapshot: Mapping[str, Any], domain: Eip712Domain) -> dict[str, Any]:
    """EIP-712 ``full_message`` of a v2 snapshot dict under ``domain`` (signature ignored)."""
    margin = snapshot["margin"]
    return {
        "types": EIP712_TYPES_V2,
        "primaryType": "RiskParameters",
        "domain": domain.to_dict(),
        "message": {
            "market": snapshot["asset"],
            "updateId": int(snapshot["update_id"]),
            "multiplier": to_wad(margin["multiplier"]),
            "imf": to_wad(margin["imf"]),
            "mmf": to_wad(margin["mmf"]),
            "sigma": to_wad(snapshot["sigma"]),
            "var99": to_wad(snapshot["var_99"]),
            "es99": to_wad(snapshot["es_99"]),
            "publishedAt": unix_seconds(snapshot["published_at"]),
            "validUntil": unix_seconds(snapshot["valid_until"]),
            "status": snapshot["status"],
            "referenceId": snapshot["provenance"]["reference_id"],
            "payloadHash": payload_keccak(snapshot),
        },
    }


def typed_data_of(
    snapshot: Mapping[str, Any], domain: Eip712Domain | None = None
) -> dict[str, Any]:
    """The EIP-712 ``full_message`` a snapshot's revision signs.

    v1: ``RiskUpdate`` under ``domain`` or :data:`V1_DOMAIN`; v2: ``RiskParameters`` under
    ``domain`` or the one written in ``signature.eip712.domain``.
    """
    if revision_of(snapshot) == 1:
        return risk_update_typed_data(snapshot, domain or V1_DOMAIN)
    if domain is None:
        domain = Eip712Domain.model_validate(snapshot["signature"]["eip712"]["domain"])
    return risk_parameters_typed_data(snapshot, domain)


def risk_update_typed_data(
    snapshot: Mapping[str, Any], domain: Eip712Domain = V1_DOMAIN
) -> dict[str, Any]:
    """EIP-712 ``full_message`` of a snapshot dict in the v1 form (signature ignored)."""
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
            "payloadHash": payload_keccak(snapshot),
        },
    }


class SnapshotSigner:
    """Sign snapshots with the publisher's keys.

    Parameters
    ----------
    keys
        From :func:`serving.keys.load_signing_keys`.
    domain
        EIP-712 domain of v2 signatures; default :func:`configured_domain` (the
        environment). v1 snapshots are always signed under :data:`V1_DOMAIN`.
    """

    def __init__(self, keys: SigningKeys, domain: Eip712Domain | None = None) -> None:
        self.keys = keys
        self.domain = domain or configured_domain()

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
        from ever verifying as a snapshot's, whose payload says ``dynamargin.risk/<n>``.
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
        v2 = snapshot.revision == 2
        typed = typed_data_of(data, self.domain if v2 else V1_DOMAIN)
        eth = self.keys.eth_account.sign_message(encode_typed_data(full_message=typed))
        signature = Signature(
            ed25519=Ed25519Signature(public_key=self.public_key, signature=ed.hex()),
            eip712=Eip712Signature(
                signer=self.address,
                signature="0x" + bytes(eth.signature).hex(),
                domain=self.domain if v2 else None,
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
    domain: Eip712Domain | None = None,
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
        v1: the EIP-712 domain the signer used (default :data:`V1_DOMAIN`). v2: the domain
        the verifier expects (its chain and feed); the signature is checked under the domain
        the snapshot states, and a stated domain other than this one fails ``domain``.
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

    revision = revision_of(document)
    if revision is None:
        checks["schema"] = False
        errors.append(
            f"{where}: unknown schema {document.get('schema')!r}; this verifier knows "
            f"{', '.join(REVISIONS)}"
        )
        return VerificationResult(False, checks, tuple(errors), asset, update_id)
    schema_errors = sorted(_VALIDATORS[revision].iter_errors(dict(document)), key=str)
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

    if revision == 2 and domain is not None:
        stated = Eip712Domain.model_validate(sig["eip712"]["domain"])
        checks["domain"] = _same_domain(stated, domain)
        if not checks["domain"]:
            errors.append(
                f"{where}: signed for EIP-712 domain {stated.to_dict()}, "
                f"expected {domain.to_dict()}"
            )

    if check_eip712:
        try:
            typed = encode_typed_data(
                full_message=typed_data_of(document, domain if revision == 1 else None)
            )
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


def _same_domain(a: Eip712Domain, b: Eip712Domain) -> bool:
    return a.to_dict() | {"verifyingContract": a.verifying_contract.lower()} == b.to_dict() | {
        "verifyingContract": b.verifying_contract.lower()
    }


_VALIDATORS = {n: jsonschema.Draft202012Validator(json_schema(n)) for n in (1, 2)}
