"""Benchmark: full ingest of the shared Binance dump (1h + 2h + funding), then a no-op re-ingest.

Figures:

- **full ingest**: checksum verification, parsing, validation (duplicates, gaps, spikes,
  quarantine) and atomic Parquet writes into a fresh temporary store;
- **re-ingest**: the same command again; every file is unchanged, so the manifest skips it;
- **baseline**: what a plain approach costs just to *read* the same files, one
  ``pandas.read_csv`` per zip with no checksum, validation or store. The ratio
  full/baseline says what the guarantees cost; re-ingest/full says what the manifest saves.

Aims: full ingest < 20 s and re-ingest < 3 s on 2 cores.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd

from features.sources.binance import KLINE_COLUMNS, scan_dump
from features.store import MarketStore

INTERVALS = ("1h", "2h")
FULL_AIM_S = 20.0
REINGEST_AIM_S = 3.0


def shared_data() -> Path:
    env = os.environ.get("DYNAMARGIN_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def pandas_baseline(root: Path) -> tuple[float, int]:
    """Read every selected zip with ``pandas.read_csv`` and concatenate; no checks at all."""
    started = time.perf_counter()
    frames = []
    for item in scan_dump(root):
        if item.kind == "klines" and item.interval not in INTERVALS:
            continue
        if item.kind == "klines":
            frames.append(pd.read_csv(item.path, header=None, names=list(KLINE_COLUMNS)))
        else:
            frames.append(pd.read_csv(item.path))
    rows = sum(len(f) for f in frames)
    pd.concat([f.iloc[:, :3] for f in frames], ignore_index=True)
    return time.perf_counter() - started, rows


def main() -> int:
    root = shared_data()
    if not (root / "binance").is_dir():
        print(f"shared data not found at {root} (set DYNAMARGIN_SHARED_DATA)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        store = MarketStore(Path(tmp) / "store")
        full = store.ingest_dump(root, intervals=INTERVALS)
        again = store.ingest_dump(root, intervals=INTERVALS)
        summary = store.summary()
    baseline_s, baseline_rows = pandas_baseline(root)

    rows = full.rows_read
    print(
        f"shared Binance dump at {root}: {full.files_seen} files ({', '.join(INTERVALS)} + funding)"
    )
    print(
        f"  full ingest        {full.seconds:8.2f} s  {rows:,} rows  "
        f"{rows / full.seconds:,.0f} rows/s"
        f"  ({full.partitions_written} partitions, {len(summary)} series)"
    )
    print(
        f"  no-op re-ingest    {again.seconds:8.3f} s  {again.files_skipped} files skipped, "
        f"{again.rows_added} rows added"
    )
    print(
        f"  pandas baseline    {baseline_s:8.2f} s  {baseline_rows:,} rows "
        f"(read_csv per zip, no checks, no store)"
    )
    print(f"  ratio full/baseline     {full.seconds / baseline_s:6.2f}")
    print(f"  ratio re-ingest/full    {again.seconds / full.seconds:6.4f}")
    print(
        f"  aim full < {FULL_AIM_S:.0f} s: {'met' if full.seconds < FULL_AIM_S else 'MISSED'}; "
        f"re-ingest < {REINGEST_AIM_S:.0f} s: "
        f"{'met' if again.seconds < REINGEST_AIM_S else 'MISSED'}"
    )
    if again.rows_added != 0 or again.files_read != 0:
        print("re-ingest was not a no-op", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
