"""RiskSnapshot: the cross-protocol risk standard, its JSON Schema and canonical JSON.

Revisions (the ``schema`` member names one; the full text is ``spec/risk-snapshot/``)
    * ``dynamargin.risk/2`` (current): the payload of v1 unchanged, and an EIP-712 signature
      a contract can use: the typed struct ``RiskParameters`` carries every parameter a
      steward applies, and the domain (chain id, verifying contract) is configurable and
      written into ``signature.eip712.domain``;
    * ``dynamargin.risk/1``: the EIP-712 struct ``RiskUpdate`` types only the multiplier,
      under the fixed domain ``(dynamargin, 1, chainId 1, zero address)``. Still verified.

Canonical JSON (what is signed)
    * UTF-8, ASCII-escaped strings, object keys sorted, no whitespace (``,`` and ``:``);
    * integers as integers; floats with at most **12 significant digits** (Python
      ``format(x, ".12g")``, e.g. ``0.0625``, ``1e-10``, ``1000000``), ``-0`` written ``0``;
      NaN and infinities are rejected. Snapshot floats are rounded to 12 significant digits
      when the model is built, so parsing and re-canonicalising is the identity;
    * times as ISO-8601 UTC with ``Z`` (``2025-06-30T23:00:00Z``, microseconds only when
      non-zero);
    * the signed payload is the canonical JSON of the snapshot without its ``signature``.

Risk-oracle mapping
    One snapshot maps to several updates of the public on-chain risk-oracle pattern
    (``updateType, market, newValue, previousValue, referenceId, timestamp``), one per
    :data:`ORACLE_UPDATE_TYPES`; ``previousValue`` is the last value published for the same
    market and update type. The byte encoding for the RiskOracle contract itself is
    :mod:`serving.oracle_encoding`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from serving.errors import SnapshotError

SCHEMA_V1 = "dynamargin.risk/1"
SCHEMA_V2 = "dynamargin.risk/2"
SCHEMA_VERSION = SCHEMA_V2
"""The revision the publisher writes."""
REVISIONS: dict[str, int] = {SCHEMA_V1: 1, SCHEMA_V2: 2}
SCHEMA_ID = "urn:dynamargin:schema:risk-snapshot:{revision}"
SIGNIFICANT_DIGITS = 12
ZERO_ADDRESS = "0x" + "0" * 40


def format_time(value: datetime) -> str:
    """ISO-8601 UTC with ``Z``; microseconds only when non-zero."""
    if value.tzinfo is None:
        raise SnapshotError(f"naive datetime {value!r}; snapshot times must be tz-aware UTC")
    value = value.astimezone(UTC)
    pattern = "%Y-%m-%dT%H:%M:%S.%fZ" if value.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return value.strftime(pattern)


def parse_time(value: str | datetime) -> datetime:
    """Inverse of :func:`format_time` (accepts any tz-aware ISO-8601 or datetime)."""
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise SnapshotError(f"time {value!r} has no timezone; write it in UTC with 'Z'")
    return parsed.astimezone(UTC)


def round_significant(value: float) -> float:
    """Round to :data:`SIGNIFICANT_DIGITS` significant digits (the canonical precision)."""
    if not math.isfinite(value):
        raise SnapshotError(f"non-finite number {value!r} cannot enter a snapshot")
    rounded = float(format(value, f".{SIGNIFICANT_DIGITS}g"))
    return 0.0 if rounded == 0 else rounded


UtcTime = Annotated[
    datetime,
    AfterValidator(parse_time),
    PlainSerializer(format_time, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z$",
        }
    ),
]
"""A tz-aware time, serialised as ISO-8601 UTC with ``Z``."""

Fraction = Annotated[float, Field(ge=0, allow_inf_nan=False), AfterValidator(round_significant)]
HexBytes32 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
HexBytes64 = Annotated[str, Field(pattern=r"^[0-9a-f]{128}$")]
Status = Literal["ok", "fallback", "stale", "halted"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Liquidity(_Strict):
    """Liquidity block: Amihud illiquidity, spread and slippage for a standard order."""

    amihud: Fraction = Field(description="Mean |return| per USD of quote volume.")
    spread_bps: Fraction = Field(description="Estimated bid-ask spread, basis points.")
    slippage_bps: Fraction = Field(description="Estimated cost of a standard-size order, bps.")
    standard_size_usd: Fraction = Field(description="Order size of slippage_bps, USD.")


class Margin(_Strict):
    """Margin block: the multiplier and the margin fractions it implies."""

    multiplier: Fraction
    previous_multiplier: Fraction
    base_imf: Fraction
    base_mmf: Fraction
    imf: Fraction = Field(description="base_imf * multiplier")
    mmf: Fraction = Field(description="base_mmf * multiplier")


class Provenance(_Strict):
    """Where the numbers come from."""

    model_name: str
    model_version: str
    mlflow_run_id: str | None = None
    feature_set_hash: str | None = None
    data_through: UtcTime
    reference_id: str = Field(description="<asset>:<update_id>:<16 hex of the payload hash>")


class Ed25519Signature(_Strict):
    """Ed25519 over the canonical payload; public key and signature as lowercase hex."""

    public_key: HexBytes32
    signature: HexBytes64


class Eip712Domain(_Strict):
    """EIP-712 domain: a verifying contract pins the same values.

    In v2, ``verifying_contract`` is the RiskOracle the updates are published to (the feed's
    on-chain address), so a signature names its feed and chain; every steward reading that
    feed verifies under it. v1 used the fixed :data:`serving.signing.V1_DOMAIN`.
    """

    name: str = "dynamargin"
    version: str = "2"
    chain_id: int = Field(1, ge=1, alias="chainId")
    verifying_contract: str = Field(
        ZERO_ADDRESS, pattern=r"^0x[0-9a-fA-F]{40}$", alias="verifyingContract"
    )

    def to_dict(self) -> dict[str, Any]:
        """The domain as EIP-712 JSON (``name, version, chainId, verifyingContract``)."""
        return self.model_dump(by_alias=True)


class Eip712Signature(_Strict):
    """EIP-712 typed-data signature (see :mod:`serving.signing`).

    v1: of the ``RiskUpdate`` struct under the fixed v1 domain, and no ``domain`` member;
    v2: of the ``RiskParameters`` struct under ``domain``, which is required.
    """

    signer: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    signature: str = Field(pattern=r"^0x[0-9a-f]{130}$")
    domain: Eip712Domain | None = None


class Signature(_Strict):
    """Both signatures of a published snapshot."""

    ed25519: Ed25519Signature
    eip712: Eip712Signature


class RiskSnapshot(_Strict):
    """RiskSnapshot (v1 or v2): one asset's risk parameters for one update.

    ``sigma``, ``var_99`` and ``es_99`` are fractions of notional over ``horizon_hours``;
    ``*_lower``/``*_upper`` are conformal bounds. ``status`` is ``ok``, ``fallback``,
    ``stale`` or ``halted``. ``signature`` is absent until :mod:`serving.signing` signs it.
    The two revisions share every payload field; only the EIP-712 signature differs.
    """

    schema_: Literal["dynamargin.risk/1", "dynamargin.risk/2"] = Field(
        default=SCHEMA_VERSION, alias="schema"
    )
    asset: str = Field(min_length=1)
    venue: str = Field(min_length=1)
    update_id: int = Field(ge=1)
    as_of: UtcTime
    published_at: UtcTime
    valid_until: UtcTime
    horizon_hours: int = Field(ge=1)
    sigma: Fraction
    sigma_lower: Fraction
    sigma_upper: Fraction
    var_99: Fraction
    var_99_lower: Fraction
    var_99_upper: Fraction
    es_99: Fraction
    es_99_lower: Fraction
    es_99_upper: Fraction
    liquidity: Liquidity
    margin: Margin
    status: Status
    provenance: Provenance
    signature: Signature | None = None

    @model_validator(mode="after")
    def _signature_matches_revision(self) -> RiskSnapshot:
        if self.signature is not None:
            has_domain = self.signature.eip712.domain is not None
            if self.revision == 1 and has_domain:
                raise ValueError("a dynamargin.risk/1 EIP-712 signature has no domain member")
            if self.revision == 2 and not has_domain:
                raise ValueError("a dynamargin.risk/2 EIP-712 signature needs its domain")
        return self

    @property
    def revision(self) -> int:
        """1 or 2, from ``schema``."""
        return REVISIONS[self.schema_]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the published field names (``signature`` omitted if unset)."""
        data = self.model_dump(mode="json", by_alias=True)
        if data.get("signature") is None:
            data.pop("signature", None)
        elif data["signature"]["eip712"].get("domain") is None:
            data["signature"]["eip712"].pop("domain", None)  # v1 has no domain member
        return data


