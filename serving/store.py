"""Append-only, tamper-evident publication store (SQLAlchemy 2 Core): SQLite or PostgreSQL.

Guarantees, enforced by the database rather than by this code:

* **Append-only.** Triggers refuse every UPDATE and DELETE (and TRUNCATE on PostgreSQL) on
  every table, and BEFORE INSERT triggers refuse an insert over an existing key, so
  SQLite's ``REPLACE`` family (which deletes the conflicting row without firing DELETE
  triggers) cannot rewrite a row either. This module has no update or delete path.
* **Hash chains.** Every row carries the hash of the previous row of its chain
  (:mod:`serving.hash_chain`); a trigger refuses a row whose ``prev_hash`` is not the
  current head. Each batch also appends a signed checkpoint over every chain head
  (:mod:`serving.checkpoints`), so a rewrite that bypasses the triggers (a superuser, or
  anyone who can write the SQLite file) is detected by :mod:`serving.log_integrity`.
* **update_id strictly increasing and published_at never decreasing per asset**, checked
  by a BEFORE INSERT trigger inside the inserting transaction (writers are serialised: a
  SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock).
* **Atomic batches.** A batch (its row, every snapshot, the policy states, the checkpoint)
  is one transaction: readers see all of it or none of it, also after a crash mid-batch.
* **Live or replay, never both.** A store is created as ``live`` (``published_at`` is the
  wall-clock time of publication, never in the future) or ``replay`` (``published_at`` is
  an as-of time of a backfill); the mode is stored with the store's id and a publisher
  asking for the other mode is refused.

Times are stored as integer microseconds since the epoch (UTC). Each snapshot is stored
as its canonical JSON, so what is read back verifies byte for byte.

Opening modes
-------------
``PublicationStore(url)`` (``create=True``, the publisher's mode) creates the schema and
triggers if absent. ``PublicationStore(url, create=False)`` (the API's mode) never issues
DDL and raises :class:`StoreNotInitialisedError` if the schema does not exist, so the API
can run under a read-only database role. For a read-only SQLite file use the URI form of
:func:`sqlite_read_only_url` (``mode=ro``). A SQLite store remembers which file it opened:
once that file is deleted or replaced every call raises :class:`StoreIdentityError`
instead of reading or writing through the stale handle.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal, Protocol, get_args, overload

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    inspect,
    make_url,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from serving import strict_json
from serving.errors import (
    AppendOnlyViolationError,
    PublicationStoreError,
    StoreBusyError,
    StoreIdentityError,
    StoreModeError,
    StoreNotInitialisedError,
    StoreReadOnlyError,
    UpdateIdConflictError,
)
from serving.hash_chain import GENESIS, Chain, ChainRow, entry_hash, exact_float
from serving.hash_chain import publication_content as _publication_content
from serving.policy import AuditRecord, PolicyState
from serving.standard import RawCanonicalJson, canonical_json, format_time, parse_time

ENV_URL = "DYNAMARGIN_PUBLICATIONS_URL"
SCHEMA_VERSION: Final[int] = 2
StoreMode = Literal["live", "replay"]
STORE_MODES: Final[tuple[str, ...]] = get_args(StoreMode)
LIVE_CLOCK_SKEW: Final[timedelta] = timedelta(minutes=5)
"""How far ahead of this host's clock a live publication may be stamped."""
DEFAULT_BUSY_TIMEOUT_S: Final[float] = 30.0
MAX_CURSOR_DIGITS: Final[int] = 18

metadata = MetaData()

