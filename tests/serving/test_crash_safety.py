"""A publisher killed with SIGKILL mid-batch leaves the store readable and whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from serving.keys import load_signing_keys
from serving.policy import PolicyBook, PolicyConfig
from serving.publishing import ProvenanceInfo, publish_batch
from serving.signing import SnapshotSigner, verify_snapshot
from serving.store import PublicationStore
from tests.serving import crash_publisher

CHILD = Path(__file__).with_name("crash_publisher.py")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
N_ASSETS = 60


def run_until_killed(url: str, workdir: Path, kill_after_rows: int) -> list[str]:
    """Start the child, SIGKILL it once it reports ``kill_after_rows`` rows of batch 2."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    child = subprocess.Popen(
        [sys.executable, str(CHILD), url, str(workdir), str(N_ASSETS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            lines.append(line.strip())
            if line.strip() == f"ROW {kill_after_rows}":
                # The child is inside the open transaction of batch 2: kill it there.
                child.send_signal(signal.SIGKILL)
                break
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if child.returncode != -signal.SIGKILL:
        pytest.fail(f"child exited {child.returncode} before the kill: {child.stderr.read()}")
    return lines


def test_sigkill_mid_batch_leaves_previous_batch_intact(store_url, tmp_path):
    kill_after_rows = N_ASSETS // 2
    lines = run_until_killed(store_url, tmp_path, kill_after_rows)
    assert "COMMITTED 1" in lines and "COMMITTED 2" not in lines
    assert lines[-1] == f"ROW {kill_after_rows}"  # the kill landed mid-transaction

    with PublicationStore(store_url) as store:
        (batch,) = store.batches()
        assert batch.n_snapshots == N_ASSETS
        latest = store.latest()
        assert len(latest) == N_ASSETS
        assert {p.update_id for p in latest.values()} == {1}
        assert all(p.batch_id == batch.batch_id for p in latest.values())
        assert all(verify_snapshot(p.snapshot).ok for p in latest.values())
        assert max(store.last_update_ids().values()) == 1
        assert len(store.policy_states()) == N_ASSETS

        # Not left locked either: a restarted publisher appends the next batch normally.
        assets = sorted(latest)
        publish_batch(
            crash_publisher.forecasts(assets, 48),
            {a: crash_publisher.LIQUIDITY for a in assets},
            PolicyBook.uniform(PolicyConfig(sigma_ref=0.03)),
            store,
            SnapshotSigner(load_signing_keys(tmp_path, environ={})),
            ProvenanceInfo(),
            crash_publisher.T0 + timedelta(hours=26),
        )
        assert len(store.batches()) == 2
        assert {p.update_id for p in store.latest().values()} == {2}
