"""Serve the work dir's publications on a loopback port and read one snapshot back.

The demo ends with this round trip so that "published" means what a consumer sees: a
real uvicorn server, a real HTTP request, and a signature verified on the bytes served.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from pipelines.errors import PipelineError
from serving.api import create_app
from serving.api_config import ApiConfig
from serving.signing import verify_snapshot_bytes
from serving.store import default_store_url


class ServeCheckError(PipelineError, RuntimeError):
    """The API did not come up, or served something a consumer could not verify."""


@dataclass(frozen=True)
class ServedSnapshot:
    """What one round trip through the HTTP API returned.

    Attributes
    ----------
    url
        The snapshot URL that was read.
    status_code
        HTTP status of that read.
    signature_ok
        Whether every signature on the served bytes verified.
    checks
        Per-signature results (e.g. ``{"ed25519": True, "eip712": True}``).
    multipliers
        The ``/v1/multipliers`` map: asset -> multiplier, status and expiry.
    ready
        The ``/readyz`` verdict: ``ready``, or why not (e.g. the snapshots' expiry).
    """

    url: str
    status_code: int
    signature_ok: bool
    checks: dict[str, bool]
    multipliers: dict[str, dict[str, object]]
    ready: str


def serve_and_read(workdir: Path, asset: str, timeout_s: float = 30.0) -> ServedSnapshot:
    """Start the API on a free loopback port, read ``asset``'s snapshot, stop the server.

    Parameters
    ----------
    workdir
        Work dir whose publication store and keys are served.
    asset
        Asset whose latest snapshot is fetched and verified.
    timeout_s
        Longest wait for the server to start.

    Returns
    -------
    ServedSnapshot
        The responses and the signature verdict.

    Raises
    ------
    ServeCheckError
        If the server does not start in time.
    """
    with running_api(workdir, timeout_s) as base:
        with httpx.Client(base_url=base, timeout=5.0) as client:
            ready = _readiness(client.get("/readyz"))
            multipliers = client.get("/v1/multipliers").json()
            response = client.get(f"/v1/risk/{asset}", headers={"Accept-Encoding": "identity"})
    verdict = verify_snapshot_bytes(response.content) if response.status_code == 200 else None
    return ServedSnapshot(
        url=f"{base}/v1/risk/{asset}",
        status_code=response.status_code,
        signature_ok=bool(verdict and verdict.ok),
        checks=dict(verdict.checks) if verdict else {},
        multipliers=multipliers.get("multipliers", multipliers),
        ready=str(ready),
    )


@contextlib.contextmanager
def running_api(
    workdir: Path, timeout_s: float = 30.0, store_url: str | None = None
) -> Iterator[str]:
    """The API on the work dir's store (or ``store_url``) on a free loopback port; yields its URL.

    Raises
    ------
    ServeCheckError
        If the server does not start in time.
    """
    port = _free_loopback_port()
    config = ApiConfig.from_workdir(
        Path(workdir), store_url=store_url or default_store_url(workdir)
    )
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="dynamargin-serve-check", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise ServeCheckError(f"the API did not start on 127.0.0.1:{port}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _readiness(response: httpx.Response) -> str:
    if response.status_code == 200:
        return "ready"
    checks = response.json().get("checks", {})
    reasons = sorted({str(reason) for reason in checks.get("assets", {}).values()})
    if checks.get("store") not in (None, "ok"):
        reasons.insert(0, f"store {checks['store']}")
    return f"not ready ({response.status_code}): " + ("; ".join(reasons) or "no detail")


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
