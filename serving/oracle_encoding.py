"""RiskSnapshot v2 on the RiskOracle contract: update types, fixed-point values, the envelope.

One signed v2 snapshot becomes six records of Chaos Labs' ``RiskOracle``
(``publishBulkRiskParameterUpdates(referenceIds, newValues, updateTypes, markets,
additionalData)``), one per :data:`UPDATE_TYPES`:

=================  ==================================================================
argument           our value
=================  ==================================================================
``referenceId``    ``provenance.reference_id`` (``<asset>:<update_id>:<16 hex>``), the
                   key of the publication store
``newValue``       ``abi.encode(uint256(round_down(value * 1e18)))``: 32 bytes, WAD
``updateType``     the parameter (:data:`UPDATE_TYPES`)
``market``         the asset's ASCII bytes (``bytes("BTCUSDT")``)
``additionalData`` ``marginMultiplier``: ``abi.encode(ENVELOPE)``, the EIP-712 domain, our
                   update id, times, status, payload hash and the EIP-712 signature
                   (:data:`ENVELOPE_TYPES`); the five others: ``abi.encode(uint256
                   validUntil)``
=================  ==================================================================

What the RiskOracle assigns itself, and how it relates to our fields
    * ``timestamp`` is the block time of the push, not our ``published_at`` (which is in the
      envelope as ``publishedAt``); the gap is the push latency.
    * ``updateId`` is the contract's global counter over every market and type; our
      ``update_id`` (per asset) is in the envelope and in ``referenceId``.
    * ``previousValue`` is the ``newValue`` of the contract's previous update of *any*
      market and type (``updatesById[updateCounter - 1]``), not the previous value of the
      same parameter. A reader that wants the latter reads the record that
      ``getLatestUpdateByParameterAndMarket`` returned before, or our ``previous_multiplier``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from serving.errors import OracleEncodingError
from serving.ethereum import abi_decode, abi_encode
from serving.signing import WAD, checked_address, payload_keccak, to_wad, unix_seconds
from serving.standard import ORACLE_UPDATE_TYPES, SCHEMA_V2, Eip712Domain, revision_of

UPDATE_TYPES: Final[tuple[str, ...]] = tuple(ORACLE_UPDATE_TYPES)
"""The RiskOracle update types, in push order: one per snapshot parameter."""

ENVELOPE_CARRIER: Final[str] = UPDATE_TYPES[0]
"""The record (``marginMultiplier``) whose ``additionalData`` is the full envelope; the other
five carry ``abi.encode(uint256 validUntil)``, since the signature covers all six values
anyway and storing it six times would double the gas of a push."""
ENVELOPE_VERSION: Final[int] = 2
ENVELOPE_TYPES: Final[tuple[tuple[str, str], ...]] = (
    ("version", "uint256"),
    ("chainId", "uint256"),
    ("verifyingContract", "address"),
    ("updateId", "uint256"),
    ("publishedAt", "uint256"),
    ("validUntil", "uint256"),
    ("status", "string"),
    ("payloadHash", "bytes32"),
    ("signature", "bytes"),
)
"""``additionalData`` is ``abi.encode`` of this tuple (``MarginSteward.Envelope``)."""
ENVELOPE_ABI: Final[str] = "(" + ",".join(kind for _, kind in ENVELOPE_TYPES) + ")"


@dataclass(frozen=True)
class OracleRecord:
    """One ``publishBulkRiskParameterUpdates`` entry."""

    reference_id: str
    new_value: bytes
    update_type: str
    market: bytes
    additional_data: bytes


@dataclass(frozen=True)
class Envelope:
    """The decoded ``additionalData`` of a record."""

    version: int
    chain_id: int
    verifying_contract: str
    update_id: int
    published_at: int
    valid_until: int
    status: str
    payload_hash: bytes
    signature: bytes

    @property
    def domain(self) -> Eip712Domain:
        """The EIP-712 domain the signature was made under."""
        return Eip712Domain(chain_id=self.chain_id, verifying_contract=self.verifying_contract)


def market_bytes(asset: str) -> bytes:
    """The RiskOracle ``market`` of an asset: its ASCII bytes."""
    try:
        return asset.encode("ascii")
    except UnicodeEncodeError:
        raise OracleEncodingError(f"asset {asset!r} is not ASCII; it cannot be a market") from None


def encode_value(value: float, what: str = "value") -> bytes:
    """``newValue`` of a fraction: one ABI-encoded ``uint256`` in WAD (``x * 1e18``).

    Raises
    ------
    OracleEncodingError
        For a negative or non-finite value, or one too large for a ``uint256``.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise OracleEncodingError(f"{what} {value!r} is not a finite number")
    if value < 0:
        raise OracleEncodingError(f"{what} {value!r} is negative; a uint256 cannot hold it")
    wad = to_wad(float(value))
    if wad >= 2**256:
        raise OracleEncodingError(f"{what} {value!r} overflows a uint256 in WAD")
    return abi_encode(["uint256"], [wad])


