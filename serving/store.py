"""Append-only publication store (SQLAlchemy 2 Core): SQLite (WAL) by default, PostgreSQL by URL.

Guarantees, enforced by the database rather than by this code:

* **Append-only.** Triggers refuse every UPDATE and DELETE (and TRUNCATE on PostgreSQL) on
  all tables; this module has no update or delete path either.
* **update_id strictly increasing per asset.** A unique ``(asset, update_id)`` constraint plus
  a BEFORE INSERT trigger comparing with the asset's current maximum inside the inserting
  transaction (on PostgreSQL under a per-asset advisory lock, so two concurrent publishers
  cannot interleave ids).
* **Atomic batches.** A batch (its row, every snapshot and the policy states) is one
  transaction: readers see all of it or none of it, also after a crash (SIGKILL) mid-batch.

Times are stored as integer microseconds since the epoch (UTC): exact, portable, and
ordered the same in both databases. Each snapshot is stored as its canonical JSON, so what
is read back verifies byte for byte.

Opening modes
-------------
``PublicationStore(url)`` (``create=True``, the publisher's mode) creates the schema and
triggers if absent. ``PublicationStore(url, create=False)`` (the API's mode) never issues
DDL: it checks that the schema exists and raises :class:`StoreNotInitialisedError` if not,
so the API can run under a read-only database role. For a read-only SQLite file use the
URI form of :func:`sqlite_read_only_url` (``mode=ro``): SQLite then opens the file
``O_RDONLY``, which holds even for root, and every write fails as
:class:`StoreReadOnlyError`. A WAL database opened ``mode=ro`` needs its ``-shm``/``-wal``
files to exist or its directory to be writable (SQLite creates them); ``immutable=1`` is
deliberately not used, because it disables locking and would read torn pages while the
publisher writes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

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
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from serving.errors import (
    AppendOnlyViolationError,
    PublicationStoreError,
    UpdateIdConflictError,
)
from serving.policy import AuditRecord, PolicyState
from serving.standard import canonical_json, parse_time

ENV_URL = "DYNAMARGIN_PUBLICATIONS_URL"

metadata = MetaData()

batches = Table(
    "batches",
    metadata,
    Column("batch_id", Integer, primary_key=True, autoincrement=True),
    Column("published_at_us", BigInteger, nullable=False),
    Column("n_snapshots", Integer, CheckConstraint("n_snapshots >= 1"), nullable=False),
    sqlite_autoincrement=True,
)

publications = Table(
    "publications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
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
    UniqueConstraint("asset", "update_id", name="uq_publications_asset_update_id"),
    Index("ix_publications_asset_published", "asset", "published_at_us"),
    sqlite_autoincrement=True,
)

policy_states = Table(
    "policy_states",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("asset", String(64), nullable=False),
    Column("recorded_at_us", BigInteger, nullable=False),
    Column("batch_id", Integer, ForeignKey("batches.batch_id"), nullable=True),
    Column("audit_id", Integer, ForeignKey("audit.id"), nullable=True),
    Column("state", Text, nullable=False),
    Index("ix_policy_states_asset", "asset", "id"),
    sqlite_autoincrement=True,
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("asset", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("operator", String(200), nullable=False),
    Column("note", Text, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("multiplier_before", Float, nullable=False),
    Column("override_multiplier", Float, nullable=True),
    Column("override_until_us", BigInteger, nullable=True),
    sqlite_autoincrement=True,
)

TABLES = ("batches", "publications", "policy_states", "audit")


@dataclass(frozen=True)
class PublicationRecord:
    """One snapshot to append: the signed snapshot dict, the policy reason and next state."""

    snapshot: Mapping[str, Any]
    reason: str
    state: PolicyState


@dataclass(frozen=True)
class StoredPublication:
    """A snapshot as read back from the store."""

    asset: str
    update_id: int
    batch_id: int
    published_at: datetime
    status: str
    reason: str
    multiplier: float
    raw: str

    @property
    def snapshot(self) -> dict[str, Any]:
        """The snapshot dict (parsed from its canonical JSON)."""
        return json.loads(self.raw)


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


class StoreNotInitialisedError(PublicationStoreError):
    """The store was opened without ``create`` and its schema does not exist (yet)."""


class StoreReadOnlyError(PublicationStoreError):
    """A write reached a store opened read-only (``mode=ro`` or a read-only database role)."""


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


def default_store_url(workdir: Path) -> str:
    """``$DYNAMARGIN_PUBLICATIONS_URL`` or ``sqlite:///<workdir>/publications.db``."""
    return os.environ.get(ENV_URL) or workdir_store_url(workdir)


