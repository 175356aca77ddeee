"""``dynamargin serve`` as deployed: its settings, its limits and its shutdown.

Each test runs the real command in a subprocess (a crash there must not take the test
runner with it) on a free loopback port.
"""

from __future__ import annotations

import resource
import socket
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.api.api_seeding import seed_store
from tests.api.live_server import live_server, serve_command, uvicorn_command
from tests.serving.security.conftest import Seeded


def test_serve_honours_the_store_url_body_limit_and_interval_from_the_environment(
    seeded: Seeded, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other_url = f"sqlite:///{elsewhere / 'other.db'}"
    seed_store(seeded.workdir, ("SOLUSDT",), batches=1, url=other_url).close()
    env = {
        "DYNAMARGIN_PUBLICATIONS_URL": other_url,
        "DYNAMARGIN_API_MAX_BODY_BYTES": "300",
        "DYNAMARGIN_API_UPDATE_INTERVAL_S": "120",
    }
    with (
        live_server(seeded.workdir, env=env) as server,
        httpx.Client(base_url=server.base, timeout=5) as client,
    ):
        assets = [s["asset"] for s in client.get("/v1/risk").json()["snapshots"]]
        cache = client.get("/v1/risk/SOLUSDT").headers["cache-control"]
        big = client.post(
            "/v1/admin/assets/SOLUSDT/halt",
            json={"reason": "x" * 400},
            headers=seeded.auth,
        )
    assert assets == ["SOLUSDT"]
    max_age = int(cache.split("max-age=")[1].split(",")[0])
    assert max_age <= 120
    assert big.status_code == 413


@pytest.mark.parametrize("launcher", [serve_command, uvicorn_command], ids=["serve", "uvicorn"])
def test_deeply_nested_admin_json_is_refused_without_killing_the_server(
    seeded: Seeded, launcher
) -> None:
    env = {"DYNAMARGIN_API_MAX_BODY_BYTES": str(1_000_000)}
    with (
        live_server(seeded.workdir, env=env, command=launcher) as server,
        httpx.Client(base_url=server.base, timeout=10) as client,
    ):
        for headers in ({}, seeded.auth):
            response = client.post(
                "/v1/admin/assets/BTCUSDT/halt",
                content=b"[" * 80_000,
                headers={"Content-Type": "application/json", **headers},
            )
            assert 400 <= response.status_code < 500, response.text
            assert response.headers["content-type"] == "application/problem+json"
        assert client.get("/healthz").status_code == 200
        assert server.process.poll() is None


def _idle_and_partial_connections(port: int, count: int) -> list[socket.socket]:
    sockets = []
    for k in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if k % 3 == 1:
            sock.sendall(b"GET /v1/risk HTTP/1.1\r\nHost: x\r\n")  # headers never end
        elif k % 3 == 2:
            sock.sendall(
                b"POST /v1/admin/assets/BTCUSDT/halt HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )  # body never ends
        sockets.append(sock)
    return sockets


def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    sock.settimeout(within_s)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def _limit_open_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))


def test_idle_and_slow_connections_are_closed_and_cannot_lock_clients_out(
    seeded: Seeded,
) -> None:
    extra = ["--header-timeout", "1", "--body-timeout", "1", "--max-connections", "40"]
    with live_server(seeded.workdir, extra=extra, preexec_fn=_limit_open_files) as server:
        hogs = _idle_and_partial_connections(server.port, 120)
        try:
            closed = [_closed_by_server(sock, within_s=8) for sock in hogs]
        finally:
            for sock in hogs:
                sock.close()
        assert all(closed), f"{closed.count(False)} of {len(hogs)} connections left open"
        with httpx.Client(base_url=server.base, timeout=5) as client:
            assert client.get("/v1/risk/BTCUSDT").status_code == 200


def test_sigterm_stops_serve_and_every_worker(seeded: Seeded) -> None:
    with live_server(seeded.workdir, extra=["--workers", "2"]) as server:
        parent = psutil.Process(server.process.pid)
        deadline = time.monotonic() + 30
        while len(parent.children(recursive=True)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        family = [parent, *parent.children(recursive=True)]
        assert len(family) >= 3, "expected the manager and two workers"
        server.process.terminate()
        server.process.wait(timeout=30)
        _gone, alive = psutil.wait_procs(family, timeout=15)
        assert alive == [], f"left behind: {[p.pid for p in alive]}"
        assert "stopped" in server.output()
