"""Crash tests of the event log: torn writes and failed writes, at every point.

Recorded fuzz sequences (seeds chosen for their liquidations: partial steps, full close-outs,
backstop transfers, ADL with socialized loss, reference fallbacks) are replayed two ways:

* **Truncation** at every event boundary inside every multi-event command: the recovered
  engine equals the engine after the last whole command (digest), all invariants hold, and
  a keeper can still liquidate everything liquidatable. Through a SQLite store, ``resume``
  closes the torn command with an ``abort`` and the rest of the sequence runs to the same
  final state.
* **A failed write at each append**: every command's first write fails inside its SQLite
  transaction; the engine, its log and the store are exactly as before, and the retried
  command (same idempotency key) succeeds.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from liquidation.engine import Engine
from liquidation.errors import EventLogError
from liquidation.events import Event, SQLiteEventStore, split_commands
from liquidation.fuzz import REFUSALS, Command, Driver
from liquidation.invariants import violations
from liquidation.state import apply_command, state_digest

SEEDS = (74, 70, 96)
STEPS = 250


@dataclass(frozen=True)
class Recording:
    """A fuzz sequence as run: its commands, the command number each produced (None if it
    was refused), and the log."""

    config: Any
    commands: list[Command]
    produced: list[int | None]
    events: list[Event]


def _record(seed: int, steps: int = STEPS) -> Recording:
    driver = Driver(seed)
    engine = driver.engine
    plan, commands, produced = driver.opening(), [], []
    while len(commands) < steps:
        if not plan:
            plan = driver.next_commands()
        command = plan.pop(0)
        commands.append(command)
        number = engine.state.n_commands
        try:
            command.apply(engine)
        except command.must_fail or REFUSALS:  # noqa: B030 (a tuple of classes)
            produced.append(None)
            continue
        produced.append(number if engine.state.n_commands > number else None)
        driver.note_success(command)
    return Recording(engine.config, commands, produced, list(engine.log))


@pytest.fixture(scope="module", params=SEEDS, ids=lambda s: f"seed{s}")
def recording(request: pytest.FixtureRequest) -> Recording:
    return _record(request.param)


def _liquidate_all(engine: Engine) -> None:
    """A keeper's pass on a recovered engine; it must work without any unexpected error."""
    engine.run_liquidations(keeper="recovery-keeper", ts=engine.state.clock_ms, exhaustive=True)


def test_truncation_inside_every_multi_event_command(recording: Recording) -> None:
    commands, torn = split_commands(recording.events)
    assert not torn
    assert any(e.kind == "liquidation" for e in recording.events), "a seed without liquidation"
    reference = Engine(recording.config)
    before: list[str] = []
    cuts = 0
    for command in commands:
        digest = reference.digest()
        if len(command) > 1:
            start = command[0].seq
            for k in range(1, len(command)):
                recovered = Engine.replay(recording.events[: start + k], recording.config)
                assert recovered.digest() == digest, f"cut at #{start + k}"
                assert [e.seq for e in recovered.torn_tail] == list(range(start, start + k))
                assert violations(recovered) == [], f"cut at #{start + k}"
                _liquidate_all(recovered)
                assert violations(recovered) == [], f"after liquidating, cut at #{start + k}"
                cuts += 1
        before.append(digest)
        apply_command(reference.state, command)
    assert cuts > 50


def test_torn_store_resumes_with_an_abort_and_reaches_the_same_state(
    recording: Recording, tmp_path: Path
) -> None:
    config = recording.config
    final = state_digest(Engine.replay(recording.events, config).state, counters=False)
    commands = split_commands(recording.events)[0]
    chosen = [c for c in commands if any(e.kind == "liquidation" for e in c)][:3]
    chosen += [c for c in commands if len(c) > 2 and c not in chosen][:2]
    for number, command in enumerate(chosen):
        cut = command[0].seq + len(command) // 2
        path = tmp_path / f"torn{number}.sqlite"
        with SQLiteEventStore(path) as store:
            store.append(recording.events[:cut])
        with SQLiteEventStore(path) as store:
            resumed = Engine.resume(store, config)
            assert resumed.log[-1].kind == "abort" and not resumed.torn_tail
            assert violations(resumed) == []
            # The torn command never happened: the caller runs it again, and the rest.
            first = recording.produced.index(command[0].cmd)
            for later in recording.commands[first:]:
                try:
                    later.apply(resumed)
                except later.must_fail or REFUSALS:  # noqa: B030 (a tuple of classes)
                    continue
        assert state_digest(resumed.state, counters=False) == final
        assert Engine.from_store(path, config).digest() == resumed.digest()


class FaultyStore(SQLiteEventStore):
    """A store whose next write fails inside its transaction, after the first row."""

    fail_next = False

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        if self.fail_next:
            self.fail_next = False
            super()._write(rows[:1])
            raise sqlite3.OperationalError("database is locked (injected)")
        super()._write(rows)


def test_failed_write_at_each_append_changes_nothing(recording: Recording, tmp_path: Path) -> None:
    with FaultyStore(tmp_path / "faulty.sqlite") as store:
        engine = Engine(recording.config, store=store)
        failures = 0
        for command in recording.commands:
            digest, size = engine.digest(), len(engine.log)
            store.fail_next = True
            try:
                command.apply(engine)
            except EventLogError as exc:
                assert "locked (injected)" in str(exc)
                failures += 1
                assert (engine.digest(), len(engine.log)) == (digest, size)
                assert len(store.load()) == size and store.next_seq == size
                assert violations(engine) == []
            except command.must_fail or REFUSALS:  # noqa: B030 (a tuple of classes)
                assert store.fail_next, "a refused command wrote to the store"
                continue
            else:
                # Only a command with nothing to record (a no-op) succeeds without a write.
                assert store.fail_next and len(engine.log) == size, f"{command}"
                continue
            command.apply(engine)  # the retry, same arguments and idempotency key
        assert failures > 100
        assert [e.data for e in engine.log] == [e.data for e in recording.events]
        assert Engine.from_store(store.path, recording.config).digest() == engine.digest()
