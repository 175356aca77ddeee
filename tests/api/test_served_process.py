"""The real thing: ``dynamargin serve`` in a subprocess on a loopback port, and Chromium.

The server is started once per module on a free port, waited for with a deadline and
always terminated. The status page is rendered by headless Chromium: its DOM must show
every asset, and a PNG screenshot is written (``DYNAMARGIN_SCREENSHOT_DIR`` keeps it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.signing import verify_snapshot_bytes
from tests.api.api_seeding import ASSETS, seed_store

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
STARTUP_DEADLINE_S = 30.0
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--hide-scrollbars",
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of ``dynamargin serve --workers 1`` on a seeded work dir."""
    workdir = tmp_path_factory.mktemp("served")
    seed_store(workdir, ASSETS, batches=28).close()  # a week at 6-hour steps
    port = free_port()
    log = (workdir / "serve.log").open("w")
    process = subprocess.Popen(
        [
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
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "DYNAMARGIN_WORKDIR": str(workdir)},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while True:
            if process.poll() is not None:
                output = (workdir / "serve.log").read_text()
                pytest.fail(f"server exited with {process.returncode}: {output}")
            try:
                if httpx.get(base + "/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not up after {STARTUP_DEADLINE_S} s")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def test_real_server_serves_signed_snapshots_with_caching_and_gzip(server: str) -> None:
    with httpx.Client(base_url=server, timeout=5.0) as client:
        assert client.get("/readyz").json()["status"] == "ready"
        raw = client.get("/v1/risk/BTCUSDT", headers={"Accept-Encoding": "identity"})
        assert verify_snapshot_bytes(raw.content).ok
        packed = client.get("/v1/risk", headers={"Accept-Encoding": "gzip"})
        assert packed.headers["content-encoding"] == "gzip"
        assert len(packed.json()["snapshots"]) == len(ASSETS)
        etag = client.get("/v1/multipliers").headers["etag"]
        assert client.get("/v1/multipliers", headers={"If-None-Match": etag}).status_code == 304
        assert client.get("/v1/risk/NOPE").status_code == 404
        assert "dynamargin_http_requests_total" in client.get("/metrics").text


def test_status_page_shows_every_asset_with_a_sparkline(server: str) -> None:
    html = httpx.get(server + "/", timeout=5.0).text
    for asset in ASSETS:
        assert f'id="asset-{asset}"' in html
    assert html.count("<svg") == len(ASSETS)
    assert "dynamargin-vol-24h v3" in html
    assert "<script" not in html


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "headless_shell"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_headless_chromium_screenshot_shows_every_asset(server: str, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        message = "Chromium not installed (apt-get install -y chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    out_dir = Path(os.environ.get("DYNAMARGIN_SCREENSHOT_DIR", tmp_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    shot = out_dir / "status_page.png"
    common = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1280,520", server + "/"],
        check=True,
        capture_output=True,
        timeout=90,
    )
    dom = subprocess.run(
        [*common, "--dump-dom", server + "/"],
        check=True,
        capture_output=True,
        timeout=90,
        text=True,
    ).stdout
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000  # a rendered table, not a blank page
    for asset in ASSETS:
        assert f'id="asset-{asset}"' in dom
    assert dom.count("<polyline") == len(ASSETS)
