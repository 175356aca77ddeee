"""The values the publication store takes and gives back: records, rows, receipts.

Plain frozen dataclasses, so the rest of ``serving`` can pass them around without
depending on SQLAlchemy. Times in the store are integer microseconds since the epoch
(:func:`to_epoch_us`): exact, portable, and ordered the same in both databases.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, Protocol, get_args

from serving import strict_json
from serving.errors import PublicationStoreError
from serving.hash_chain import GENESIS, ChainRow, checkpoint_content, publication_content
from serving.policy import PolicyState

StoreMode = Literal["live", "replay"]
STORE_MODES: Final[tuple[str, ...]] = get_args(StoreMode)


class CheckpointSigner(Protocol):
    """Signs checkpoint bodies (the publisher's Ed25519 key, see :mod:`serving.signing`)."""

    @property
    def public_key(self) -> str:
        """Ed25519 public key, lowercase hex."""
        ...

    def sign_checkpoint(self, payload: bytes) -> str:
        """Ed25519 signature of ``payload``, lowercase hex."""
        ...


@dataclass(frozen=True)
class PublicationRecord:
    """One snapshot to append: the signed snapshot dict, the policy reason and next state."""

    snapshot: Mapping[str, Any]
    reason: str
    state: PolicyState


@dataclass(frozen=True)
class StoreMeta:
    """What a store says about itself: its id, its mode and when it was created."""

    store_id: str
    mode: StoreMode
    created_at: datetime
    schema_version: int


@dataclass(frozen=True)
class StoredPublication:
    """A snapshot as read back from the store, with its place in the asset's chain.

    Attributes
    ----------
    asset, update_id, batch_id, published_at, status, reason, multiplier
        The row's columns (copies of snapshot fields, plus the policy reason).
    raw
        The snapshot's canonical JSON, exactly as signed.
    row_id, prev_hash, entry_hash
        Its chain position and hashes (:mod:`serving.hash_chain`).
    columns
        The remaining stored copies of snapshot fields, for consistency checks.
    predecessor_hash
        ``entry_hash`` of the row before it in the chain (``GENESIS`` for the first).
    successor_prev_hash
        ``prev_hash`` of the row after it (``None`` when it is the newest).
    """

    asset: str
    update_id: int
    batch_id: int
    published_at: datetime
    status: str
    reason: str
    multiplier: float
    raw: str
    row_id: int = 0
    prev_hash: str = GENESIS
    entry_hash: str = ""
    columns: Mapping[str, Any] = field(default_factory=dict)
    predecessor_hash: str | None = None
    successor_prev_hash: str | None = None

    @property
    def snapshot(self) -> dict[str, Any]:
        """The snapshot dict, parsed strictly from its stored JSON.

        Raises
        ------
        serving.strict_json.StrictJsonError
            If the stored text is not strict JSON (only a tampered row is not).
        """
        document = strict_json.loads(
            self.raw, what=f"stored snapshot {self.asset}/{self.update_id}"
        )
        if not isinstance(document, dict):
            raise strict_json.StrictJsonError(
                f"stored snapshot {self.asset}/{self.update_id} is not a JSON object"
            )
        return document

    def chain_row(self) -> ChainRow:
        """This row as its hash chain sees it."""
        return ChainRow(
            "publications",
            self.row_id,
            self.asset,
            self.prev_hash,
            self.entry_hash,
            publication_content(self.batch_id, self.reason, self.raw),
        )


@dataclass(frozen=True)
class StoredPolicyState:
    """The newest policy state of one asset, with its chain row and predecessor hash."""

    state: PolicyState
    row: ChainRow
    predecessor_hash: str


@dataclass(frozen=True)
class StoredCheckpoint:
    """A signed checkpoint as stored (see :mod:`serving.checkpoints`)."""

    row_id: int
    created_at: datetime
    body: str
    public_key: str
    signature: str
    prev_hash: str
    entry_hash: str

    def chain_row(self) -> ChainRow:
        return ChainRow(
            "checkpoints",
            self.row_id,
            "",
            self.prev_hash,
            self.entry_hash,
            checkpoint_content(
                self.row_id,
                to_epoch_us(self.created_at),
                self.body,
                self.public_key,
                self.signature,
            ),
        )


@dataclass(frozen=True)
class ChainHead:
    """The newest row of one chain: where it is, its hash and how long the chain is."""

    row_id: int
    entry_hash: str
    length: int
    update_id: int | None = None


@dataclass(frozen=True)
class BatchReceipt:
    """A committed batch."""

    batch_id: int
    published_at: datetime
    n_snapshots: int


@dataclass(frozen=True)
class HistoryPage:
    """One page of :meth:`PublicationStore.history`; pass ``next_cursor`` for the next."""

    items: list[StoredPublication]
    next_cursor: str | None


def to_epoch_us(value: datetime) -> int:
    """Integer microseconds since the epoch of a tz-aware time (how the store keeps time)."""
    if value.tzinfo is None:
        raise PublicationStoreError(f"naive datetime {value!r}; pass tz-aware UTC times")
    delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_epoch_us(value: int) -> datetime:
    """Inverse of :func:`to_epoch_us` (UTC)."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(value))
