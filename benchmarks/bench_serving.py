"""Benchmark: one signed, atomically stored publication batch against a plain baseline.

The full path per asset is the integrity check of the stored heads + policy step + VaR/ES
+ canonical JSON + Ed25519 + EIP-712 + append-only, hash-chained SQLite insert (WAL,
synchronous=FULL, triggers) + the signed checkpoint. The baseline is what an unsigned
publisher costs: ``json.dumps`` of the same snapshots written in one plain SQLite
transaction without triggers. The ratio says what signing and the database guarantees
cost. Also measured: snapshot verification; what the API pays per view reload to verify
the newest rows and every chain head against the signed checkpoint, against reading the
newest rows alone; the offline audit; and the policy replay of one asset-year.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd

from serving.keys import load_signing_keys
from serving.log_integrity import LogVerifier
from serving.policy import PolicyBook, PolicyConfig
from serving.policy_replay import replay_policy
from serving.publishing import ProvenanceInfo, publish_batch
from serving.signing import SnapshotSigner, verify_snapshot
from serving.store import PublicationStore
from serving.store_audit import audit_store

N_ASSETS = 100
REPEATS = 3
HISTORY_BATCHES = 12
T0 = datetime(2025, 1, 1, tzinfo=UTC)
LIQUIDITY = {"amihud": 1e-10, "spread_bps": 1.0, "slippage_bps": 5.0, "standard_size_usd": 1e6}


def best_of(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    """Best wall time of ``repeats`` calls, in seconds (the least disturbed by neighbours)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def forecasts(assets: list[str], hours: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    ts = pd.date_range(T0, periods=hours, freq="h", tz="UTC")
    frames = []
    for asset in assets:
        sigma = 0.03 * np.exp(np.cumsum(rng.normal(0, 0.03, hours)))
        frames.append(
            pd.DataFrame(
                {
                    "ts": ts,
                    "asset": asset,
                    "sigma": sigma,
                    "sigma_lower": sigma * 0.8,
                    "sigma_upper": sigma * 1.3,
                    "var_99": 2.33 * sigma,
                    "es_99": 2.67 * sigma,
                    "model": "har",
                    "model_version": "1",
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    assets = [f"A{i:03d}USDT" for i in range(N_ASSETS)]
    frame = forecasts(assets, 48)
    book = PolicyBook.uniform(PolicyConfig(sigma_ref=0.03))
    signer = SnapshotSigner(load_signing_keys(workdir, environ={}))
    store = PublicationStore(f"sqlite:///{workdir / 'publications.db'}")
    liquidity = {a: LIQUIDITY for a in assets}
    clock = iter(range(10_000))
    last = frame["ts"].max().to_pydatetime()
    batches = []

    def full() -> None:
        now = last + timedelta(minutes=5 + next(clock))
        batches.append(publish_batch(frame, liquidity, book, store, signer, ProvenanceInfo(), now))

    full_s = best_of(full)
    snapshots = batches[-1].snapshots

    plain = sqlite3.connect(workdir / "plain.db")
    plain.execute("CREATE TABLE p (asset TEXT, update_id INT, snapshot TEXT)")

    def baseline() -> None:
        with plain:
            plain.executemany(
                "INSERT INTO p VALUES (?, ?, ?)",
                [(s["asset"], s["update_id"], json.dumps(s)) for s in snapshots],
            )

    base_s = best_of(baseline)
    verify_s = best_of(lambda: [verify_snapshot(s) for s in snapshots])

    while len(batches) < HISTORY_BATCHES:
        full()
    read_s = best_of(store.latest, repeats=20)
    verifier = LogVerifier({signer.public_key})
    verifier.check_heads(store)  # the first load verifies every signature once
    heads_s = best_of(lambda: verifier.check_heads(store), repeats=20)
    audit_s = best_of(lambda: audit_store(store, {signer.public_key}, fast=True), repeats=1)
    rows = N_ASSETS * len(batches)

    year = forecasts(["BTCUSDT"], 24 * 365)
    replay_s = best_of(lambda: replay_policy(year, PolicyBook.uniform()), repeats=1)

    print(f"publish batch of {N_ASSETS} assets (sign + store): {full_s * 1e3:8.1f} ms")
    print(f"baseline json.dumps + plain sqlite insert:        {base_s * 1e3:8.1f} ms")
    print(f"ratio full / baseline:                            {full_s / base_s:8.1f}x")
    print(
        f"per snapshot: {full_s / N_ASSETS * 1e3:.2f} ms publish, "
        f"{verify_s / N_ASSETS * 1e3:.2f} ms verify (schema + both signatures)"
    )
    print(
        f"view reload, {N_ASSETS} assets x {len(batches)} batches: verified heads "
        f"{heads_s * 1e3:.1f} ms, newest rows alone {read_s * 1e3:.1f} ms "
        f"(x{heads_s / read_s:.1f})"
    )
    print(
        f"offline audit --fast of {rows:,} publications: {audit_s:.2f} s "
        f"({rows / audit_s:,.0f} rows/s)"
    )
    print(f"policy replay, 1 asset x 8760 hourly steps:       {replay_s:8.2f} s")
    store.close()


if __name__ == "__main__":
    main()
