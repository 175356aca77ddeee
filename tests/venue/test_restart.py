"""``dynamargin venue`` killed with SIGKILL mid-tick restarts into the identical state.

Two venues run the same rehearsal (the same served batch, the same stored bars, the demo
book): one uninterrupted, one frozen (SIGSTOP) until its log, two thirds through, ends
between two prints of one tick, then killed with SIGKILL and restarted.
Each finished log, replayed by a fresh engine, must give the same state digest, and the
restarted process must have reported exactly that state.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from liquidation.engine import Engine
from tests.api.live_server import live_server
from tests.venue.conftest import ASSETS, make_world
from venue.settings import VenueSettings


def venue_command(workdir: Path, api: str, state_dir: Path, start: str) -> list[str]:
    return [
        sys.executable, "-c", "from pipelines.cli import app; app()", "--workdir", str(workdir),
        "venue", "--api", api, "--clock", "bars", "--start", start, "--demo-book", "--port", "0",
        "--state-dir", str(state_dir),
    ]  # fmt: skip


def events_in(log: Path) -> int:
    if not log.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{log}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    except sqlite3.OperationalError:  # the table is not created yet
        return 0


def mid_tick(log: Path) -> bool:
    """True if the last whole command is a tick's first or second print (more are due)."""
    with sqlite3.connect(f"file:{log}?mode=ro", uri=True, timeout=1) as conn:
        row = conn.execute(
            "SELECT key FROM events WHERE cmd = (SELECT max(cmd) FROM events) ORDER BY seq LIMIT 1"
        ).fetchone()
    key = row[0] if row else None
    return bool(key) and key.startswith(tuple(f"price:{a}:" for a in ASSETS[:-1]))


def replayed_digest(state_dir: Path) -> tuple[str, int]:
    config = VenueSettings(ASSETS, state_dir).engine_config()
    engine = Engine.from_store(state_dir / "events.db", config)
    liquidations = sum(1 for e in engine.log if e.kind == "liquidation")
    return engine.digest(), liquidations


def test_sigkill_mid_tick_then_restart_replays_to_the_same_state(tmp_path: Path) -> None:
    world = make_world(tmp_path / "work", days=8)
    start = world.end - timedelta(days=6)
    world.publish(start)
    with live_server(world.workdir) as server:
        whole = tmp_path / "uninterrupted"
        done = subprocess.run(
            venue_command(world.workdir, server.base, whole, start.isoformat()),
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        total = events_in(whole / "events.db")
        digest, liquidations = replayed_digest(whole)
        assert liquidations > 0, "the rehearsal should exercise the waterfall"

        killed = tmp_path / "killed"
        log = killed / "events.db"
        command = venue_command(world.workdir, server.base, killed, start.isoformat())
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        threshold = total * 2 // 3  # past the demo book, among the ticks and liquidations
        deadline = time.monotonic() + 300
        while True:  # freeze it, look, and kill it only between two prints of one tick
            assert process.poll() is None, "the venue ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.003)
            process.send_signal(signal.SIGSTOP)
            if events_in(log) >= threshold and mid_tick(log):
                break
            process.send_signal(signal.SIGCONT)
        process.kill()
        assert process.wait(timeout=30) == -9
        at_kill = events_in(log)
        assert threshold <= at_kill < total

        restarted = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert f"replayed {at_kill} events" in restarted.stderr
    assert replayed_digest(killed) == (digest, liquidations)
    assert f"state {digest}" in restarted.stderr
    assert events_in(log) == total