def workdir_store_url(workdir: Path) -> str:
    """The embedded default: ``sqlite:///<workdir>/publications.db``."""
    return f"sqlite:///{Path(workdir) / 'publications.db'}"


class PublicationStore:
    """Append-only store of signed snapshots, policy states and operator actions.

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

    Raises
    ------
    StoreNotInitialisedError
        With ``create=False``, if the database file or the tables do not exist.
    StoreReadOnlyError
        With ``create=True``, if the connection may not create the schema.
    PublicationStoreError
        If the database cannot be reached.

    Examples
    --------
    >>> store = PublicationStore("sqlite://")
    >>> store.latest()
    {}
    """

    def __init__(self, url: str, create: bool = True) -> None:
        self.url = url
        self.create = create
        if not create:
            _require_sqlite_file(url)
        try:
            self.engine = _make_engine(url, create)
            if create:
                self._create_schema()
            else:
                self._require_schema()
        except OperationalError as exc:
            if hasattr(self, "engine"):
                self.engine.dispose()
            raise PublicationStoreError(
                f"cannot open publication store {_safe_url(url)}: {exc.orig}"
            ) from exc
        except StoreNotInitialisedError:
            self.engine.dispose()
            raise
        except StoreReadOnlyError as exc:
            self.engine.dispose()
            reason = getattr(exc.__cause__, "orig", exc)  # the database's own words
            raise StoreReadOnlyError(
                f"cannot create the schema of publication store {_safe_url(url)}: "
                f"{reason}. Readers "
                "open it with create=False (as the API does); the publisher needs a role "
                "allowed to CREATE tables and triggers."
            ) from exc

    def __repr__(self) -> str:
        return f"PublicationStore({_safe_url(self.url)!r})"

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def __enter__(self) -> PublicationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes -----------------------------------------------------------------------

    def append_batch(
        self, records: Sequence[PublicationRecord], published_at: datetime
    ) -> BatchReceipt:
        """Append one batch atomically: every snapshot and policy state, or nothing.

        Raises
        ------
        UpdateIdConflictError
            If an ``update_id`` does not exceed the asset's last one (another publisher got
            there first, or a replay); nothing of the batch is written.
        PublicationStoreError
            If the batch is empty, names an asset twice, or the database fails.
        """
        if not records:
            raise PublicationStoreError("refusing to append an empty batch")
        assets = [str(r.snapshot["asset"]) for r in records]
        if len(set(assets)) != len(assets):
            raise PublicationStoreError(f"batch names an asset twice: {sorted(assets)}")
        at_us = _to_us(published_at)
        try:
            with self._write() as conn:
                batch_id = conn.execute(
                    batches.insert().values(published_at_us=at_us, n_snapshots=len(records))
                ).inserted_primary_key[0]
                for record in records:
                    snap = record.snapshot
                    conn.execute(
                        publications.insert().values(
                            batch_id=batch_id,
                            asset=snap["asset"],
                            update_id=int(snap["update_id"]),
                            as_of_us=_to_us(parse_time(snap["as_of"])),
                            published_at_us=_to_us(parse_time(snap["published_at"])),
                            valid_until_us=_to_us(parse_time(snap["valid_until"])),
                            status=snap["status"],
                            reason=record.reason,
                            multiplier=float(snap["margin"]["multiplier"]),
                            reference_id=snap["provenance"]["reference_id"],
                            snapshot=canonical_json(dict(snap)).decode("ascii"),
                        )
                    )
                    conn.execute(
                        policy_states.insert().values(
                            asset=snap["asset"],
                            recorded_at_us=at_us,
                            batch_id=batch_id,
                            state=json.dumps(record.state.to_dict(), sort_keys=True),
                        )
                    )
        except IntegrityError as exc:
            message = str(exc.orig)
            if "update_id" in message or "uq_publications" in message or "UNIQUE" in message:
                raise UpdateIdConflictError(
                    f"batch at {published_at.isoformat()} rejected by the database: {message}. "
                    "Another publisher may have appended first; reload the store and retry."
                ) from exc
            raise PublicationStoreError(f"batch rejected by the database: {message}") from exc
        return BatchReceipt(int(batch_id), published_at, len(records))

    def record_operator_action(self, record: AuditRecord, state: PolicyState) -> int:
        """Append an audit record and the resulting policy state in one transaction.

        Returns
        -------
        int
            The audit id.
        """
        with self._write() as conn:
            audit_id = conn.execute(
                audit.insert().values(
                    asset=record.asset,
                    action=record.action,
                    operator=record.operator,
                    note=record.note,
                    at_us=_to_us(record.at),
                    multiplier_before=record.multiplier_before,
                    override_multiplier=record.override_multiplier,
                    override_until_us=(
                        _to_us(record.override_until) if record.override_until else None
                    ),
                )
            ).inserted_primary_key[0]
            conn.execute(
                policy_states.insert().values(
                    asset=record.asset,
                    recorded_at_us=_to_us(record.at),
                    audit_id=audit_id,
                    state=json.dumps(state.to_dict(), sort_keys=True),
                )
            )
        return int(audit_id)

    # -- reads ------------------------------------------------------------------------

    @overload
    def latest(self) -> dict[str, StoredPublication]: ...

    @overload
    def latest(self, asset: str) -> StoredPublication | None: ...

    def latest(self, asset: str | None = None) -> Any:
        """Latest publication of ``asset`` (``None`` if never published), or, without an
        asset, a dict ``asset -> StoredPublication`` of every asset's latest."""
        with self._read() as conn:
            if asset is not None:
                row = conn.execute(
                    select(publications)
                    .where(publications.c.asset == asset)
                    .order_by(publications.c.update_id.desc())
                    .limit(1)
                ).first()
                return _publication(row) if row else None
            last = (
                select(publications.c.asset, func.max(publications.c.update_id).label("uid"))
                .group_by(publications.c.asset)
                .subquery()
            )
            rows = conn.execute(
                select(publications).join(
                    last,
                    (publications.c.asset == last.c.asset)
                    & (publications.c.update_id == last.c.uid),
                )
            ).all()
        return {row.asset: _publication(row) for row in sorted(rows, key=lambda r: r.asset)}

    def at(self, asset: str, when: datetime) -> StoredPublication | None:
        """Time travel: the publication of ``asset`` in force at ``when`` (the last one
        published at or before it), or ``None``."""
        with self._read() as conn:
            row = conn.execute(
                select(publications)
                .where(publications.c.asset == asset)
                .where(publications.c.published_at_us <= _to_us(when))
                .order_by(publications.c.published_at_us.desc(), publications.c.update_id.desc())
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
        """
        if not 1 <= limit <= 10_000:
            raise PublicationStoreError(f"history limit must be in 1..10000, got {limit}")
        query = select(publications).where(publications.c.asset == asset)
        if start is not None:
            query = query.where(publications.c.published_at_us >= _to_us(start))
        if end is not None:
            query = query.where(publications.c.published_at_us <= _to_us(end))
        if cursor is not None:
            try:
                after = int(cursor)
            except ValueError as exc:
                raise PublicationStoreError(f"malformed history cursor {cursor!r}") from exc
            query = query.where(publications.c.update_id > after)
        query = query.order_by(publications.c.update_id).limit(limit + 1)
        with self._read() as conn:
            rows = conn.execute(query).all()
        items = [_publication(r) for r in rows[:limit]]
        next_cursor = str(items[-1].update_id) if len(rows) > limit else None
        return HistoryPage(items, next_cursor)

    def batch(self, batch_id: int) -> list[StoredPublication]:
        """Every publication of one batch, by asset."""
        with self._read() as conn:
            rows = conn.execute(
                select(publications)
                .where(publications.c.batch_id == batch_id)
                .order_by(publications.c.asset)
            ).all()
        return [_publication(r) for r in rows]

    def batches(self) -> list[BatchReceipt]:
        """Every committed batch, oldest first."""
        with self._read() as conn:
            rows = conn.execute(select(batches).order_by(batches.c.batch_id)).all()
        return [BatchReceipt(r.batch_id, _from_us(r.published_at_us), r.n_snapshots) for r in rows]

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
        last = (
            select(func.max(policy_states.c.id).label("id"))
            .group_by(policy_states.c.asset)
            .subquery()
        )
        with self._read() as conn:
            rows = conn.execute(
                select(policy_states.c.asset, policy_states.c.state).where(
                    policy_states.c.id.in_(select(last.c.id))
                )
            ).all()
        return {asset: PolicyState.from_dict(json.loads(state)) for asset, state in rows}

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
                at=_from_us(r.at_us),
                multiplier_before=r.multiplier_before,
                override_multiplier=r.override_multiplier,
                override_until=_from_us(r.override_until_us) if r.override_until_us else None,
            )
            for r in rows
        ]

    # -- plumbing ---------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(dynamargin_write=True)
            try:
                with conn.begin():
                    yield conn
            except DBAPIError as exc:
                message = str(exc.orig)
                if "append-only" in message:
                    raise AppendOnlyViolationError(message) from exc
                if _is_read_only_failure(message):
                    raise StoreReadOnlyError(
                        f"publication store {_safe_url(self.url)} refused a write: {message}. "
                        "It is opened read-only (mode=ro URL or a SELECT-only role); write "
                        "through the publisher's store URL instead."
                    ) from exc
                raise

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def _require_schema(self) -> None:
        with self._read() as conn:
            found = set(inspect(conn).get_table_names())
        missing = [table for table in TABLES if table not in found]
        if missing:
            raise StoreNotInitialisedError(
                f"no publication store at {_safe_url(self.url)} (missing tables: "
                f"{', '.join(missing)}): run `dynamargin publish` first"
            )

    def _create_schema(self) -> None:
        with self._write() as conn:
            if self.engine.dialect.name == "postgresql":
                # Concurrent publishers may start together; DDL is serialised by this lock.
                conn.execute(text("SELECT pg_advisory_xact_lock(717171)"))
            metadata.create_all(conn)
            statements = (
                _POSTGRES_TRIGGERS
                if self.engine.dialect.name == "postgresql"
                else _sqlite_triggers()
            )
            for statement in statements:
                conn.execute(text(statement))


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


def _make_engine(url: str, create: bool = True) -> Engine:
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if create and path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_on_connect if create else _sqlite_on_open)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_on_open(dbapi_connection: Any, _record: Any) -> None:
    # An existing store was put in WAL mode by its creator (the mode is persistent); not
    # setting it again keeps a read-only connection from attempting a write.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's implicit BEGIN is lazy
    # and would start the transaction only at the first write).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed batch survives power loss, not only a process crash.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock up front, so the update_id check and the insert of a
    # batch cannot interleave with another writer; reads stay DEFERRED (WAL snapshots).
    write = conn.get_execution_options().get("dynamargin_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _sqlite_triggers() -> list[str]:
    statements = [
        "CREATE TRIGGER IF NOT EXISTS publications_update_id_increases "
        "BEFORE INSERT ON publications "
        "WHEN NEW.update_id <= COALESCE("
        "(SELECT MAX(update_id) FROM publications WHERE asset = NEW.asset), 0) "
        "BEGIN SELECT RAISE(ABORT, 'dynamargin: update_id must strictly increase per asset'); "
        "END"
    ]
    for table in TABLES:
        for op in ("UPDATE", "DELETE"):
            statements.append(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'dynamargin: {table} is append-only ({op})'); END"
            )
    return statements


_POSTGRES_TRIGGERS: list[str] = [
    """
    CREATE OR REPLACE FUNCTION dynamargin_forbid_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'dynamargin: % is append-only (%)', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'integrity_constraint_violation';
    END $$
    """,
    """
    CREATE OR REPLACE FUNCTION dynamargin_update_id_increases() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE last_id bigint;
    BEGIN
        -- Serialise publishers of one asset so ids commit in order.
        PERFORM pg_advisory_xact_lock(hashtext('dynamargin.publications:' || NEW.asset));
        SELECT max(update_id) INTO last_id FROM publications WHERE asset = NEW.asset;
        IF last_id IS NOT NULL AND NEW.update_id <= last_id THEN
            RAISE EXCEPTION 'dynamargin: update_id % of % must exceed %',
                NEW.update_id, NEW.asset, last_id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END $$
    """,
    "CREATE OR REPLACE TRIGGER publications_update_id_increases BEFORE INSERT ON publications "
    "FOR EACH ROW EXECUTE FUNCTION dynamargin_update_id_increases()",
    *[
        f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION dynamargin_forbid_change()"
        for table in TABLES
    ],
    *[
        f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION dynamargin_forbid_change()"
        for table in TABLES
    ],
]


def _publication(row: Any) -> StoredPublication:
    return StoredPublication(
        asset=row.asset,
        update_id=int(row.update_id),
        batch_id=int(row.batch_id),
        published_at=_from_us(row.published_at_us),
        status=row.status,
        reason=row.reason,
        multiplier=float(row.multiplier),
        raw=row.snapshot,
    )


def _to_us(value: datetime) -> int:
    if value.tzinfo is None:
        raise PublicationStoreError(f"naive datetime {value!r}; pass tz-aware UTC times")
    delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_us(value: int) -> datetime:
    return datetime.fromtimestamp(value // 1_000_000, tz=UTC).replace(microsecond=value % 1_000_000)


def _is_read_only_failure(message: str) -> bool:
    # SQLite mode=ro: "attempt to write a readonly database"; PostgreSQL SELECT-only role:
    # "permission denied for table ..."; hot standby: "read-only transaction".
    lowered = message.lower()
    return (
        "readonly database" in lowered
        or "permission denied" in lowered
        or "read-only transaction" in lowered
    )


def _safe_url(url: str) -> str:
    # Never print a password embedded in a database URL.
    return make_url(url).render_as_string(hide_password=True)
