"""How the publication store reaches its database: URLs, engines, and error translation.

SQLite stores get WAL, ``synchronous=FULL`` and ``BEGIN IMMEDIATE`` for writers (so a
writer reads and extends the chain heads without another in between); readers never
change the journal mode, so a read-only connection never attempts a write. Database
errors become the serving layer's own types (:func:`store_error`), so a caller never sees
a driver exception.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError

from serving.errors import (
    AppendOnlyViolationError,
    PublicationStoreError,
    StoreBusyError,
    StoreNotInitialisedError,
    StoreReadOnlyError,
    UpdateIdConflictError,
)

ENV_URL: Final[str] = "DYNAMARGIN_PUBLICATIONS_URL"
DEFAULT_BUSY_TIMEOUT_S: Final[float] = 30.0


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


def store_error(exc: DBAPIError, url: str, action: str) -> PublicationStoreError:
    """The serving error a database error means (``action`` is ``read`` or ``write``)."""
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
            f"publication store {safe_url(url)} is locked by another connection (gave up "
            f"waiting); retry in a moment: {message}"
        )
    if _is_read_only_failure(lowered) or (
        action == "write" and "unable to open database file" in lowered
    ):
        return StoreReadOnlyError(
            f"publication store {safe_url(url)} refused a {action}: {message}. It is opened "
            "read-only (mode=ro URL, a SELECT-only role, or a read-only or immutable file); "
            "write through the publisher's store URL instead."
        )
    return PublicationStoreError(f"cannot {action} publication store {safe_url(url)}: {message}")


def sqlite_path(url: str) -> Path | None:
    """File of a SQLite URL (plain or ``file:`` URI form); ``None`` for in-memory."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.query.get("uri") == "true" and database.startswith("file:"):
        database = database.removeprefix("file:")
    if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
        return None
    return Path(database)


def require_sqlite_file(url: str) -> None:
    """Raise :class:`StoreNotInitialisedError` unless a SQLite URL names an existing file."""
    # Checked before connecting: sqlite3 would otherwise create an empty file at a
    # mistyped path and the API would look "initialised but empty".
    if not url.startswith("sqlite"):
        return
    path = sqlite_path(url)
    if path is None or not path.is_file():
        where = "in memory" if path is None else f"at {path}"
        raise StoreNotInitialisedError(
            f"no publication store at {safe_url(url)} (no database file {where}): "
            "run `dynamargin publish` first"
        )


def make_engine(url: str, create: bool, busy_timeout_s: float) -> Engine:
    """An engine for ``url``; ``create`` (the publisher) also puts SQLite in WAL mode."""
    if url.startswith("sqlite"):
        path = sqlite_path(url)
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


def safe_url(url: str) -> str:
    """``url`` for messages: a password in it is never printed."""
    return make_url(url).render_as_string(hide_password=True)
