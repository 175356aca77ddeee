"""Signed checkpoints: the publisher's signature over the head of every hash chain.

With every batch (and on demand, ``dynamargin snapshots checkpoint``) the publisher appends
a checkpoint whose body is this canonical JSON document, signed with its Ed25519 key::

    {"schema": "dynamargin.checkpoint/1",
     "store_id": "<uuid>", "mode": "live" | "replay",
     "sequence": 7, "created_at": "2025-06-30T23:05:00Z",
     "previous": "<entry_hash of checkpoint 6, or 64 zeros>",
     "heads": {"batches": {"": HEAD},
               "publications": {"BTCUSDT": HEAD, ...},
               "policy_states": {"BTCUSDT": HEAD, ...},
               "audit": {"BTCUSDT": HEAD, ...}}}

    HEAD = {"row_id": 12, "length": 12, "hash": "<entry_hash>"}   (+ "update_id" for
           publications)

The signature covers the head of each chain, so any row at or before a signed head can
only change by changing a hash the signature pins; the ``schema`` member keeps the
signature from ever being taken for a snapshot's. Checkpoints form a chain of their own
(``previous``), so one cannot be dropped or reordered unnoticed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from serving import strict_json
from serving.standard import canonical_json, format_time

if TYPE_CHECKING:
    from serving.store import ChainHead, StoredCheckpoint, StoreMeta

CHECKPOINT_SCHEMA: Final[str] = "dynamargin.checkpoint/1"


@dataclass(frozen=True)
class SignedHead:
    """One chain head as a checkpoint signed it."""

    row_id: int
    length: int
    hash: str
    update_id: int | None = None


@dataclass(frozen=True)
class Checkpoint:
    """A parsed checkpoint body (see the module docstring)."""

    store_id: str
    mode: str
    sequence: int
    created_at: str
    previous: str
    heads: dict[str, dict[str, SignedHead]]


def checkpoint_body(
    meta: StoreMeta,
    *,
    sequence: int,
    created_at: datetime,
    previous: str,
    heads: Mapping[str, Mapping[str, ChainHead]],
) -> bytes:
    """The canonical JSON bytes a checkpoint signs."""
    return canonical_json(
        {
            "schema": CHECKPOINT_SCHEMA,
            "store_id": meta.store_id,
            "mode": meta.mode,
            "sequence": sequence,
            "created_at": format_time(created_at),
            "previous": previous,
            "heads": {
                chain: {key: _head_dict(head) for key, head in sorted(by_key.items())}
                for chain, by_key in sorted(heads.items())
            },
        }
    )


def verify_checkpoint(
    stored: StoredCheckpoint, trusted_public_keys: Collection[str]
) -> tuple[Checkpoint | None, list[str]]:
    """Check a stored checkpoint's signature, key and body.

    Returns
    -------
    tuple
        The parsed body (``None`` when it cannot be parsed) and the problems found
        (empty when it verifies).
    """
    where = f"checkpoint {stored.row_id}"
    problems: list[str] = []
    if stored.public_key.lower() not in {k.lower() for k in trusted_public_keys}:
        problems.append(f"{where}: signed by {stored.public_key[:16]}…, not a trusted key")
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(stored.public_key)).verify(
            bytes.fromhex(stored.signature), stored.body.encode("ascii")
        )
    except (InvalidSignature, ValueError, UnicodeEncodeError):
        problems.append(f"{where}: signature does not match its body")
    try:
        parsed = parse_checkpoint(stored.body)
    except (strict_json.StrictJsonError, KeyError, TypeError, ValueError) as exc:
        return None, [*problems, f"{where}: body is not a checkpoint ({exc})"]
    if canonical_json(strict_json.loads(stored.body)).decode("ascii") != stored.body:
        problems.append(f"{where}: body is not canonical JSON")
    if parsed.sequence != stored.row_id:
        problems.append(f"{where}: body says sequence {parsed.sequence}")
    if parsed.previous != stored.prev_hash:
        problems.append(f"{where}: body's previous checkpoint differs from its chain link")
    return parsed, problems


def parse_checkpoint(body: str) -> Checkpoint:
    """Parse a checkpoint body (strict JSON).

    Raises
    ------
    ValueError
        If it is not a ``dynamargin.checkpoint/1`` document.
    """
    data: Any = strict_json.loads(body, what="checkpoint body")
    if not isinstance(data, dict) or data.get("schema") != CHECKPOINT_SCHEMA:
        raise ValueError(f"not a {CHECKPOINT_SCHEMA} document")
    heads = {
        chain: {
            key: SignedHead(
                int(head["row_id"]),
                int(head["length"]),
                str(head["hash"]),
                int(head["update_id"]) if "update_id" in head else None,
            )
            for key, head in by_key.items()
        }
        for chain, by_key in data["heads"].items()
    }
    return Checkpoint(
        store_id=str(data["store_id"]),
        mode=str(data["mode"]),
        sequence=int(data["sequence"]),
        created_at=str(data["created_at"]),
        previous=str(data["previous"]),
        heads=heads,
    )


def _head_dict(head: ChainHead) -> dict[str, Any]:
    out: dict[str, Any] = {"row_id": head.row_id, "length": head.length, "hash": head.entry_hash}
    if head.update_id is not None:
        out["update_id"] = head.update_id
    return out
