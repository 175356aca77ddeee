"""Seed a publication store with real signed snapshots through ``publish_batch``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from serving.keys import load_signing_keys
from serving.policy import PolicyBook, PolicyConfig
from serving.publishing import ProvenanceInfo, publish_batch
from serving.signing import SnapshotSigner
from serving.store import PublicationStore

ASSETS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
LIQUIDITY = {"amihud": 1.2e-10, "spread_bps": 1.8, "slippage_bps": 6.5, "standard_size_usd": 1e6}
POLICY = PolicyBook.uniform(PolicyConfig(sigma_ref=0.03, min_relax_delay_hours=0.0))


def seed_store(
    workdir: Path,
    assets: Sequence[str],
    *,
    batches: int = 8,
    step: timedelta = timedelta(hours=6),
    end: datetime | None = None,
    url: str | None = None,
) -> PublicationStore:
    """Publish ``batches`` batches (one snapshot per asset each), the last at ``end``.

    Sigma oscillates per asset so multipliers move and sparklines have a shape. The last
    batch is published at ``end`` (default: now), so its snapshots are live. ``url`` picks
    another store (default: the work dir's SQLite file); keys always come from ``workdir``.
    """
    end = end or datetime.now(UTC).replace(microsecond=0)
    store = PublicationStore(url or f"sqlite:///{workdir / 'publications.db'}")
    signer = SnapshotSigner(load_signing_keys(workdir, environ={}))
    for k in range(batches):
        now = end - step * (batches - 1 - k)
        rows = []
        for i, asset in enumerate(assets):
            sigma = 0.03 * (1.0 + 0.6 * math.sin(k / 2.0 + i))
            rows.append(
                {
                    "ts": pd.Timestamp(now - timedelta(minutes=5)),
                    "asset": asset,
                    "sigma": sigma,
                    "sigma_lower": sigma * 0.8,
                    "sigma_upper": sigma * 1.3,
                    "var_99": 2.33 * sigma,
                    "es_99": 2.67 * sigma,
                    "model": "dynamargin-vol-24h",
                    "model_version": "3",
                }
            )
        publish_batch(
            pd.DataFrame(rows),
            {asset: LIQUIDITY for asset in assets},
            POLICY,
            store,
            signer,
            ProvenanceInfo(mlflow_run_id="run-test", feature_set_hash="sha256:" + "0" * 64),
            now,
        )
    return store
