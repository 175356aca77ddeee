"""The demo's last step: serve published snapshots over real HTTP and verify them."""

from __future__ import annotations

from pathlib import Path

from pipelines.served_snapshot import serve_and_read
from tests.api.api_seeding import ASSETS, seed_store


def test_served_snapshot_verifies_over_a_real_loopback_server(tmp_path: Path) -> None:
    workdir = tmp_path / "workdir"
    seed_store(workdir, ASSETS, batches=2)

    served = serve_and_read(workdir, ASSETS[0])

    assert served.status_code == 200
    assert served.signature_ok
    assert served.checks["ed25519"] and served.checks["eip712"]
    assert set(served.multipliers) == set(ASSETS)
    assert served.ready == "ready"