def snapshot_from_dict(data: Mapping[str, Any]) -> RiskSnapshot:
    """Parse and validate a snapshot dict.

    Raises
    ------
    SnapshotError
        With the asset and update id when known and the validation errors.
    """
    try:
        return RiskSnapshot.model_validate(dict(data))
    except ValidationError as exc:
        where = f"{data.get('asset', '?')} update {data.get('update_id', '?')}"
        raise SnapshotError(f"invalid RiskSnapshot ({where}): {exc}") from exc


def revision_of(document: Mapping[str, Any]) -> int | None:
    """The revision a document claims (1 or 2), or None for an unknown ``schema``."""
    tag = document.get("schema")
    return REVISIONS.get(tag) if isinstance(tag, str) else None


def json_schema(revision: int = 2) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a *published* snapshot (signature required).

    Parameters
    ----------
    revision
        1 or 2: the ``schema`` tag is pinned to that revision, and the EIP-712 signature's
        ``domain`` is required (v2) or absent (v1).
    """
    tag = {number: name for name, number in REVISIONS.items()}.get(revision)
    if tag is None:
        raise SnapshotError(f"unknown RiskSnapshot revision {revision}; known: 1, 2")
    schema = RiskSnapshot.model_json_schema(by_alias=True, mode="serialization")
    schema["properties"]["schema"] = {"const": tag, "title": "Schema", "type": "string"}
    schema["properties"]["signature"] = {"$ref": "#/$defs/Signature"}
    schema["required"] = sorted({*schema.get("required", []), "signature", "schema"})
    eip712 = schema["$defs"]["Eip712Signature"]
    if revision == 1:
        eip712["properties"].pop("domain")
        schema["$defs"].pop("Eip712Domain")
    else:
        eip712["properties"]["domain"] = {"$ref": "#/$defs/Eip712Domain"}
        eip712["required"] = sorted({*eip712.get("required", []), "domain"})
        domain = schema["$defs"]["Eip712Domain"]
        domain["required"] = sorted(domain["properties"])
        domain["properties"]["name"] = {"const": "dynamargin", "type": "string"}
        domain["properties"]["version"] = {"const": "2", "type": "string"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID.format(revision=revision),
        **schema,
        "title": f"RiskSnapshot v{revision}",
    }


@dataclass(frozen=True)
class RawCanonicalJson:
    """JSON text already in canonical form, embedded as is by :func:`canonical_json`.

    Lets a stored snapshot (kept as its canonical bytes) be part of a larger canonical
    document without a parse and re-encode; the caller vouches that ``text`` is canonical.
    """

    text: str


def canonical_json(value: Any) -> bytes:
    """Canonical JSON bytes of a JSON-like value (see the module docstring)."""
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts).encode("ascii")


def signing_payload(snapshot: Mapping[str, Any]) -> bytes:
    """Canonical JSON of a snapshot dict without its ``signature``: the signed bytes."""
    return canonical_json({k: v for k, v in snapshot.items() if k != "signature"})


def payload_hash(snapshot: Mapping[str, Any]) -> str:
    """SHA-256 hex of the payload with ``signature`` and ``provenance.reference_id`` removed.

    It names the content, so it can be embedded in the snapshot as its reference id.
    """
    content = {k: v for k, v in snapshot.items() if k != "signature"}
    provenance = dict(content.get("provenance", {}))
    provenance.pop("reference_id", None)
    content["provenance"] = provenance
    return hashlib.sha256(canonical_json(content)).hexdigest()


def reference_id(snapshot: Mapping[str, Any]) -> str:
    """``<asset>:<update_id>:<first 16 hex of payload_hash>``."""
    return f"{snapshot['asset']}:{snapshot['update_id']}:{payload_hash(snapshot)[:16]}"


def _encode(value: Any, parts: list[str]) -> None:
    if value is None:
        parts.append("null")
    elif isinstance(value, bool):
        parts.append("true" if value else "false")
    elif isinstance(value, int):
        parts.append(str(value))
    elif isinstance(value, float):
        parts.append(format(round_significant(value), f".{SIGNIFICANT_DIGITS}g"))
    elif isinstance(value, str):
        parts.append(json.dumps(value, ensure_ascii=True))
    elif isinstance(value, RawCanonicalJson):
        parts.append(value.text)
    elif isinstance(value, datetime):
        parts.append(json.dumps(format_time(value)))
    elif isinstance(value, Mapping):
        parts.append("{")
        for index, key in enumerate(sorted(value)):
            if not isinstance(key, str):
                raise SnapshotError(f"canonical JSON keys must be strings, got {key!r}")
            if index:
                parts.append(",")
            parts.append(json.dumps(key, ensure_ascii=True))
            parts.append(":")
            _encode(value[key], parts)
        parts.append("}")
    elif isinstance(value, list | tuple):
        parts.append("[")
        for index, item in enumerate(value):
            if index:
                parts.append(",")
            _encode(item, parts)
        parts.append("]")
    else:
        raise SnapshotError(f"cannot encode {type(value).__name__} in canonical JSON")


# -- risk-oracle mapping -------------------------------------------------------------------

ORACLE_UPDATE_TYPES: dict[str, tuple[str, ...]] = {
    "marginMultiplier": ("margin", "multiplier"),
    "initialMarginFraction": ("margin", "imf"),
    "maintenanceMarginFraction": ("margin", "mmf"),
    "sigma": ("sigma",),
    "var99": ("var_99",),
    "es99": ("es_99",),
}
"""Allowlisted update types and the snapshot field each one carries."""


@dataclass(frozen=True)
class OracleUpdate:
    """One update in the public risk-oracle format.

    ``timestamp`` and ``validUntil`` are Unix seconds of ``published_at`` and
    ``valid_until``; ``previousValue`` is ``None`` for the first update of its kind.
    """

    updateType: str
    market: str
    newValue: float
    previousValue: float | None
    referenceId: str
    timestamp: int
    updateId: int
    validUntil: int

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (field names as in the oracle format)."""
        return asdict(self)


