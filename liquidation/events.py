"""Event types, the in-memory log, command boundaries and SQLite persistence.

An event is ``(seq, ts_ms, kind, data)`` plus its command: ``cmd`` numbers the command that
emitted it, ``last`` marks the command's final event and ``key`` (first event only) carries
the command's idempotency key. ``data`` holds plain JSON values (ints for money, floats for
rates, strings, lists); events carry every computed amount, so the fold never re-decides
anything and a replay is bit-for-bit identical.

A command's events are persisted in one transaction and folded together. A command whose
final event never arrived (a torn tail, after a crash between writes of a store without
transactions, or a log truncated by hand) is not applied; :func:`split_commands` finds it and
:class:`liquidation.engine.Engine` closes it with an ``abort`` event before writing on.

JSON keeps Python ints exact at any size and floats exact through ``repr``, so the SQLite
round trip is lossless.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from liquidation.circuit_breaker import BREAKER_EVENT_FIELDS
from liquidation.errors import EventLogError
from liquidation.money import MAX_TS_MS
from liquidation.options.engine_book import OPTION_EVENT_FIELDS

#: Version of the SQLite layout written by :class:`SQLiteEventStore`.
SCHEMA_VERSION: Final[int] = 2

#: Required data fields of each event kind.
EVENT_FIELDS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "clock": frozenset(),
        "abort": frozenset({"events"}),
        "deposit": frozenset({"account", "amount"}),
        "withdraw": frozenset({"account", "amount"}),
        "fund_deposit": frozenset({"amount"}),
        "price": frozenset(
            {
                "asset",
                "price",
                "confidence",
                "reference",
                "twap",
                "window",
                "accepted",
                "reanchored",
                "reason",
            }
        ),
        "reference": frozenset({"asset", "feed", "price", "observed_ms"}),
        "guard": frozenset({"asset", "guarded", "reason"}),
        "guard_alert": frozenset({"asset", "since", "reason"}),
        "mark_source": frozenset({"asset", "source", "reason"}),
        "snapshot": frozenset({"asset", "params", "ramp", "trusted"}),
        "margin_mode": frozenset({"account", "portfolio"}),
        "transfer": frozenset({"account", "asset", "amount"}),
        "fill": frozenset({"asset", "price", "reason", "basis", "legs"}),
        "funding": frozenset({"asset", "rate", "price", "payments"}),
        "penalty": frozenset({"bucket", "keeper", "keeper_amount", "fund_amount"}),
        "fund_cover": frozenset({"bucket", "amount"}),
        "concession": frozenset({"bucket", "counterparty", "amount", "reason"}),
        "socialize": frozenset({"bucket", "charges", "written_off"}),
        "liquidation": frozenset(
            {
                "bucket",
                "keeper",
                "step",
                "fraction",
                "equity_before",
                "mm_before",
                "equity_after",
                "mm_after",
                "bad_debt",
                "closed",
            }
        ),
        "insurance": frozenset({"fund_share", "fee_addon_bps", "coverage", "stressed_loss"}),
        **OPTION_EVENT_FIELDS,
        **BREAKER_EVENT_FIELDS,
    }
)

#: Fields of each leg of a ``fill`` event.
LEG_FIELDS: Final[frozenset[str]] = frozenset(
    {"bucket", "dq", "fee", "fee_addon", "realized_pnl", "cost_delta", "risk_since"}
)


@dataclass(frozen=True)
class Event:
    """One state change. ``seq`` is the 0-based position in the log; ``cmd`` the command."""

    seq: int
    ts_ms: int
    kind: str
    data: Mapping[str, Any]
    cmd: int = 0
    last: bool = True
    key: str | None = None

    def __post_init__(self) -> None:
        required = EVENT_FIELDS.get(self.kind)
        if required is None:
            raise EventLogError(f"event #{self.seq}: unknown kind {self.kind!r}")
        missing = required - set(self.data)
        if missing:
            raise EventLogError(
                f"event #{self.seq} ({self.kind}, ts={self.ts_ms}): missing {sorted(missing)}"
            )
        for name, number, high in (
            ("seq", self.seq, None),
            ("cmd", self.cmd, None),
            ("ts_ms", self.ts_ms, MAX_TS_MS),
        ):
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                raise EventLogError(f"event #{self.seq} ({self.kind}): {name} {number!r} < 0")
            if high is not None and number > high:
                raise EventLogError(
                    f"event #{self.seq} ({self.kind}): ts {number} beyond {high} (year 2200)"
                )
        if self.kind == "fill":
            for leg in self.data["legs"]:
                if LEG_FIELDS - set(leg):
                    raise EventLogError(
                        f"event #{self.seq} (fill): leg missing {sorted(LEG_FIELDS - set(leg))}"
                    )

    def to_json(self) -> str:
        """Canonical JSON of ``data`` (sorted keys, no spaces)."""
        return json.dumps(self.data, sort_keys=True, separators=(",", ":"))


def split_commands(events: Sequence[Event]) -> tuple[list[list[Event]], list[Event]]:
    """Group ``events`` into whole commands, and return the torn tail separately.

    Raises
    ------
    EventLogError
        On a gap in ``seq``, a command number out of order, or an unfinished command that
        another command follows (a torn write can only ever be the last one).
    """
    commands: list[list[Event]] = []
    current: list[Event] = []
    for index, event in enumerate(events):
        if event.seq != index:
            raise EventLogError(
                f"event #{event.seq} ({event.kind}) where #{index} was due; replay the log "
                "from its first event, in order, without gaps"
            )
        expected = commands[-1][0].cmd + 1 if commands else 0
        if current and event.cmd != current[0].cmd:
            raise EventLogError(
                f"event #{event.seq} starts command {event.cmd} but command {current[0].cmd} "
                "has no final event; the log is corrupt in its middle"
            )
        if not current and event.cmd != expected:
            raise EventLogError(
                f"event #{event.seq} belongs to command {event.cmd}, expected {expected}"
            )
        current.append(event)
        if event.last:
            commands.append(current)
            current = []
    return commands, current


class EventLog:
    """The in-memory, append-only list of events, persisted through an optional store.

    Parameters
    ----------
    store : SQLiteEventStore, optional
        Every committed command is written to it in one transaction first.
    """

    def __init__(self, store: SQLiteEventStore | None = None) -> None:
        self._events: list[Event] = []
        self._store = store

    @property
    def store(self) -> SQLiteEventStore | None:
        """The attached store, if any."""
        return self._store

    def attach(self, store: SQLiteEventStore) -> None:
        """Write future commands through to ``store``, which must already hold this log."""
        if store.next_seq != len(self._events):
            raise EventLogError(
                f"{store.path} holds {store.next_seq} events but the log has "
                f"{len(self._events)}; attach a store only to the log it was replayed from"
            )
        self._store = store

    def commit(self, events: Sequence[Event]) -> None:
        """Persist ``events`` (one command) in one transaction, then keep them in memory.

        Raises
        ------
        EventLogError
            If the store refuses the write; then nothing was written or kept.
        """
        if self._store is not None:
            self._store.append(events)
        self._events.extend(events)

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self._events)

    def __getitem__(self, index: int) -> Event:
        return self._events[index]

    def since(self, seq: int) -> list[Event]:
        """Events with ``seq >= seq``."""
        return self._events[seq:]


class SQLiteEventStore:
    """Append-only event table in SQLite (WAL journal, one transaction per command).

    UPDATE and DELETE are refused by triggers, so the table is append-only even to other
    writers. ``seq`` is the primary key and must continue the table without gaps.

    Parameters
    ----------
    path : str or Path
        Database file; created with its tables if absent.
    busy_timeout_ms : int
        How long a write waits for another writer's lock before it fails (5 s).
    """

    def __init__(self, path: str | Path, busy_timeout_ms: int = 5_000) -> None:
        self.path = Path(path)
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, timeout=busy_timeout_ms / 1000
        )
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._create()
            row = self._conn.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM events").fetchone()
        except sqlite3.Error as exc:
            self._conn.close()
            raise EventLogError(f"{self.path}: cannot open the event store: {exc}") from exc
        self._next_seq = int(row[0])

    def _create(self) -> None:
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master")}
        if "events" in tables and "meta" not in tables:
            raise EventLogError(
                f"{self.path} holds an event table of an older layout (no command "
                f"boundaries); replay it with the release that wrote it, or start a new store"
            )
        self._conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS events (
                seq INTEGER PRIMARY KEY,
                cmd INTEGER NOT NULL,
                last INTEGER NOT NULL,
                key TEXT,
                ts_ms INTEGER NOT NULL,
                kind TEXT NOT NULL,
                data TEXT NOT NULL
            );
            CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
            BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
            CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
            BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
            """
        )
        self._conn.execute(
            "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        version = self._conn.execute(
            "SELECT value FROM meta WHERE name = 'schema_version'"
        ).fetchone()[0]
        if int(version) != SCHEMA_VERSION:
            raise EventLogError(
                f"{self.path}: event store layout {version}, this release reads "
                f"{SCHEMA_VERSION}; use the matching release"
            )

    def append(self, events: Iterable[Event]) -> None:
        """Append events in one transaction; their ``seq`` must continue the table.

        Raises
        ------
        EventLogError
            If a ``seq`` does not continue the table, or SQLite refuses the write (a locked
            database, a full disk). Nothing is written then.
        """
        rows = []
        expected = self._next_seq
        for event in events:
            if event.seq != expected:
                raise EventLogError(
                    f"{self.path}: event seq {event.seq} does not continue the store "
                    f"(next is {expected}); append the log from its start into an empty store"
                )
            rows.append(
                (
                    event.seq,
                    event.cmd,
                    int(event.last),
                    event.key,
                    event.ts_ms,
                    event.kind,
                    event.to_json(),
                )
            )
            expected += 1
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            self._write(rows)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise EventLogError(
                f"{self.path}: append of {len(rows)} events (seq {self._next_seq}..) failed "
                f"and was rolled back: {exc}; nothing was applied, retry the command"
            ) from exc
        self._next_seq = expected

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert ``rows`` inside the open transaction (one statement per event)."""
        for row in rows:
            self._conn.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", row)

    @property
    def next_seq(self) -> int:
        """Sequence number the next appended event must carry."""
        return self._next_seq

    def load(self) -> list[Event]:
        """All events in ``seq`` order; raises :class:`EventLogError` on a gap."""
        events = []
        for seq, cmd, last, key, ts_ms, kind, data in self._conn.execute(
            "SELECT seq, cmd, last, key, ts_ms, kind, data FROM events ORDER BY seq"
        ):
            if seq != len(events):
                raise EventLogError(f"{self.path}: event seq gap at {len(events)} (found {seq})")
            events.append(Event(seq, ts_ms, kind, json.loads(data), cmd, bool(last), key))
        return events

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> SQLiteEventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
