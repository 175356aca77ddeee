"""``dynamargin serve`` in a subprocess on a free loopback port, always stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

STARTUP_DEADLINE_S = 30.0


def free_port() -> int:
    """A TCP port nobody listens on right now (bound to port 0 and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class LiveServer:
    """A running server: its base URL, port, process and log file."""

    base: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def uvicorn_command(workdir: Path, port: int, extra: Sequence[str] = ()) -> list[str]:
    """The app factory under plain uvicorn, configured only by ``DYNAMARGIN_*`` variables."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "serving.api:app_from_env",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra,
    ]


def serve_command(workdir: Path, port: int, extra: Sequence[str] = ()) -> list[str]:
    """``dynamargin serve`` on ``port``."""
    return [
        sys.executable,
        "-c",
        "from pipelines.cli import app; app()",
        "--workdir",
        str(workdir),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra,
    ]


@contextlib.contextmanager
def live_server(
    workdir: Path,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    command: Callable[[Path, int, Sequence[str]], list[str]] = serve_command,
) -> Iterator[LiveServer]:
    """Start ``dynamargin serve`` and wait for ``/healthz``; terminate it on exit."""
    port = free_port()
    log_path = workdir / f"serve-{port}.log"
    environment = {**os.environ, "DYNAMARGIN_WORKDIR": str(workdir), **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command(workdir, port, extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            preexec_fn=preexec_fn,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", port, process, log_path)
    try:
        wait_until_up(server)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


def wait_until_up(server: LiveServer) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while True:
        if server.process.poll() is not None:
            raise AssertionError(
                f"server exited with {server.process.returncode}: {server.output()}"
            )
        try:
            if httpx.get(server.base + "/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"server not up after {STARTUP_DEADLINE_S} s: {server.output()}")
        time.sleep(0.2)
