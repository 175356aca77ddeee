"""The real thing: ``dynamargin serve`` in a subprocess on a loopback port, and Chromium.

The server is started once per module on a free port, waited for with a deadline and
always terminated. The status page is rendered by headless Chromium: its DOM must show
every asset, and a PNG screenshot is written (``DYNAMARGIN_SCREENSHOT_DIR`` keeps it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving.signing import verify_snapshot_bytes
from tests.api.api_seeding import ASSETS, seed_store
from tests.api.live_server import live_server

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--hide-scrollbars",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of ``dynamargin serve --workers 1`` on a seeded work dir."""
    workdir = tmp_path_factory.mktemp("served")
    seed_store(workdir, ASSETS, batches=28).close()  # a week at 6-hour steps
    with live_server(workdir) as running:
        yield running.base


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
