"""The hash chains of the publication log: what each stored row commits to.

Every row of the append-only store carries ``prev_hash`` (the ``entry_hash`` of the row
before it in its chain, or :data:`GENESIS` for the first) and its own ``entry_hash``::

    entry_hash = sha256(canonical_json({"chain": CHAIN, "prev_hash": PREV, "row": ROW}))

(:func:`serving.standard.canonical_json`, lowercase hex). The chains, in the manner of
Certificate Transparency's log, are:

==================  ===========  =====================================================
chain               one per      ``ROW`` (what the hash covers)
==================  ===========  =====================================================
``publications``    asset        ``batch_id``, ``reason``, ``snapshot`` (the signed
                                 snapshot object, exactly as served)
``policy_states``   asset        ``asset``, ``recorded_at_us``, ``batch_id``,
                                 ``audit_id``, ``state`` (its JSON text)
``audit``           asset        ``asset``, ``action``, ``operator``, ``note``,
                                 ``at_us``, ``multiplier_before``,
                                 ``override_multiplier``, ``override_until_us``
``batches``         store        ``batch_id``, ``published_at_us``, ``n_snapshots``
``checkpoints``     store        ``sequence``, ``created_at_us``, ``body``,
                                 ``public_key``, ``signature``
==================  ===========  =====================================================

Floats outside the signed snapshot are hashed as their exact ``repr`` string, so a change
in the last bit is a change of hash. Changing, inserting or removing a row breaks either
its own hash or the link from its successor; rewriting a whole suffix consistently changes
the chain's head, which the signed checkpoints (:mod:`serving.checkpoints`) pin.

A consumer checks the publication chain of one asset from ``/v1/risk/{asset}/history``:
``chain[i].hash`` must equal the formula above with ``prev_hash = chain[i].prev_hash`` and
``ROW = {"batch_id": chain[i].batch_id, "reason": chain[i].reason, "snapshot":
snapshots[i]}``, and ``chain[i].prev_hash`` must equal ``chain[i - 1].hash``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from serving.standard import RawCanonicalJson, canonical_json

Chain = Literal["publications", "policy_states", "audit", "batches", "checkpoints"]
PER_ASSET_CHAINS: Final[tuple[Chain, ...]] = ("publications", "policy_states", "audit")
STORE_CHAINS: Final[tuple[Chain, ...]] = ("batches", "checkpoints")
GENESIS: Final[str] = "0" * 64
"""``prev_hash`` of the first row of every chain."""


@dataclass(frozen=True)
class ChainRow:
    """One stored row as its chain sees it.

    Attributes
    ----------
    chain
        The chain (table) it belongs to.
    row_id
        The table's primary key (the order within the chain).
    key
        The asset for per-asset chains, ``""`` for store-wide ones.
    prev_hash, entry_hash
        As stored.
    content
        The hashed ``ROW`` (see the module docstring).
    """

    chain: Chain
    row_id: int
    key: str
    prev_hash: str
    entry_hash: str
    content: Mapping[str, Any]

    def expected_hash(self) -> str:
        """The ``entry_hash`` this row's content and ``prev_hash`` imply."""
        return entry_hash(self.chain, self.prev_hash, self.content)

    def where(self) -> str:
        """Where the row is, for messages: ``publications/BTCUSDT row 12``."""
        return (
            f"{self.chain}/{self.key} row {self.row_id}"
            if self.key
            else (f"{self.chain} row {self.row_id}")
        )


def entry_hash(chain: Chain, prev_hash: str, content: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical ``{"chain", "prev_hash", "row"}`` document."""
    document = {"chain": chain, "prev_hash": prev_hash, "row": dict(content)}
    return hashlib.sha256(canonical_json(document)).hexdigest()


def exact_float(value: float | None) -> str | None:
    """A float as hashed outside signed snapshots: its exact ``repr`` (``None`` stays)."""
    return None if value is None else repr(float(value))


def publication_content(batch_id: int, reason: str, snapshot_json: str) -> dict[str, Any]:
    """``ROW`` of a publication; ``snapshot_json`` must be the snapshot's canonical JSON."""
    return {
        "batch_id": int(batch_id),
        "reason": reason,
        "snapshot": RawCanonicalJson(snapshot_json),
    }


def broken_links(rows: Iterable[ChainRow], start: str | None = GENESIS) -> list[str]:
    """Problems of consecutive rows of one chain: wrong own hash or a broken link.

    Parameters
    ----------
    rows
        Rows of a single chain in chain order (ascending ``row_id``).
    start
        ``prev_hash`` the first row must carry (:data:`GENESIS` for a whole chain, the
        predecessor's hash for a slice, ``None`` to skip the check of the first link).

    Returns
    -------
    list of str
        One sentence per problem, naming the row; empty when the slice is intact.
    """
    problems: list[str] = []
    expected_prev = start
    for row in rows:
        if expected_prev is not None and row.prev_hash != expected_prev:
            problems.append(
                f"{row.where()}: link broken (prev_hash {row.prev_hash[:12]}…, the row before "
                f"it hashes to {expected_prev[:12]}…): a row was removed, inserted or rewritten"
            )
        if row.expected_hash() != row.entry_hash:
            problems.append(f"{row.where()}: content does not match its entry_hash (rewritten)")
        expected_prev = row.entry_hash
    return problems


def row_content(chain: Chain, values: Mapping[str, Any]) -> dict[str, Any]:
    """The hashed ``ROW`` of a row of ``chain`` from its column values."""
    if chain == "publications":
        return publication_content(values["batch_id"], values["reason"], values["snapshot"])
    if chain == "batches":
        return {
            "batch_id": int(values["batch_id"]),
            "published_at_us": int(values["published_at_us"]),
            "n_snapshots": int(values["n_snapshots"]),
        }
    if chain == "policy_states":
        return {
            "asset": values["asset"],
            "recorded_at_us": int(values["recorded_at_us"]),
            "batch_id": values["batch_id"],
            "audit_id": values["audit_id"],
            "state": values["state"],
        }
    if chain == "audit":
        return {
            "asset": values["asset"],
            "action": values["action"],
            "operator": values["operator"],
            "note": values["note"],
            "at_us": int(values["at_us"]),
            "multiplier_before": exact_float(values["multiplier_before"]),
            "override_multiplier": exact_float(values["override_multiplier"]),
            "override_until_us": values["override_until_us"],
        }
    return checkpoint_content(
        values["id"],
        values["created_at_us"],
        values["body"],
        values["public_key"],
        values["signature"],
    )


def checkpoint_content(
    sequence: int, created_at_us: int, body: str, public_key: str, signature: str
) -> dict[str, Any]:
    """``ROW`` of a checkpoint; ``body`` must be the canonical JSON it signs."""
    return {
        "sequence": int(sequence),
        "created_at_us": int(created_at_us),
        "body": RawCanonicalJson(body),
        "public_key": public_key,
        "signature": signature,
    }