store_meta = Table(
    "store_meta",
    metadata,
    Column("id", Integer, CheckConstraint("id = 1"), primary_key=True, autoincrement=False),
    Column("store_id", String(36), nullable=False),
    Column("mode", String(8), CheckConstraint("mode IN ('live', 'replay')"), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("schema_version", Integer, nullable=False),
)

batches = Table(
    "batches",
    metadata,
    Column("batch_id", Integer, primary_key=True, autoincrement=False),
    Column("published_at_us", BigInteger, nullable=False),
    Column("n_snapshots", Integer, CheckConstraint("n_snapshots >= 1"), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
)

publications = Table(
    "publications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("batch_id", Integer, ForeignKey("batches.batch_id"), nullable=False),
    Column("asset", String(64), nullable=False),
    Column("update_id", BigInteger, CheckConstraint("update_id >= 1"), nullable=False),
    Column("as_of_us", BigInteger, nullable=False),
    Column("published_at_us", BigInteger, nullable=False),
    Column("valid_until_us", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("multiplier", Float, nullable=False),
    Column("reference_id", String(160), nullable=False),
    Column("snapshot", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    UniqueConstraint("asset", "update_id", name="uq_publications_asset_update_id"),
    Index("ix_publications_asset_published", "asset", "published_at_us"),
    Index("ix_publications_asset_id", "asset", "id"),
)

policy_states = Table(
    "policy_states",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("asset", String(64), nullable=False),
    Column("recorded_at_us", BigInteger, nullable=False),
    Column("batch_id", Integer, ForeignKey("batches.batch_id"), nullable=True),
    Column("audit_id", Integer, ForeignKey("audit.id"), nullable=True),
    Column("state", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Index("ix_policy_states_asset", "asset", "id"),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("asset", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("operator", String(200), nullable=False),
    Column("note", Text, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("multiplier_before", Float, nullable=False),
    Column("override_multiplier", Float, nullable=True),
    Column("override_until_us", BigInteger, nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Index("ix_audit_asset", "asset", "id"),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("body", Text, nullable=False),
    Column("public_key", String(64), nullable=False),
    Column("signature", String(128), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
)

TABLES: Final[tuple[str, ...]] = (
    "store_meta",
    "batches",
    "publications",
    "policy_states",
    "audit",
    "checkpoints",
)
CHAIN_TABLES: Final[dict[Chain, Table]] = {
    "batches": batches,
    "publications": publications,
    "policy_states": policy_states,
    "audit": audit,
    "checkpoints": checkpoints,
}
_KEY_COLUMN: Final[dict[str, str]] = {
    "store_meta": "id",
    "batches": "batch_id",
    "publications": "id",
    "policy_states": "id",
    "audit": "id",
    "checkpoints": "id",
}


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
            _publication_content(self.batch_id, self.reason, self.raw),
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
            _checkpoint_content(
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


def sqlite_read_only_url(path: Path) -> str:
    """SQLAlchemy URL opening the SQLite file at ``path`` read-only (``mode=ro`` URI).

    Raises
    ------
    PublicationStoreError
        If the path contains ``?`` or ``#`` (not representable in the URI form).

    Examples
    --------
    >>> sqlite_read_only_url(Path("/srv/dm/publications.db"))
    'sqlite:///file:/srv/dm/publications.db?mode=ro&uri=true'
    """
    text_path = str(Path(path))
    if "?" in text_path or "#" in text_path:
        # SQLAlchemy unquotes the URL before SQLite parses it as a URI, so these two
        # characters cannot be escaped; they would cut the file name short.
        raise PublicationStoreError(
            f"cannot open {text_path} read-only through a SQLite URI: its path contains "
            "'?' or '#'; move the database to a path without them"
        )
    return f"sqlite:///file:{text_path}?mode=ro&uri=true"


def default_store_url(workdir: Path, environ: Mapping[str, str] | None = None) -> str:
    """``$DYNAMARGIN_PUBLICATIONS_URL`` or ``sqlite:///<workdir>/publications.db``.

    Every command (publish, serve, snapshots, policy) resolves the store with this
    function, so they all read and write the same store.
    """
    env = os.environ if environ is None else environ
    return env.get(ENV_URL) or workdir_store_url(workdir)


def workdir_store_url(workdir: Path) -> str:
    """The embedded default: ``sqlite:///<workdir>/publications.db``."""
    return f"sqlite:///{Path(workdir) / 'publications.db'}"


class PublicationStore:
    """Append-only store of signed snapshots, policy states, operator actions, checkpoints.

    Parameters
    ----------
    url
        SQLAlchemy URL, e.g. ``sqlite:///path/publications.db``,
        ``sqlite:///file:/path/publications.db?mode=ro&uri=true`` (read-only, see
        :func:`sqlite_read_only_url`) or ``postgresql+psycopg://user@host/db``.
    create
        Create the schema (tables, triggers) if absent; this needs DDL rights. With
        ``False`` nothing but the existence of the tables is checked, so a read-only role
        (``SELECT`` only) suffices for every read.
    mode
        ``live`` or ``replay``: the mode a new store is created with (default ``live``),
        and, for an existing store, the mode it must have.
    busy_timeout_s
        Longest wait for another writer's lock before :class:`StoreBusyError`.

    Raises
    ------
    StoreNotInitialisedError
        With ``create=False``, if the database file or the tables do not exist.
    StoreReadOnlyError
        With ``create=True``, if the connection may not create the schema.
    StoreModeError
        If ``mode`` is given and the store has the other one.
    PublicationStoreError
        If the database cannot be reached, or was written by an older dynamargin.

    Examples
    --------
    >>> store = PublicationStore("sqlite://")
    >>> store.latest(), store.mode
    ({}, 'live')
    """

    def __init__(
        self,
        url: str,
        create: bool = True,
        mode: StoreMode | None = None,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> None:
        if mode is not None and mode not in STORE_MODES:
            raise StoreModeError(f"store mode must be one of {STORE_MODES}, got {mode!r}")
        self.url = url
        self.create = create
        self.busy_timeout_s = busy_timeout_s
        self._path = _sqlite_path(url) if url.startswith("sqlite") else None
        self._identity: tuple[int, int] | None = None
        if not create:
            _require_sqlite_file(url)
        self.engine = _make_engine(url, create, busy_timeout_s)
        try:
            if create:
                self._create_schema(mode or "live")
            else:
                self._require_schema()
            self._identity = self._file_identity()
            self.meta = self._read_meta()
        except BaseException:
            self.engine.dispose()
            raise
        if mode is not None and self.meta.mode != mode:
            self.engine.dispose()
            raise StoreModeError(_mode_conflict(self, mode))

    def __repr__(self) -> str:
        return f"PublicationStore({_safe_url(self.url)!r})"

    @property
    def mode(self) -> StoreMode:
        """``live`` or ``replay`` (fixed when the store was created)."""
        return self.meta.mode

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def __enter__(self) -> PublicationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes -----------------------------------------------------------------------

    def append_batch(
        self,
        records: Sequence[PublicationRecord],
        published_at: datetime,
        checkpoint_signer: CheckpointSigner | None = None,
    ) -> BatchReceipt:
        """Append one batch atomically: every snapshot, policy state and the checkpoint.

        Parameters
        ----------
        records
            One signed snapshot per asset, with the policy reason and next state.
        published_at
            The batch's publication time (tz-aware).
        checkpoint_signer
            Signs a checkpoint over every chain head, appended in the same transaction
            (the publisher always passes its key; without one the batch is chained but
            not yet covered by a signature).

        Raises
        ------
        UpdateIdConflictError
            If an ``update_id`` does not exceed the asset's last one (another publisher got
            there first, or a replay); nothing of the batch is written.
        PublicationStoreError
            If the batch is empty, names an asset twice, goes back in time, lies in the
            future of a live store, or the database fails.
        """
        if not records:
            raise PublicationStoreError("refusing to append an empty batch")
        assets = [str(r.snapshot["asset"]) for r in records]
        if len(set(assets)) != len(assets):
            raise PublicationStoreError(f"batch names an asset twice: {sorted(assets)}")
        at_us = to_epoch_us(published_at)
        if self.mode == "live" and published_at > datetime.now(UTC) + LIVE_CLOCK_SKEW:
            raise PublicationStoreError(
                f"batch at {format_time(published_at)} lies in the future of this live store "
                f"(now {format_time(datetime.now(UTC))}); check the clock, or publish as-of "
                "times into a replay store"
            )
        try:
            with self._write() as conn:
                batch_id = _next_id(conn, batches)
                self._append(
                    conn,
                    "batches",
                    "",
                    {"batch_id": batch_id, "published_at_us": at_us, "n_snapshots": len(records)},
                )
                for record in records:
                    self._append_publication(conn, batch_id, record)
                    self._append_state(conn, record.state, at_us, batch_id=batch_id)
                if checkpoint_signer is not None:
                    self._append_checkpoint(conn, checkpoint_signer, at_us)
        except UpdateIdConflictError as exc:
            raise UpdateIdConflictError(
                f"batch at {published_at.isoformat()} rejected by the database: {exc}. "
                "Another publisher may have appended first; reload the store and retry."
            ) from exc
        return BatchReceipt(int(batch_id), published_at, len(records))

    def record_operator_action(
        self,
        record: AuditRecord,
        state: PolicyState,
        checkpoint_signer: CheckpointSigner | None = None,
    ) -> int:
        """Append an audit record and the resulting policy state in one transaction.

        Returns
        -------
        int
            The audit id.
        """
        at_us = to_epoch_us(record.at)
        with self._write() as conn:
            audit_id = _next_id(conn, audit)
            self._append(
                conn,
                "audit",
                record.asset,
                {
                    "id": audit_id,
                    "asset": record.asset,
                    "action": record.action,
                    "operator": record.operator,
                    "note": record.note,
                    "at_us": at_us,
                    "multiplier_before": record.multiplier_before,
                    "override_multiplier": record.override_multiplier,
                    "override_until_us": (
                        to_epoch_us(record.override_until) if record.override_until else None
                    ),
                },
            )
            self._append_state(conn, state, at_us, audit_id=audit_id)
            if checkpoint_signer is not None:
                self._append_checkpoint(conn, checkpoint_signer, at_us)
        return int(audit_id)

    def append_checkpoint(self, signer: CheckpointSigner, at: datetime | None = None) -> int:
        """Sign the current head of every chain (e.g. after operator actions); its id."""
        with self._write() as conn:
            return self._append_checkpoint(conn, signer, to_epoch_us(at or datetime.now(UTC)))

    # -- reads ------------------------------------------------------------------------

    @overload
    def latest(self) -> dict[str, StoredPublication]: ...

    @overload
    def latest(self, asset: str) -> StoredPublication | None: ...

    def latest(self, asset: str | None = None) -> Any:
        """Latest publication of ``asset`` (``None`` if never published), or, without an
        asset, a dict ``asset -> StoredPublication`` of every asset's latest."""
        newest = select(func.max(publications.c.id)).group_by(publications.c.asset)
        if asset is not None:
            newest = newest.where(publications.c.asset == asset)
        with self._read() as conn:
            rows = conn.execute(
                _with_neighbours(select(publications)).where(publications.c.id.in_(newest))
            ).all()
        found = {row.asset: _publication(row) for row in sorted(rows, key=lambda r: r.asset)}
        if asset is not None:
            return found.get(asset)
        return found

    def at(self, asset: str, when: datetime) -> StoredPublication | None:
        """Time travel: the publication of ``asset`` in force at ``when`` (the last one
        published at or before it), or ``None``."""
        with self._read() as conn:
            row = conn.execute(
                _with_neighbours(select(publications))
                .where(publications.c.asset == asset)
                .where(publications.c.published_at_us <= to_epoch_us(when))
                .order_by(publications.c.published_at_us.desc(), publications.c.id.desc())
                .limit(1)
            ).first()
        return _publication(row) if row else None

    def history(
        self,
        asset: str,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> HistoryPage:
        """Publications of ``asset`` in ``[start, end]`` (publication time), oldest first.

        Parameters
        ----------
        limit
            Page size (1..10000).
        cursor
            ``next_cursor`` of the previous page (keyset pagination on ``update_id``, so
            pages stay consistent while new publications arrive).

        Raises
        ------
        PublicationStoreError
            For a limit out of range or a cursor this store did not issue.
        """
        if not 1 <= limit <= 10_000:
            raise PublicationStoreError(f"history limit must be in 1..10000, got {limit}")
        query = _with_neighbours(select(publications)).where(publications.c.asset == asset)
        if start is not None:
            query = query.where(publications.c.published_at_us >= to_epoch_us(start))
        if end is not None:
            query = query.where(publications.c.published_at_us <= to_epoch_us(end))
        if cursor is not None:
            query = query.where(publications.c.update_id > parse_cursor(cursor))
        query = query.order_by(publications.c.update_id).limit(limit + 1)
        with self._read() as conn:
            rows = conn.execute(query).all()
        items = [_publication(r) for r in rows[:limit]]
        next_cursor = str(items[-1].update_id) if len(rows) > limit else None
        return HistoryPage(items, next_cursor)

    def iter_history(
        self,
        asset: str,
        start: datetime | None = None,
        end: datetime | None = None,
        page_size: int = 1000,
    ) -> Iterator[StoredPublication]:
        """Every publication of ``asset`` in ``[start, end]``, oldest first, page by page."""
        cursor: str | None = None
        while True:
            page = self.history(asset, start, end, limit=page_size, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def batch(self, batch_id: int) -> list[StoredPublication]:
        """Every publication of one batch, by asset."""
        with self._read() as conn:
            rows = conn.execute(
                _with_neighbours(select(publications))
                .where(publications.c.batch_id == batch_id)
                .order_by(publications.c.asset)
            ).all()
        return [_publication(r) for r in rows]

    def batches(self) -> list[BatchReceipt]:
        """Every committed batch, oldest first."""
        with self._read() as conn:
            rows = conn.execute(select(batches).order_by(batches.c.batch_id)).all()
        return [
            BatchReceipt(r.batch_id, from_epoch_us(r.published_at_us), r.n_snapshots) for r in rows
        ]

    def assets(self) -> list[str]:
        """Assets that have at least one publication or policy state."""
        with self._read() as conn:
            published = conn.execute(select(publications.c.asset).distinct()).scalars().all()
            stated = conn.execute(select(policy_states.c.asset).distinct()).scalars().all()
        return sorted({*published, *stated})

    def last_update_ids(self) -> dict[str, int]:
        """Highest ``update_id`` per asset."""
        with self._read() as conn:
            rows = conn.execute(
                select(publications.c.asset, func.max(publications.c.update_id)).group_by(
                    publications.c.asset
                )
            ).all()
        return {asset: int(uid) for asset, uid in rows}

    def policy_states(self) -> dict[str, PolicyState]:
        """Latest persisted policy state per asset (publications and operator actions)."""
        return {asset: stored.state for asset, stored in self.policy_state_rows().items()}

    def policy_state_rows(self, asset: str | None = None) -> dict[str, StoredPolicyState]:
        """Latest policy state per asset with its chain row (for integrity checks)."""
        newest = select(func.max(policy_states.c.id)).group_by(policy_states.c.asset)
        if asset is not None:
            newest = newest.where(policy_states.c.asset == asset)
        query = _with_neighbours(select(policy_states), policy_states).where(
            policy_states.c.id.in_(newest)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        out: dict[str, StoredPolicyState] = {}
        for row in rows:
            data = strict_json.loads(row.state, what=f"stored policy state of {row.asset}")
            out[row.asset] = StoredPolicyState(
                PolicyState.from_dict(data),
                _chain_row("policy_states", row),
                row.predecessor_hash or GENESIS,
            )
        return out

    def audit_log(self, asset: str | None = None) -> list[AuditRecord]:
        """Operator actions, oldest first."""
        query = select(audit).order_by(audit.c.id)
        if asset is not None:
            query = query.where(audit.c.asset == asset)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            AuditRecord(
                asset=r.asset,
                action=r.action,
                operator=r.operator,
                note=r.note,
                at=from_epoch_us(r.at_us),
                multiplier_before=r.multiplier_before,
                override_multiplier=r.override_multiplier,
                override_until=from_epoch_us(r.override_until_us) if r.override_until_us else None,
            )
            for r in rows
        ]

    # -- what the integrity checks read ------------------------------------------------

    def check_identity(self) -> None:
        """Raise :class:`StoreIdentityError` unless this is still the store that was opened.

        A SQLite file must still exist under the same inode; on both backends the store id
        in ``store_meta`` must be the one read at open (a schema dropped and recreated
        gets a new id).
        """
        self._check_file()
        current = self._read_meta()
        if current.store_id != self.meta.store_id:
            raise StoreIdentityError(
                f"publication store {_safe_url(self.url)} was recreated since it was opened "
                f"(store id {self.meta.store_id} is now {current.store_id}); restart this "
                "process to open the new store"
            )

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The newest signed checkpoint, or ``None`` before the first one."""
        with self._read() as conn:
            row = conn.execute(
                select(checkpoints).order_by(checkpoints.c.id.desc()).limit(1)
            ).first()
        return _checkpoint(row) if row else None

    def iter_checkpoints(self) -> Iterator[StoredCheckpoint]:
        """Every checkpoint, oldest first."""
        for row in self._iter_rows(checkpoints, checkpoints.c.id):
            yield _checkpoint(row)

    def chain_heads(self, chain: Chain) -> dict[str, ChainHead]:
        """Newest row of each chain of ``chain`` (key ``""`` for store-wide chains)."""
        table = CHAIN_TABLES[chain]
        key_col = _id_column(table)
        per_asset = "asset" in table.c
        group = (table.c.asset,) if per_asset else ()
        stats = select(
            *(table.c.asset,) if per_asset else (),
            func.max(key_col).label("head_id"),
            func.count().label("length"),
        )
        if group:
            stats = stats.group_by(*group)
        stats_sq = stats.subquery()
        columns = [key_col, table.c.entry_hash, stats_sq.c.length]
        if chain == "publications":
            columns.append(table.c.update_id)
        if per_asset:
            columns.append(table.c.asset)
        query = select(*columns).join(stats_sq, key_col == stats_sq.c.head_id)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return {
            (row.asset if per_asset else ""): ChainHead(
                int(row[0]),
                row.entry_hash,
                int(row.length),
                int(row.update_id) if chain == "publications" else None,
            )
            for row in rows
        }

    def chain_length(self, chain: Chain, key: str, up_to_row_id: int) -> int:
        """Rows of one chain with a row id up to ``up_to_row_id``."""
        table = CHAIN_TABLES[chain]
        query = select(func.count()).select_from(table).where(_id_column(table) <= up_to_row_id)
        if key:
            query = query.where(table.c.asset == key)
        with self._read() as conn:
            return int(conn.execute(query).scalar_one())

    def chain_rows(
        self, chain: Chain, key: str = "", after_row_id: int | None = None
    ) -> Iterator[ChainRow]:
        """Rows of one chain (all assets when ``key`` is empty), oldest first.

        ``after_row_id`` starts just after that row (``None``: from the first).
        """
        table = CHAIN_TABLES[chain]
        key_col = _id_column(table)
        query = select(table)
        if key:
            query = query.where(table.c.asset == key)
        if after_row_id is not None:
            query = query.where(key_col > after_row_id)
        for row in self._iter_rows(table, key_col, query):
            yield _chain_row(chain, row)

    def chain_rows_at(
        self, chain: Chain, row_ids: Collection[int], after_row_id: int
    ) -> list[ChainRow]:
        """Rows of ``chain`` whose id is in ``row_ids`` or above ``after_row_id``, by id.

        One query for what a head check needs: the rows a checkpoint signed, and every row
        appended after it.
        """
        table = CHAIN_TABLES[chain]
        key_col = _id_column(table)
        condition = key_col > after_row_id
        if row_ids:
            condition = condition | key_col.in_(sorted(row_ids))
        with self._read() as conn:
            rows = conn.execute(select(table).where(condition).order_by(key_col)).all()
        return [_chain_row(chain, row) for row in rows]

    def iter_publications(self) -> Iterator[StoredPublication]:
        """Every publication, by asset then update id (for the offline audit)."""
        query = select(publications).order_by(publications.c.asset, publications.c.id)
        for row in self._iter_rows(publications, publications.c.id, query, ordered=True):
            yield _publication(row)

    # -- plumbing ---------------------------------------------------------------------

    def _iter_rows(
        self, table: Table, key_col: Any, query: Any = None, ordered: bool = False, page: int = 2000
    ) -> Iterator[Any]:
        # Keyset pages: bounded memory on stores of any size, one short read each.
        base = query if query is not None else select(table)
        last: Any = None
        while True:
            paged = base
            if last is not None:
                paged = paged.where(
                    (table.c.asset > last[0]) | ((table.c.asset == last[0]) & (key_col > last[1]))
                    if ordered
                    else key_col > last
                )
            if not ordered:
                paged = paged.order_by(key_col)
            with self._read() as conn:
                rows = conn.execute(paged.limit(page)).all()
            yield from rows
            if len(rows) < page:
                return
            tail = rows[-1]
            last = (tail.asset, tail.id) if ordered else getattr(tail, key_col.name)

    def _append(self, conn: Connection, chain: Chain, key: str, values: dict[str, Any]) -> str:
        table = CHAIN_TABLES[chain]
        prev = _head_hash(conn, table, key)
        content = _content_of(chain, values)
        digest = entry_hash(chain, prev, content)
        conn.execute(table.insert().values(**values, prev_hash=prev, entry_hash=digest))
        return digest

    def _append_publication(
        self, conn: Connection, batch_id: int, record: PublicationRecord
    ) -> None:
        snap = record.snapshot
        raw = canonical_json(dict(snap)).decode("ascii")
        self._append(
            conn,
            "publications",
            str(snap["asset"]),
            {
                "id": _next_id(conn, publications),
                "batch_id": batch_id,
                "asset": snap["asset"],
                "update_id": int(snap["update_id"]),
                "as_of_us": to_epoch_us(parse_time(snap["as_of"])),
                "published_at_us": to_epoch_us(parse_time(snap["published_at"])),
                "valid_until_us": to_epoch_us(parse_time(snap["valid_until"])),
                "status": snap["status"],
                "reason": record.reason,
                "multiplier": float(snap["margin"]["multiplier"]),
                "reference_id": snap["provenance"]["reference_id"],
                "snapshot": raw,
            },
        )

    def _append_state(
        self,
        conn: Connection,
        state: PolicyState,
        at_us: int,
        batch_id: int | None = None,
        audit_id: int | None = None,
    ) -> None:
        self._append(
            conn,
            "policy_states",
            state.asset,
            {
                "id": _next_id(conn, policy_states),
                "asset": state.asset,
                "recorded_at_us": at_us,
                "batch_id": batch_id,
                "audit_id": audit_id,
                "state": json.dumps(state.to_dict(), sort_keys=True),
            },
        )

    def _append_checkpoint(self, conn: Connection, signer: CheckpointSigner, at_us: int) -> int:
        # Imported here: checkpoints builds on this module's types.
        from serving.checkpoints import checkpoint_body

        sequence = _next_id(conn, checkpoints)
        heads = {
            chain: self._heads_in(conn, chain) for chain in CHAIN_TABLES if chain != "checkpoints"
        }
        body = checkpoint_body(
            self.meta,
            sequence=sequence,
            created_at=from_epoch_us(at_us),
            previous=_head_hash(conn, checkpoints, ""),
            heads=heads,
        )
        signature = signer.sign_checkpoint(body)
        self._append(
            conn,
            "checkpoints",
            "",
            {
                "id": sequence,
                "created_at_us": at_us,
                "body": body.decode("ascii"),
                "public_key": signer.public_key,
                "signature": signature,
            },
        )
        return sequence

    def _heads_in(self, conn: Connection, chain: Chain) -> dict[str, ChainHead]:
        # chain_heads() inside the writing transaction (it must see the batch's rows).
        table = CHAIN_TABLES[chain]
        key_col = _id_column(table)
        per_asset = "asset" in table.c
        cols = [table.c.asset] if per_asset else []
        stats = select(*cols, func.max(key_col).label("head_id"), func.count().label("length"))
        if per_asset:
            stats = stats.group_by(table.c.asset)
        heads: dict[str, ChainHead] = {}
        for row in conn.execute(stats).all():
            if row.head_id is None:
                continue
            head = conn.execute(select(table).where(key_col == row.head_id)).one()
            heads[row.asset if per_asset else ""] = ChainHead(
                int(row.head_id),
                head.entry_hash,
                int(row.length),
                int(head.update_id) if chain == "publications" else None,
            )
        return heads

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        self._check_file()
        try:
            with self.engine.connect() as conn:
                conn.execution_options(dynamargin_write=True)
                with conn.begin():
                    if self.engine.dialect.name == "postgresql":
                        # Every writer of this store in turn: chain heads are read and
                        # extended without another writer in between.
                        conn.execute(
                            text(f"SET LOCAL lock_timeout = '{int(self.busy_timeout_s * 1000)}ms'")
                        )
                        conn.execute(text("SELECT pg_advisory_xact_lock(717172)"))
                    self._check_file()
                    yield conn
        except DBAPIError as exc:
            raise _store_error(exc, self.url, "write") from exc
        except SQLAlchemyError as exc:
            raise PublicationStoreError(
                f"publication store {_safe_url(self.url)} failed a write: {exc}"
            ) from exc

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        self._check_file()
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except DBAPIError as exc:
            raise _store_error(exc, self.url, "read") from exc
        except SQLAlchemyError as exc:
            raise PublicationStoreError(
                f"publication store {_safe_url(self.url)} failed a read: {exc}"
            ) from exc

    def _file_identity(self) -> tuple[int, int] | None:
        if self._path is None:
            return None
        try:
            stat = self._path.stat()
        except OSError:
            return None
        return stat.st_dev, stat.st_ino

    def _check_file(self) -> None:
        if self._identity is None:
            return
        now = self._file_identity()
        if now is None:
            raise StoreIdentityError(
                f"publication store file {self._path} was deleted or replaced since it was "
                "opened (it is gone); nothing is read from or written to the old handle. "
                "Restore the file, or restart this process on the new store"
            )
        if now != self._identity:
            raise StoreIdentityError(
                f"publication store file {self._path} was deleted or replaced since it was "
                f"opened (inode {self._identity[1]} is now {now[1]}); restart this process to "
                "open the new file"
            )

    def _read_meta(self) -> StoreMeta:
        with self._read() as conn:
            row = conn.execute(select(store_meta)).first()
        if row is None:
            raise StoreNotInitialisedError(
                f"publication store {_safe_url(self.url)} has no store_meta row; it was "
                "never completely created. Run `dynamargin publish` to create it"
            )
        if row.mode not in STORE_MODES:
            raise PublicationStoreError(
                f"store_meta of {_safe_url(self.url)} names mode {row.mode!r}"
            )
        return StoreMeta(
            row.store_id, row.mode, from_epoch_us(row.created_at_us), row.schema_version
        )

    def _require_schema(self) -> None:
        with self._read() as conn:
            found = set(inspect(conn).get_table_names())
        _refuse_old_schema(found, self.url)
        missing = [table for table in TABLES if table not in found]
        if missing:
            raise StoreNotInitialisedError(
                f"no publication store at {_safe_url(self.url)} (missing tables: "
                f"{', '.join(missing)}): run `dynamargin publish` first"
            )

    def _create_schema(self, mode: StoreMode) -> None:
        try:
            with self._write() as conn:
                if self.engine.dialect.name == "postgresql":
                    # Concurrent publishers may start together; DDL is serialised by this lock.
                    conn.execute(text("SELECT pg_advisory_xact_lock(717171)"))
                _refuse_old_schema(set(inspect(conn).get_table_names()), self.url)
                metadata.create_all(conn)
                statements = (
                    _postgres_triggers()
                    if self.engine.dialect.name == "postgresql"
                    else _sqlite_triggers()
                )
                for statement in statements:
                    conn.execute(text(statement))
                if conn.execute(select(store_meta.c.id)).first() is None:
                    conn.execute(
                        store_meta.insert().values(
                            id=1,
                            store_id=str(uuid.uuid4()),
                            mode=mode,
                            created_at_us=to_epoch_us(datetime.now(UTC)),
                            schema_version=SCHEMA_VERSION,
                        )
                    )
        except StoreReadOnlyError as exc:
            reason = getattr(exc.__cause__, "orig", exc)  # the database's own words
            raise StoreReadOnlyError(
                f"cannot create the schema of publication store {_safe_url(self.url)}: "
                f"{reason}. Readers open it with create=False (as the API does); the "
                "publisher needs a role allowed to CREATE tables and triggers."
            ) from exc


def parse_cursor(cursor: str) -> int:
    """The update id a history cursor stands for.

    Raises
    ------
    PublicationStoreError
        If the cursor is not one this store issued (a decimal update id).
    """
    if not (isinstance(cursor, str) and cursor.isascii() and cursor.isdigit()):
        raise PublicationStoreError(f"malformed history cursor {cursor[:40]!r}; use next_cursor")
    if len(cursor) > MAX_CURSOR_DIGITS:
        raise PublicationStoreError("history cursor too long; use next_cursor")
    return int(cursor)


def _mode_conflict(store: PublicationStore, wanted: str) -> str:
    meaning = {
        "live": "published_at is the wall-clock time of each publication",
        "replay": "published_at is the as-of time of a replay or backfill",
    }
    return (
        f"publication store {_safe_url(store.url)} is a {store.mode} store "
        f"({meaning[store.mode]}), but this publisher writes {wanted} publications "
        f"({meaning[wanted]}). The two never mix: give the {wanted} publications their own "
        f"store (set {ENV_URL} or use another --workdir)"
    )


def _refuse_old_schema(found: set[str], url: str) -> None:
    if "publications" in found and "store_meta" not in found:
        raise PublicationStoreError(
            f"publication store {_safe_url(url)} was written by an older dynamargin without "
            "hash chains; export it with `dynamargin snapshots export` and publish into a new "
            "store (another --workdir or DYNAMARGIN_PUBLICATIONS_URL)"
        )


def _store_error(exc: DBAPIError, url: str, action: str) -> PublicationStoreError:
    message = str(exc.orig)
    lowered = message.lower()
    if ("update_id" in message and "dynamargin:" in message) or "uq_publications" in message:
        return UpdateIdConflictError(message)
    if "unique constraint failed: publications.asset" in lowered:
        return UpdateIdConflictError(message)
    if "dynamargin:" in message:
        return AppendOnlyViolationError(message)
    if (
        "database is locked" in lowered
        or "lock timeout" in lowered
        or "database is busy" in lowered
    ):
        return StoreBusyError(
            f"publication store {_safe_url(url)} is locked by another connection (gave up "
            f"waiting); retry in a moment: {message}"
        )
    if _is_read_only_failure(lowered) or (
        action == "write" and "unable to open database file" in lowered
    ):
        return StoreReadOnlyError(
            f"publication store {_safe_url(url)} refused a {action}: {message}. It is opened "
            "read-only (mode=ro URL, a SELECT-only role, or a read-only or immutable file); "
            "write through the publisher's store URL instead."
        )
    return PublicationStoreError(f"cannot {action} publication store {_safe_url(url)}: {message}")


def _sqlite_path(url: str) -> Path | None:
    """File of a SQLite URL (plain or ``file:`` URI form); ``None`` for in-memory."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.query.get("uri") == "true" and database.startswith("file:"):
        database = database.removeprefix("file:")
    if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
        return None
    return Path(database)


def _require_sqlite_file(url: str) -> None:
    # Checked before connecting: sqlite3 would otherwise create an empty file at a
    # mistyped path and the API would look "initialised but empty".
    if not url.startswith("sqlite"):
        return
    path = _sqlite_path(url)
    if path is None or not path.is_file():
        where = "in memory" if path is None else f"at {path}"
        raise StoreNotInitialisedError(
            f"no publication store at {_safe_url(url)} (no database file {where}): "
            "run `dynamargin publish` first"
        )


def _make_engine(url: str, create: bool, busy_timeout_s: float) -> Engine:
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if create and path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s})
        busy_ms = int(busy_timeout_s * 1000)

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            _sqlite_configure(dbapi_connection, busy_ms, wal=create)

        event.listen(engine, "connect", on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_configure(dbapi_connection: Any, busy_ms: int, wal: bool) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's implicit BEGIN is lazy
    # and would start the transaction only at the first write).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    if wal:
        # The creator sets WAL (persistent); readers do not, so a read-only connection
        # never attempts a write.
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed batch survives power loss, not only a process crash.
        cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock up front, so the chain heads and update ids a batch
    # reads cannot change before it writes; reads stay DEFERRED (WAL snapshots).
    write = conn.get_execution_options().get("dynamargin_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


_CHAINED_PER_ASSET = ("publications", "policy_states", "audit")
_CHAINED_STORE_WIDE = ("batches", "checkpoints")


def _sqlite_triggers() -> list[str]:
    statements: list[str] = []

    def refuse(name: str, table: str, when: str, message: str, op: str = "INSERT") -> None:
        statements.append(
            f"CREATE TRIGGER IF NOT EXISTS {name} BEFORE {op} ON {table} "
            + (f"WHEN {when} " if when else "")
            + f"BEGIN SELECT RAISE(ABORT, 'dynamargin: {message}'); END"
        )

    for table in TABLES:
        key = _KEY_COLUMN[table]
        for op in ("UPDATE", "DELETE"):
            refuse(f"{table}_no_{op.lower()}", table, "", f"{table} is append-only ({op})", op)
        # REPLACE / INSERT OR REPLACE delete the conflicting row without firing DELETE
        # triggers; refusing the insert of an existing key closes that door.
        refuse(
            f"{table}_no_overwrite",
            table,
            f"EXISTS (SELECT 1 FROM {table} WHERE {key} = NEW.{key})",
            f"{table} is append-only (INSERT over an existing {key})",
        )
    refuse(
        "store_meta_single_row",
        "store_meta",
        "EXISTS (SELECT 1 FROM store_meta)",
        "store_meta is append-only (it has its one row)",
    )
    for table in _CHAINED_PER_ASSET:
        refuse(
            f"{table}_chain_link",
            table,
            f"NEW.prev_hash IS NOT COALESCE((SELECT entry_hash FROM {table} "
            f"WHERE asset = NEW.asset ORDER BY id DESC LIMIT 1), '{GENESIS}')",
            f"{table} is append-only: prev_hash must be the hash of the asset''s newest row",
        )
    for table in _CHAINED_STORE_WIDE:
        key = _KEY_COLUMN[table]
        refuse(
            f"{table}_chain_link",
            table,
            f"NEW.prev_hash IS NOT COALESCE((SELECT entry_hash FROM {table} "
            f"ORDER BY {key} DESC LIMIT 1), '{GENESIS}')",
            f"{table} is append-only: prev_hash must be the hash of the newest row",
        )
    # One trigger, so the update_id rule is checked before the time rule: a publisher that
    # lost a race hears "update_id", whatever its clock said.
    statements.append(
        "CREATE TRIGGER IF NOT EXISTS publications_order BEFORE INSERT ON publications BEGIN "
        "SELECT RAISE(ABORT, 'dynamargin: publications is append-only: update_id must strictly "
        "increase per asset') WHERE NEW.update_id <= COALESCE((SELECT MAX(update_id) FROM "
        "publications WHERE asset = NEW.asset), 0); "
        "SELECT RAISE(ABORT, 'dynamargin: publications is append-only: published_at must not "
        "go back in time per asset') WHERE NEW.published_at_us < COALESCE((SELECT "
        "MAX(published_at_us) FROM publications WHERE asset = NEW.asset), NEW.published_at_us); "
        "END"
    )
    return statements


def _postgres_triggers() -> list[str]:
    statements = [
        """
        CREATE OR REPLACE FUNCTION dynamargin_forbid_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'dynamargin: % is append-only (%)', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'integrity_constraint_violation';
        END $$
        """
    ]
    for table in TABLES:
        key = _KEY_COLUMN[table]
        checks = [
            f"IF EXISTS (SELECT 1 FROM {table} WHERE {key} = NEW.{key}) THEN "
            f"RAISE EXCEPTION 'dynamargin: {table} is append-only (INSERT over an existing "
            f"{key} %)', NEW.{key} USING ERRCODE = 'integrity_constraint_violation'; END IF;"
        ]
        if table == "store_meta":
            checks.append(
                "IF EXISTS (SELECT 1 FROM store_meta) THEN RAISE EXCEPTION "
                "'dynamargin: store_meta is append-only (it has its one row)' "
                "USING ERRCODE = 'integrity_constraint_violation'; END IF;"
            )
        if table in _CHAINED_PER_ASSET or table in _CHAINED_STORE_WIDE:
            where = "WHERE asset = NEW.asset " if table in _CHAINED_PER_ASSET else ""
            checks.append(
                f"SELECT entry_hash INTO head FROM {table} {where}ORDER BY {key} DESC LIMIT 1; "
                f"IF NEW.prev_hash IS DISTINCT FROM COALESCE(head, '{GENESIS}') THEN "
                f"RAISE EXCEPTION 'dynamargin: {table} is append-only: prev_hash must be the "
                "hash of the newest row' USING ERRCODE = 'integrity_constraint_violation'; END IF;"
            )
        if table == "publications":
            checks.append(
                # Serialise publishers of one asset so ids commit in order.
                "PERFORM pg_advisory_xact_lock(hashtext('dynamargin.publications:' || NEW.asset)); "
                "SELECT max(update_id), max(published_at_us) INTO last_id, last_at "
                "FROM publications WHERE asset = NEW.asset; "
                "IF last_id IS NOT NULL AND NEW.update_id <= last_id THEN RAISE EXCEPTION "
                "'dynamargin: publications is append-only: update_id % of % must exceed %', "
                "NEW.update_id, NEW.asset, last_id "
                "USING ERRCODE = 'integrity_constraint_violation'; END IF; "
                "IF last_at IS NOT NULL AND NEW.published_at_us < last_at THEN RAISE EXCEPTION "
                "'dynamargin: publications is append-only: published_at must not go back in "
                "time for %', NEW.asset USING ERRCODE = 'integrity_constraint_violation'; END IF;"
            )
        statements.append(
            f"CREATE OR REPLACE FUNCTION dynamargin_{table}_insert() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ DECLARE head text; last_id bigint; last_at bigint; BEGIN "
            + " ".join(checks)
            + " RETURN NEW; END $$"
        )
        statements.append(
            f"CREATE OR REPLACE TRIGGER {table}_insert_rules BEFORE INSERT ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION dynamargin_{table}_insert()"
        )
        statements.append(
            f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION dynamargin_forbid_change()"
        )
        statements.append(
            f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION dynamargin_forbid_change()"
        )
    return statements


def _id_column(table: Table) -> Any:
    return table.c.batch_id if table.name == "batches" else table.c.id


def _next_id(conn: Connection, table: Table) -> int:
    key = _id_column(table)
    return int(conn.execute(select(func.coalesce(func.max(key), 0) + 1)).scalar_one())


def _head_hash(conn: Connection, table: Table, key: str) -> str:
    query = select(table.c.entry_hash).order_by(_id_column(table).desc()).limit(1)
    if key:
        query = query.where(table.c.asset == key)
    return conn.execute(query).scalar() or GENESIS


def _with_neighbours(query: Any, table: Table = publications) -> Any:
    """Add the predecessor's ``entry_hash`` and the successor's ``prev_hash`` to a query."""
    before = table.alias("before_row")
    after = table.alias("after_row")
    predecessor = (
        select(before.c.entry_hash)
        .where(before.c.asset == table.c.asset, before.c.id < table.c.id)
        .order_by(before.c.id.desc())
        .limit(1)
        .scalar_subquery()
        .label("predecessor_hash")
    )
    successor = (
        select(after.c.prev_hash)
        .where(after.c.asset == table.c.asset, after.c.id > table.c.id)
        .order_by(after.c.id)
        .limit(1)
        .scalar_subquery()
        .label("successor_prev_hash")
    )
    return query.add_columns(predecessor, successor)


def _content_of(chain: Chain, values: Mapping[str, Any]) -> dict[str, Any]:
    """The hashed ``ROW`` of a row of ``chain`` from its column values."""
    if chain == "publications":
        return _publication_content(values["batch_id"], values["reason"], values["snapshot"])
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
    return _checkpoint_content(
        values["id"],
        values["created_at_us"],
        values["body"],
        values["public_key"],
        values["signature"],
    )


def _checkpoint_content(
    sequence: int, created_at_us: int, body: str, public_key: str, signature: str
) -> dict[str, Any]:
    return {
        "sequence": int(sequence),
        "created_at_us": int(created_at_us),
        "body": RawCanonicalJson(body),
        "public_key": public_key,
        "signature": signature,
    }


def _chain_row(chain: Chain, row: Any) -> ChainRow:
    values = row._mapping
    key = values.get("asset", "") if chain in _CHAINED_PER_ASSET else ""
    row_id = values["batch_id"] if chain == "batches" else values["id"]
    return ChainRow(
        chain,
        int(row_id),
        key,
        values["prev_hash"],
        values["entry_hash"],
        _content_of(chain, values),
    )


def _publication(row: Any) -> StoredPublication:
    values = row._mapping
    return StoredPublication(
        asset=row.asset,
        update_id=int(row.update_id),
        batch_id=int(row.batch_id),
        published_at=from_epoch_us(row.published_at_us),
        status=row.status,
        reason=row.reason,
        multiplier=float(row.multiplier),
        raw=row.snapshot,
        row_id=int(row.id),
        prev_hash=row.prev_hash,
        entry_hash=row.entry_hash,
        columns={
            "as_of_us": int(row.as_of_us),
            "published_at_us": int(row.published_at_us),
            "valid_until_us": int(row.valid_until_us),
            "reference_id": row.reference_id,
        },
        predecessor_hash=(
            (values["predecessor_hash"] or GENESIS) if "predecessor_hash" in values else None
        ),
        successor_prev_hash=values.get("successor_prev_hash"),
    )


def _checkpoint(row: Any) -> StoredCheckpoint:
    return StoredCheckpoint(
        row_id=int(row.id),
        created_at=from_epoch_us(row.created_at_us),
        body=row.body,
        public_key=row.public_key,
        signature=row.signature,
        prev_hash=row.prev_hash,
        entry_hash=row.entry_hash,
    )


def to_epoch_us(value: datetime) -> int:
    """Integer microseconds since the epoch of a tz-aware time (how the store keeps time)."""
    if value.tzinfo is None:
        raise PublicationStoreError(f"naive datetime {value!r}; pass tz-aware UTC times")
    delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_epoch_us(value: int) -> datetime:
    """Inverse of :func:`to_epoch_us` (UTC)."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(value))


def _is_read_only_failure(lowered: str) -> bool:
    # SQLite mode=ro or an immutable file: "attempt to write a readonly database";
    # PostgreSQL SELECT-only role: "permission denied for table ..."; hot standby:
    # "read-only transaction". (A write into an immutable directory fails with "unable to
    # open database file", mapped by the caller.)
    return (
        "readonly database" in lowered
        or "permission denied" in lowered
        or "read-only transaction" in lowered
    )


def _safe_url(url: str) -> str:
    # Never print a password embedded in a database URL.
    return make_url(url).render_as_string(hide_password=True)
