"""Child process of the crash-safety test: publishes two large batches, slowly.

Usage: ``python crash_publisher.py STORE_URL WORKDIR N_ASSETS``. It prints ``COMMITTED 1``
after the first batch, then ``ROW k`` after the k-th snapshot row of the second batch is
inserted (inside the still-open transaction) and sleeps a little, so the parent can SIGKILL
it at a known point mid-transaction. ``COMMITTED 2`` would mean the kill came too late.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import event

from serving.keys import load_signing_keys
from serving.policy import PolicyBook, PolicyConfig
from serving.publishing import ProvenanceInfo, publish_batch
from serving.signing import SnapshotSigner
from serving.store import PublicationStore

T0 = datetime(2025, 6, 1, tzinfo=UTC)
LIQUIDITY = {"amihud": 1e-10, "spread_bps": 1.0, "slippage_bps": 5.0, "standard_size_usd": 1e6}


def forecasts(assets: list[str], hours: int) -> pd.DataFrame:
    ts = pd.date_range(T0, periods=hours, freq="h", tz="UTC")
    sigma = 0.03 * np.exp(np.linspace(0, 0.5, hours))
    return pd.concat(
        pd.DataFrame(
            {
                "ts": ts,
                "asset": a,
                "sigma": sigma,
                "sigma_lower": sigma * 0.8,
                "sigma_upper": sigma * 1.2,
                "var_99": 2.3 * sigma,
                "es_99": 2.7 * sigma,
                "model": "har",
                "model_version": "1",
            }
        )
        for a in assets
    )


def main() -> None:
    url, workdir, n_assets = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    assets = [f"A{i:04d}USDT" for i in range(n_assets)]
    store = PublicationStore(url)
    signer = SnapshotSigner(load_signing_keys(workdir, environ={}))
    book = PolicyBook.uniform(PolicyConfig(sigma_ref=0.03))
    liquidity = {a: LIQUIDITY for a in assets}
    frame = forecasts(assets, 48)
    first = T0 + timedelta(hours=24)
    publish_batch(frame, liquidity, book, store, signer, ProvenanceInfo(), first)
    print("COMMITTED 1", flush=True)

    rows = 0

    def slow_down(conn, cursor, statement, parameters, context, executemany):
        nonlocal rows
        if statement.lstrip().upper().startswith("INSERT INTO PUBLICATIONS"):
            rows += 1
            print(f"ROW {rows}", flush=True)
            time.sleep(0.02)

    event.listen(store.engine, "after_cursor_execute", slow_down)
    publish_batch(
        frame, liquidity, book, store, signer, ProvenanceInfo(), first + timedelta(hours=1)
    )
    print("COMMITTED 2", flush=True)


if __name__ == "__main__":
    main()
