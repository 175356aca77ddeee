"""``dynamargin venue`` as deployed: its status endpoint over HTTP, and SIGTERM."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import httpx

from tests.api.live_server import LiveServer
from tests.venue.conftest import ASSETS, World
from tests.venue.test_restart import venue_command


def test_status_endpoint_shows_the_book_and_sigterm_stops_the_venue_cleanly(
    served: tuple[World, LiveServer], tmp_path: Path
) -> None:
    world, server = served
    start = world.end - timedelta(hours=6)
    command = venue_command(world.workdir, server.base, tmp_path / "venue", start.isoformat())
    process = subprocess.Popen(
        [*command, "--poll-interval", "0.3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        url, status = _wait_for_status(process)
        metrics = httpx.get(url + "/metrics", timeout=5).text
        assert httpx.post(url + "/status", timeout=5).status_code == 405
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-2000:]
    assert "venue: SIGTERM received; shutting down" in stderr and "venue: stopped" in stderr
    assert set(status["assets"]) == set(ASSETS)
    assert status["insurance_fund_usd"] == 1_000_000 and status["initial_margin_usd"] > 0
    assert status["last_poll"]["result"] in {"new", "not_modified"}
    assert status["trusted_keys"]
    # It starts 6 h before the publication: the batch is refused as not yet published.
    assert set(status["refusals"]) == {"not_yet_published"}
    assert "dynamargin_venue_initial_margin_usd" in metrics
    assert "dynamargin_venue_snapshot_lag_seconds" in metrics
    rules = json.loads((tmp_path / "venue" / "venue-rules.json").read_text())
    assert rules["circuit_breaker"] is not None  # on by default, recorded in the venue's rules


def test_no_circuit_breaker_is_recorded_in_the_venues_rules(
    served: tuple[World, LiveServer], tmp_path: Path
) -> None:
    world, server = served
    start = world.end - timedelta(hours=2)
    command = venue_command(world.workdir, server.base, tmp_path / "venue", start.isoformat())
    done = subprocess.run(
        [*command, "--no-circuit-breaker", "--max-ticks", "1"], capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rules = json.loads((tmp_path / "venue" / "venue-rules.json").read_text())
    assert rules["circuit_breaker"] is None


def _wait_for_status(process: subprocess.Popen[str]) -> tuple[str, dict]:
    """The status URL from the venue's first log line, then a status with the demo book."""
    assert process.stderr is not None
    deadline = time.monotonic() + 120
    url = None
    while url is None:
        line = process.stderr.readline()
        assert line or process.poll() is None, "the venue exited before it served its status"
        found = re.search(r"status at (http://\S+)/status", line)
        url = found.group(1) if found else None
        assert time.monotonic() < deadline
    while True:
        status = httpx.get(url + "/status", timeout=5).json()
        if status["initial_margin_usd"] > 0 and status["last_poll"]:
            return url, status
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