def decode_value(new_value: bytes, what: str = "newValue") -> int:
    """The WAD integer of a ``newValue`` (exactly 32 bytes), or :class:`OracleEncodingError`."""
    if len(new_value) != 32:
        raise OracleEncodingError(
            f"{what} has {len(new_value)} bytes; a dynamargin value is one ABI-encoded uint256"
        )
    return int.from_bytes(new_value, "big")


def snapshot_values(snapshot: Mapping[str, Any]) -> dict[str, float]:
    """The value each update type carries, from a snapshot dict."""
    values: dict[str, float] = {}
    for update_type, path in ORACLE_UPDATE_TYPES.items():
        value: Any = snapshot
        for key in path:
            value = value[key]
        values[update_type] = value
    return values


def envelope(snapshot: Mapping[str, Any]) -> bytes:
    """The full ``additionalData`` of a signed v2 snapshot (its ``marginMultiplier`` record)."""
    eip712 = snapshot["signature"]["eip712"]
    domain = Eip712Domain.model_validate(eip712["domain"])
    return abi_encode(
        [ENVELOPE_ABI],
        [
            (
                ENVELOPE_VERSION,
                domain.chain_id,
                checked_address(domain.verifying_contract, "signature.eip712.domain"),
                int(snapshot["update_id"]),
                unix_seconds(snapshot["published_at"]),
                unix_seconds(snapshot["valid_until"]),
                snapshot["status"],
                payload_keccak(snapshot),
                bytes.fromhex(eip712["signature"][2:]),
            )
        ],
    )


def decode_envelope(data: bytes) -> Envelope:
    """Decode ``additionalData``, or :class:`OracleEncodingError` if it is not an envelope."""
    try:
        (fields,) = abi_decode([ENVELOPE_ABI], data)
    except Exception as exc:  # eth-abi raises several decoding error types
        raise OracleEncodingError(f"additionalData is not a dynamargin envelope: {exc}") from exc
    decoded = Envelope(*fields)
    if decoded.version != ENVELOPE_VERSION:
        raise OracleEncodingError(
            f"additionalData has envelope version {decoded.version}, expected {ENVELOPE_VERSION}"
        )
    return decoded


def oracle_records(snapshot: Mapping[str, Any]) -> list[OracleRecord]:
    """The six RiskOracle records of one signed ``dynamargin.risk/2`` snapshot.

    Raises
    ------
    OracleEncodingError
        If the snapshot is not a signed v2 snapshot or a value cannot be encoded.
    """
    where = f"{snapshot.get('asset', '?')} update {snapshot.get('update_id', '?')}"
    if revision_of(snapshot) != 2 or "signature" not in snapshot:
        raise OracleEncodingError(
            f"{where}: only signed {SCHEMA_V2} snapshots go on chain (their EIP-712 signature "
            f"types every parameter); got schema {snapshot.get('schema')!r}. Publish again."
        )
    market = market_bytes(str(snapshot["asset"]))
    full = envelope(snapshot)
    short = abi_encode(["uint256"], [unix_seconds(snapshot["valid_until"])])
    reference = str(snapshot["provenance"]["reference_id"])
    return [
        OracleRecord(
            reference,
            encode_value(value, f"{where} {kind}"),
            kind,
            market,
            full if kind == ENVELOPE_CARRIER else short,
        )
        for kind, value in snapshot_values(snapshot).items()
    ]


def bulk_arguments(records: Sequence[OracleRecord]) -> tuple[list[Any], ...]:
    """The five arrays of ``publishBulkRiskParameterUpdates``."""
    return (
        [r.reference_id for r in records],
        [r.new_value for r in records],
        [r.update_type for r in records],
        [r.market for r in records],
        [r.additional_data for r in records],
    )


def encoding_spec() -> dict[str, Any]:
    """The encoding as data: what ``dynamargin schema export`` and the spec publish."""
    return {
        "contract": "ChaosLabsInc/risk-oracle RiskOracle.publishBulkRiskParameterUpdates",
        "value_scale": WAD,
        "value_encoding": "abi.encode(uint256(floor(value * 1e18))); exact for value >= 1e-7",
        "market_encoding": "bytes(asset) (ASCII)",
        "reference_id": "provenance.reference_id: <asset>:<update_id>:<first 16 hex of sha256>",
        "update_types": {kind: ".".join(path) for kind, path in ORACLE_UPDATE_TYPES.items()},
        "additional_data": {
            "carrier": ENVELOPE_CARRIER,
            "others": "abi.encode(uint256 validUntil)",
            "encoding": f"abi.encode({ENVELOPE_ABI})",
            "fields": [{"name": name, "type": kind} for name, kind in ENVELOPE_TYPES],
            "version": ENVELOPE_VERSION,
        },
        "assigned_by_the_contract": {
            "timestamp": "block time of the push (our published_at is envelope.publishedAt)",
            "updateId": "the contract's global counter (our update_id is envelope.updateId)",
            "previousValue": "newValue of the contract's previous update of any market/type",
        },
    }
