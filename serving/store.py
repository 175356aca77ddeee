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
import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final, overload

from sqlalchemy import (
    Connection,
    Table,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from serving import strict_json
from serving.errors import (
    PublicationStoreError,
    StoreIdentityError,
    StoreModeError,
    StoreNotInitialisedError,
    StoreReadOnlyError,
    UpdateIdConflictError,
)
from serving.hash_chain import (
    GENESIS,
    PER_ASSET_CHAINS,
    Chain,
    ChainRow,
    entry_hash,
    row_content,
)
from serving.policy import AuditRecord, PolicyState
from serving.standard import canonical_json, format_time, parse_time
from serving.store_connection import (
    DEFAULT_BUSY_TIMEOUT_S,
    ENV_URL,
    default_store_url,
    make_engine,
    require_sqlite_file,
    safe_url,
    sqlite_path,
    sqlite_read_only_url,
    store_error,
    workdir_store_url,
)
from serving.store_records import (
    STORE_MODES,
    BatchReceipt,
    ChainHead,
    CheckpointSigner,
    HistoryPage,
    PublicationRecord,
    StoredCheckpoint,
    StoredPolicyState,
    StoredPublication,
    StoreMeta,
    StoreMode,
    from_epoch_us,
    to_epoch_us,
)
from serving.store_schema import (
    CHAIN_TABLES,
    SCHEMA_VERSION,
    TABLES,
    audit,
    batches,
    checkpoints,
    id_column,
    metadata,
    policy_states,
    postgres_triggers,
    publications,
    sqlite_triggers,
    store_meta,
)

__all__ = [
    "ENV_URL",
    "BatchReceipt",
    "ChainHead",
    "CheckpointSigner",
    "HistoryPage",
    "PublicationRecord",
    "PublicationStore",
    "StoreMeta",
    "StoreMode",
    "StoreNotInitialisedError",
    "StoreReadOnlyError",
    "StoredCheckpoint",
    "StoredPolicyState",
    "StoredPublication",
    "default_store_url",
    "from_epoch_us",
    "parse_cursor",
    "sqlite_read_only_url",
    "to_epoch_us",
    "workdir_store_url",
]

LIVE_CLOCK_SKEW: Final[timedelta] = timedelta(minutes=5)
"""How far ahead of this host's clock a live publication may be stamped."""
MAX_CURSOR_DIGITS: Final[int] = 18


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
        self._path = sqlite_path(url) if url.startswith("sqlite") else None
        self._identity: tuple[int, int] | None = None
        if not create:
            require_sqlite_file(url)
        self.engine = make_engine(url, create, busy_timeout_s)
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
        return f"PublicationStore({safe_url(self.url)!r})"

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
                f"publication store {safe_url(self.url)} was recreated since it was opened "
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
        key_col = id_column(table)
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
        query = select(func.count()).select_from(table).where(id_column(table) <= up_to_row_id)
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
        key_col = id_column(table)
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
        key_col = id_column(table)
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
        content = row_content(chain, values)
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
        key_col = id_column(table)
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
            raise store_error(exc, self.url, "write") from exc
        except SQLAlchemyError as exc:
            raise PublicationStoreError(
                f"publication store {safe_url(self.url)} failed a write: {exc}"
            ) from exc

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        self._check_file()
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except DBAPIError as exc:
            raise store_error(exc, self.url, "read") from exc
        except SQLAlchemyError as exc:
            raise PublicationStoreError(
                f"publication store {safe_url(self.url)} failed a read: {exc}"
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
                f"publication store {safe_url(self.url)} has no store_meta row; it was "
                "never completely created. Run `dynamargin publish` to create it"
            )
        if row.mode not in STORE_MODES:
            raise PublicationStoreError(
                f"store_meta of {safe_url(self.url)} names mode {row.mode!r}"
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
                f"no publication store at {safe_url(self.url)} (missing tables: "
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
                    postgres_triggers()
                    if self.engine.dialect.name == "postgresql"
                    else sqlite_triggers()
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
                f"cannot create the schema of publication store {safe_url(self.url)}: "
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
        f"publication store {safe_url(store.url)} is a {store.mode} store "
        f"({meaning[store.mode]}), but this publisher writes {wanted} publications "
        f"({meaning[wanted]}). The two never mix: give the {wanted} publications their own "
        f"store (set {ENV_URL} or use another --workdir)"
    )


def _refuse_old_schema(found: set[str], url: str) -> None:
    if "publications" in found and "store_meta" not in found:
        raise PublicationStoreError(
            f"publication store {safe_url(url)} was written by an older dynamargin without "
            "hash chains; export it with `dynamargin snapshots export` and publish into a new "
            "store (another --workdir or DYNAMARGIN_PUBLICATIONS_URL)"
        )


def _next_id(conn: Connection, table: Table) -> int:
    key = id_column(table)
    return int(conn.execute(select(func.coalesce(func.max(key), 0) + 1)).scalar_one())


def _head_hash(conn: Connection, table: Table, key: str) -> str:
    query = select(table.c.entry_hash).order_by(id_column(table).desc()).limit(1)
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


def _chain_row(chain: Chain, row: Any) -> ChainRow:
    values = row._mapping
    key = values.get("asset", "") if chain in PER_ASSET_CHAINS else ""
    row_id = values["batch_id"] if chain == "batches" else values["id"]
    return ChainRow(
        chain,
        int(row_id),
        key,
        values["prev_hash"],
        values["entry_hash"],
        row_content(chain, values),
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
