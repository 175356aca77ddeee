"""Event types, the append-only in-memory log and its SQLite persistence.

An event is ``(seq, ts_ms, kind, data)``: ``data`` holds plain JSON values (ints for money,
floats for rates, strings, lists). The engine state is a fold of events over
:func:`liquidation.state.apply_event`; events carry every computed amount, so the fold never
re-decides anything and a replay is bit-for-bit identical.

JSON keeps Python ints exact at any size and floats exact through ``repr``, so the SQLite
round trip is lossless.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from liquidation.errors import EventLogError

#: Required data fields of each event kind.
EVENT_FIELDS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "clock": frozenset(),
        "deposit": frozenset({"account", "amount"}),
        "withdraw": frozenset({"account", "amount"}),
        "fund_deposit": frozenset({"amount"}),
        "price": frozenset(
            {"asset", "price", "confidence", "reference", "twap", "accepted", "reason"}
        ),
        "guard": frozenset({"asset", "guarded", "reason"}),
        "snapshot": frozenset({"asset", "params", "ramp_from", "ramp_start"}),
        "margin_mode": frozenset({"account", "portfolio"}),
        "transfer": frozenset({"account", "asset", "amount"}),
        "fill": frozenset(
            {
                "bucket",
                "asset",
                "dq",
                "price",
                "fee",
                "fee_addon",
                "realized_pnl",
                "cost_delta",
                "risk_since",
                "reason",
            }
        ),
        "funding": frozenset({"asset", "rate", "price", "payments"}),
        "penalty": frozenset({"bucket", "keeper", "keeper_amount", "fund_amount"}),
        "fund_cover": frozenset({"bucket", "amount"}),
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
    }
)


@dataclass(frozen=True)
class Event:
    """One state change. ``seq`` is the 0-based position in the log."""

    seq: int
    ts_ms: int
    kind: str
    data: Mapping[str, Any]

    def __post_init__(self) -> None:
        required = EVENT_FIELDS.get(self.kind)
        if required is None:
            raise EventLogError(f"event #{self.seq}: unknown kind {self.kind!r}")
        missing = required - set(self.data)
        if missing:
            raise EventLogError(
                f"event #{self.seq} ({self.kind}, ts={self.ts_ms}): missing {sorted(missing)}"
            )

    def to_json(self) -> str:
        """Canonical JSON of ``data`` (sorted keys, no spaces)."""
        return json.dumps(self.data, sort_keys=True, separators=(",", ":"))


class EventLog:
    """Append-only, in-memory event log with an optional persistent sink.

    Parameters
    ----------
    store : SQLiteEventStore, optional
        Every appended event is written through to it (one transaction per append).
    """

    def __init__(self, store: SQLiteEventStore | None = None) -> None:
        self._events: list[Event] = []
        self._store = store

    def attach(self, store: SQLiteEventStore) -> None:
        """Write future appends through to ``store``, which must already hold this log."""
        if store.next_seq != len(self._events):
            raise EventLogError(
                f"{store.path} holds {store.next_seq} events but the log has "
                f"{len(self._events)}; attach a store only to the log it was replayed from"
            )
        self._store = store

    def append(self, ts_ms: int, kind: str, data: Mapping[str, Any]) -> Event:
        """Create, persist and return the next event."""
        if self._events and ts_ms < self._events[-1].ts_ms:
            raise EventLogError(
                f"event {kind} at ts={ts_ms} is older than the log head "
                f"ts={self._events[-1].ts_ms}; the log is append-only in time"
            )
        event = Event(len(self._events), ts_ms, kind, data)
        if self._store is not None:
            self._store.append([event])
        self._events.append(event)
        return event

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
    """Append-only event table in SQLite (WAL journal, one transaction per append).

    UPDATE and DELETE are refused by triggers, so the table is append-only even to other
    writers. ``seq`` is the primary key and must continue the table without gaps.

    Parameters
    ----------
    path : str or Path
        Database file; created with its table if absent.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS events (
                seq INTEGER PRIMARY KEY,
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
        row = self._conn.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM events").fetchone()
        self._next_seq = int(row[0])

    def append(self, events: Iterable[Event]) -> None:
        """Append events in one transaction; their ``seq`` must continue the table."""
        rows = []
        expected = self._next_seq
        for event in events:
            if event.seq != expected:
                raise EventLogError(
                    f"{self.path}: event seq {event.seq} does not continue the store "
                    f"(next is {expected}); append the log from its start into an empty store"
                )
            rows.append((event.seq, event.ts_ms, event.kind, event.to_json()))
            expected += 1
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", rows)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._conn.execute("ROLLBACK")
            raise EventLogError(f"{self.path}: append of {len(rows)} events failed: {exc}") from exc
        self._next_seq = expected

    @property
    def next_seq(self) -> int:
        """Sequence number the next appended event must carry."""
        return self._next_seq

    def load(self) -> list[Event]:
        """All events in ``seq`` order; raises :class:`EventLogError` on a gap."""
        events = []
        for seq, ts_ms, kind, data in self._conn.execute(
            "SELECT seq, ts_ms, kind, data FROM events ORDER BY seq"
        ):
            if seq != len(events):
                raise EventLogError(f"{self.path}: event seq gap at {len(events)} (found {seq})")
            events.append(Event(seq, ts_ms, kind, json.loads(data)))
        return events

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> SQLiteEventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