def oracle_updates(
    snapshots: Iterable[Mapping[str, Any]],
    previous: Mapping[tuple[str, str], float] | None = None,
) -> list[OracleUpdate]:
    """Map snapshots, in publication order, to risk-oracle updates.

    Parameters
    ----------
    snapshots
        Snapshot dicts; sorted here by ``(published_at, asset, update_id)``.
    previous
        Last known value per ``(market, updateType)`` before the first snapshot.

    Returns
    -------
    list of OracleUpdate
        One per snapshot and update type. For ``marginMultiplier`` without a known
        previous value, the snapshot's ``previous_multiplier`` is used.
    """
    last: dict[tuple[str, str], float] = dict(previous or {})
    ordered = sorted(
        snapshots, key=lambda s: (parse_time(s["published_at"]), s["asset"], s["update_id"])
    )
    out: list[OracleUpdate] = []
    for snap in ordered:
        market = snap["asset"]
        for update_type, path in ORACLE_UPDATE_TYPES.items():
            value: Any = snap
            for key in path:
                value = value[key]
            key2 = (market, update_type)
            prior = last.get(key2)
            if prior is None and update_type == "marginMultiplier":
                prior = float(snap["margin"]["previous_multiplier"])
            out.append(
                OracleUpdate(
                    updateType=update_type,
                    market=market,
                    newValue=float(value),
                    previousValue=prior,
                    referenceId=snap["provenance"]["reference_id"],
                    timestamp=int(parse_time(snap["published_at"]).timestamp()),
                    updateId=int(snap["update_id"]),
                    validUntil=int(parse_time(snap["valid_until"]).timestamp()),
                )
            )
            last[key2] = float(value)
    return out
