"""``dynamargin emulate`` and ``dynamargin ingest live`` as a user runs them: real processes.

Both are long-running services: they must stop cleanly on SIGTERM and SIGINT, say so in
their log, and leave no process behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from features.live.freshness import freshness_path, read_freshness
from features.store import MarketStore

pytestmark = pytest.mark.timeout(180)

DYNAMARGIN = str(Path(sys.executable).with_name("dynamargin"))
START = "2024-01-10T00:00:00Z"


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    return env


@contextmanager
def _service(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [DYNAMARGIN, *args], stdout=out, stderr=subprocess.STDOUT, env=_environment()
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)


def _wait(  # type: ignore[no-untyped-def]
    condition, timeout: float, what: str, log: Path, process: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            pytest.fail(f"exited ({process.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes], sig: signal.Signals, log: Path) -> None:
    """Send ``sig``; the service and every process it started must be gone within 30 s."""
    family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    process.send_signal(sig)
    assert process.wait(30) == 0, log.read_text()[-3000:]
    _, alive = psutil.wait_procs(family, timeout=10)
    assert not alive, f"left behind: {[p.pid for p in alive]}"


def test_emulate_and_ingest_live_run_together_and_stop_cleanly(tmp_path: Path) -> None:
    url_file = tmp_path / "url"
    emulate_log, ingest_log = tmp_path / "emulate.log", tmp_path / "ingest.log"
    emulate = [
        "--workdir", str(tmp_path / "emulator"), "emulate", "--synthetic",
        "--synthetic-assets", "2", "--start", START, "--history-days", "1", "--days", "3",
        "--hour-every", "0.1", "--port", "0", "--url-file", str(url_file),
    ]  # fmt: skip
    with _service(emulate, emulate_log) as emulator:
        _wait(url_file.exists, 60, "the emulator's URL", emulate_log, emulator)
        url = url_file.read_text().strip()
        workdir = tmp_path / "workdir"
        ingest = [
            "--workdir", str(workdir), "ingest", "live", "--emulator", url,
            "--assets", "BTCUSDT,ETHUSDT", "--since", START, "--repoll", "0.05",
            "--max-sleep", "0.3", "--metrics-port", "0",
        ]  # fmt: skip
        with _service(ingest, ingest_log) as runner:
            status = freshness_path(workdir / "store")

            def some_hours_in() -> bool:
                records = read_freshness(status) if status.exists() else {}
                return len(records) == 2 and all(
                    r.status == "ok"
                    and r.data_through is not None
                    and r.data_through.isoformat() >= "2024-01-10T03:00:00+00:00"
                    for r in records.values()
                )

            _wait(some_hours_in, 90, "three ingested hours", ingest_log, runner)
            _stop(runner, signal.SIGTERM, ingest_log)
        _stop(emulator, signal.SIGINT, emulate_log)
    ingest_text = ingest_log.read_text()
    assert "ingest-live: SIGTERM received; shutting down" in ingest_text
    assert "ingest-live: stopped" in ingest_text
    assert re.search(r"BTCUSDT: ok; data through 2024-01-1\d \d\d:00", ingest_text)
    port = re.search(r"metrics on http://127.0.0.1:(\d+)/metrics", ingest_text)
    assert port is not None and int(port.group(1)) > 0
    emulate_text = emulate_log.read_text()
    assert "emulate: SIGINT received; shutting down" in emulate_text
    assert "emulate: stopped" in emulate_text
    bars = MarketStore(workdir / "store").read_bars("1h", ["BTCUSDT", "ETHUSDT"])
    assert bars.groupby("asset").size().min() >= 3
    assert bars["ts"].min().isoformat() == "2024-01-10T00:00:00+00:00"


def test_emulate_stops_on_sigterm_while_a_client_waits_on_a_timeout_fault(tmp_path: Path) -> None:
    url_file = tmp_path / "url"
    log = tmp_path / "emulate.log"
    args = [
        "--workdir", str(tmp_path / "wd"), "emulate", "--synthetic", "--synthetic-assets", "1",
        "--start", START, "--history-days", "1", "--days", "1", "--paused", "--port", "0",
        "--url-file", str(url_file), "--fault", '{"kind": "timeout", "delay": 60}',
    ]  # fmt: skip
    with _service(args, log) as emulator:
        _wait(url_file.exists, 60, "the emulator's URL", log, emulator)
        url = url_file.read_text().strip()
        client = subprocess.Popen(
            [sys.executable, "-c", f"import httpx; httpx.get('{url}/api/v3/time', timeout=90)"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait(
                lambda: "fault #1 timeout on GET /api/v3/time" in log.read_text(),
                60,
                "the request to be held by the fault",
                log,
                emulator,
            )
            started = time.monotonic()
            _stop(emulator, signal.SIGTERM, log)
            assert time.monotonic() - started < 20  # shut down, not after the 60 s delay
        finally:
            client.kill()
            client.wait(10)
    text = log.read_text()
    assert "emulator: fault #1 timeout on GET /api/v3/time" in text
    assert "emulate: SIGTERM received; shutting down" in text and "emulate: stopped" in text


def test_ingest_live_for_one_cycle_reports_and_exits(tmp_path: Path) -> None:
    url_file = tmp_path / "url"
    emulate_log = tmp_path / "emulate.log"
    emulate = [
        "--workdir", str(tmp_path / "emulator"), "emulate", "--synthetic",
        "--synthetic-assets", "1", "--start", "2024-01-10T05:00:05Z", "--history-days", "1",
        "--days", "1", "--paused", "--port", "0", "--url-file", str(url_file),
    ]  # fmt: skip
    with _service(emulate, emulate_log) as emulator:
        _wait(url_file.exists, 60, "the emulator's URL", emulate_log, emulator)
        url = url_file.read_text().strip()
        once = [
            DYNAMARGIN, "--workdir", str(tmp_path / "wd"), "ingest", "live",
            "--emulator", url, "--assets", "BTCUSDT", "--venue", "none",
            "--dump-url", "none", "--since", START, "--cycles", "1",
        ]  # fmt: skip
        done = subprocess.run(
            once,
            capture_output=True,
            text=True,
            env=_environment(),
            timeout=120,
        )
        _stop(emulator, signal.SIGTERM, emulate_log)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "BTCUSDT: ok; data through 2024-01-10 05:00" in done.stdout
    assert "ingest-live: stopped" in done.stderr
    bars = MarketStore(tmp_path / "wd" / "store").read_bars("1h", ["BTCUSDT"])
    assert len(bars) == 5


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False


def test_live_publishes_hour_by_hour_then_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    url_file = tmp_path / "url"
    emulate_log, live_log = tmp_path / "emulate.log", tmp_path / "live.log"
    emulate = [
        "--workdir", str(tmp_path / "emulator"), "emulate", "--synthetic",
        "--synthetic-assets", "2", "--start", START, "--history-days", "20", "--days", "2",
        "--hour-every", "4.0", "--port", "0", "--url-file", str(url_file),
    ]  # fmt: skip
    with _service(emulate, emulate_log) as emulator:
        _wait(url_file.exists, 60, "the emulator's URL", emulate_log, emulator)
        url = url_file.read_text().strip()
        workdir = tmp_path / "workdir"
        live = [
            "--workdir", str(workdir), "live", "--emulator", url, "--assets",
            "BTCUSDT,ETHUSDT", "--since", "2023-12-21T00:00:00Z", "--model", "baseline:ewma",
            "--history-days", "8", "--calibration-days", "10", "--repoll", "0.1",
            "--max-sleep", "0.3", "--dump-url", "none",
        ]  # fmt: skip
        status = workdir / "live" / "status.json"
        with _service(live, live_log) as runner:

            def two_batches() -> bool:
                import json

                return status.exists() and json.loads(status.read_text())["batch_id"] >= 2

            _wait(two_batches, 150, "two live batches", live_log, runner)
            _stop(runner, signal.SIGTERM, live_log)
        _stop(emulator, signal.SIGTERM, emulate_log)
    text = live_log.read_text()
    assert "live: SIGTERM received; shutting down" in text
    assert "live: stopped" in text
    assert re.search(r"batch 2 bar 2024-01-\d\d \d\d:00 BTCUSDT ok m=", text), text[-3000:]
    assert "published in" in text


def test_serve_stops_every_worker_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "serve.log"
    args = ["--workdir", str(tmp_path / "wd"), "serve", "--port", str(port), "--workers", "2"]
    with _service(args, log) as server:
        _wait(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), 180, "the API", log, server)
        workers = psutil.Process(server.pid).children(recursive=True)
        assert len(workers) >= 2
        _stop(server, signal.SIGTERM, log)
    text = log.read_text()
    # With several workers uvicorn's supervisor takes the signal and says so itself.
    assert "serve: SIGTERM received; shutting down" in text or "Received SIGTERM" in text
    assert "serve: stopped" in text


def test_ui_mlflow_stops_its_mlflow_server_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "mlflow.log"
    args = ["--workdir", str(tmp_path / "wd"), "ui", "mlflow", "--port", str(port)]
    with _service(args, log) as ui:
        _wait(lambda: _answers(f"http://127.0.0.1:{port}/health"), 150, "MLflow", log, ui)
        assert psutil.Process(ui.pid).children(recursive=True)  # the MLflow server
        _stop(ui, signal.SIGTERM, log)
    text = log.read_text()
    assert "ui-mlflow: SIGTERM received; shutting down" in text
    assert "ui-mlflow: stopped" in text


def test_live_attach_venue_consumes_every_batch_served_by_a_separate_serve(
    tmp_path: Path,
) -> None:
    """emulate -> live (publishes) -> serve (another process) -> the venue inside live."""
    url_file = tmp_path / "url"
    emulate_log, live_log, serve_log = (tmp_path / f"{n}.log" for n in ("emulate", "live", "serve"))
    emulate = [
        "--workdir", str(tmp_path / "emulator"), "emulate", "--synthetic",
        "--synthetic-assets", "2", "--start", START, "--history-days", "20", "--days", "2",
        "--hour-every", "4.0", "--port", "0", "--url-file", str(url_file),
    ]  # fmt: skip
    workdir = tmp_path / "workdir"
    port = _free_port()
    api = f"http://127.0.0.1:{port}"
    with _service(emulate, emulate_log) as emulator:
        _wait(url_file.exists, 60, "the emulator's URL", emulate_log, emulator)
        url = url_file.read_text().strip()
        live = [
            "--workdir", str(workdir), "live", "--emulator", url, "--assets",
            "BTCUSDT,ETHUSDT", "--since", "2023-12-21T00:00:00Z", "--model", "baseline:ewma",
            "--history-days", "8", "--calibration-days", "10", "--repoll", "0.1",
            "--max-sleep", "0.3", "--dump-url", "none", "--attach-venue", "--venue-api", api,
            "--venue-status-port", "0", "--demo-book",
        ]  # fmt: skip
        serve = [
            "--workdir", str(workdir), "serve", "--port", str(port), "--workers", "1",
            "--refresh", "0",
        ]  # fmt: skip
        status = workdir / "live" / "status.json"
        with _service(serve, serve_log) as server, _service(live, live_log) as runner:
            _wait(lambda: _answers(f"{api}/healthz"), 60, "serve", serve_log, server)

            def venue_applied_two_batches() -> bool:
                text = live_log.read_text()
                return (
                    len(re.findall(r"venue: batch \d+: [1-9]\d* snapshot\(s\) applied", text)) >= 2
                )

            _wait(
                venue_applied_two_batches, 150, "the venue applying two batches", live_log, runner
            )
            venue_port = re.search(
                r"venue: status at http://127.0.0.1:(\d+)/status", live_log.read_text()
            )
            assert venue_port is not None
            import httpx

            venue_status = httpx.get(
                f"http://127.0.0.1:{venue_port.group(1)}/status", timeout=5
            ).json()
            _stop(runner, signal.SIGTERM, live_log)
            _stop(server, signal.SIGTERM, serve_log)
        _stop(emulator, signal.SIGTERM, emulate_log)
    text = live_log.read_text()
    assert f"live: the venue consumes every batch from {api}" in text
    assert "live: stopped" in text
    # The venue applied what live published: the update ids it holds are the served ones.
    import json

    published = {a["asset"]: a["update_id"] for a in json.loads(status.read_text())["assets"]}
    in_force = venue_status["assets"]
    assert set(in_force) == set(published)
    for asset, row in in_force.items():
        assert row["in_force"] == "snapshot", row
        assert 0 < row["update_id"] <= published[asset]
    assert venue_status["initial_margin_usd"] > 0  # the demo book, seeded at the batch's prices
    assert (workdir / "venue" / "events.db").is_file()
