"""Ingesting market data into the Parquet store: incremental, idempotent, validated.

Each ingest reads only new or changed source files (the store's manifest keeps each file's
size, mtime and sha256, so an unchanged file costs a ``stat``), validates them
(:mod:`features.validation`), merges the clean rows into the store
(:meth:`features.store.MarketStore.write`), replaces the quarantine of the sources it read and
records them in the manifest. Call these through the store's ``ingest_*`` methods, which
hold the store's writer lock for the whole ingest.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from features.market import MarketData
from features.sources.binance import DumpFile
from features.sources.dump import OnFileError, read_batch, select_files
from features.sources.perp import read_perp_csv, scan_perp_dir
from features.validation import ValidationReport, validate_bars, validate_funding

if TYPE_CHECKING:
    from features.store import MarketStore


@dataclass
class IngestResult:
    """What one ingest did.

    Attributes
    ----------
    files_seen
        Source files considered.
    files_read
        Files parsed because they were new or changed.
    files_skipped
        Files skipped as unchanged since the last ingest (manifest hit).
    rows_read
        Clean rows in the files read.
    rows_added
        Rows that were not in the store before.
    partitions_written
        Parquet files (re)written.
    report
        Validation of the rows read (gaps here cover only this batch; see
        :meth:`MarketStore.summary` for the whole store).
    seconds
        Wall-clock duration.
    """

    files_seen: int = 0
    files_read: int = 0
    files_skipped: int = 0
    rows_read: int = 0
    rows_added: int = 0
    partitions_written: int = 0
    report: ValidationReport = field(default_factory=ValidationReport)
    seconds: float = 0.0


def ingest_dump(
    store: MarketStore,
    root: Path,
    intervals: Sequence[str] = ("1h",),
    symbols: Sequence[str] | None = None,
    *,
    funding: bool = True,
    months: tuple[str, str] | None = None,
    verify_checksums: bool = True,
    on_file_error: OnFileError = "raise",
    workers: int = 2,
    on_file: Callable[[DumpFile], None] | None = None,
) -> IngestResult:
    """Ingest Binance dump files (spot klines and funding) incrementally.

    Parameters
    ----------
    root
        Data root, its ``binance/`` directory, or ``binance/data``.
    intervals
        Kline intervals to ingest.
    symbols
        Symbols to ingest; ``None`` for all.
    funding
        Also ingest the funding files of these symbols.
    months
        Inclusive ``("YYYY-MM", "YYYY-MM")`` range of monthly files; ``None`` for all.
    verify_checksums
        Check each zip against its ``.CHECKSUM``.
    on_file_error
        ``"raise"`` or ``"skip"`` (record in the report and continue).
    workers
        Threads parsing files.
    on_file
        Progress callback, called once per file considered.

    Returns
    -------
    IngestResult
        Counts, duration and the batch's validation report.
    """
    started = time.perf_counter()
    start = end = None
    if months is not None:
        start = pd.Timestamp(months[0], tz="UTC")
        end = pd.Timestamp(months[1], tz="UTC") + pd.DateOffset(months=1)
    files = select_files(root, intervals, symbols, start, end, funding=funding)
    manifest = store.load_manifest()
    changed, unchanged = _split_by_manifest(files, manifest)
    for item in unchanged:
        if on_file is not None:
            on_file(item)
    result = IngestResult(files_seen=len(files), files_skipped=len(unchanged))
    if changed:
        batch = read_batch(
            changed,
            verify=verify_checksums,
            on_file_error=on_file_error,
            workers=workers,
            on_file=on_file,
            keep_provenance=True,
        )
        for interval, bars in batch.bars.items():
            _account(result, store.write("bars", bars, interval), len(bars))
        _account(result, store.write("funding", batch.funding), len(batch.funding))
        store.write_quarantine(batch.report.quarantine, [str(p) for p in batch.reads])
        for path, read in batch.reads.items():
            manifest[_manifest_key(path)] = _manifest_entry(path, read.sha256)
        store.save_manifest(manifest)
        result.files_read = len(batch.reads)
        result.report = batch.report
    elif unchanged:
        # Refresh mtimes of files whose content hash matched after a touch.
        store.save_manifest(manifest)
    result.seconds = time.perf_counter() - started
    return result


def ingest_perp_dir(
    store: MarketStore,
    root: Path,
    interval: str = "1h",
    symbols: Sequence[str] | None = None,
    *,
    on_file: Callable[[Path], None] | None = None,
) -> IngestResult:
    """Ingest perp OHLCV CSVs (``perp_ohlcv/*.csv.gz``) incrementally."""
    started = time.perf_counter()
    wanted = {s.upper() for s in symbols} if symbols is not None else None
    files = [
        f
        for f in scan_perp_dir(root)
        if f.interval == interval and (wanted is None or f.symbol in wanted)
    ]
    manifest = store.load_manifest()
    result = IngestResult(files_seen=len(files))
    reports = []
    for item in files:
        key = _manifest_key(item.path)
        if _unchanged(item.path, manifest.get(key)):
            result.files_skipped += 1
        else:
            raw, digest = read_perp_csv(item.path, item.symbol)
            clean, report = validate_bars(
                raw,
                interval,
                str(item.path),
                dataset="perp",
                flow_optional=True,
                keep_provenance=True,
            )
            _account(result, store.write("perp", clean, interval), len(clean))
            store.write_quarantine(report.quarantine, [str(item.path)])
            manifest[key] = _manifest_entry(item.path, digest)
            result.files_read += 1
            report.files_read = 1
            reports.append(report)
        if on_file is not None:
            on_file(item.path)
    store.save_manifest(manifest)
    for report in reports:
        result.report = result.report.merge(report)
    result.seconds = time.perf_counter() - started
    return result


def ingest_market(
    store: MarketStore,
    market: MarketData,
    source: str | None = None,
    *,
    rejected: pd.DataFrame | None = None,
) -> IngestResult:
    """Validate and store an in-memory bundle (e.g. the synthetic market, a live fetch).

    Parameters
    ----------
    market
        Bars, funding and perp to store.
    source
        Label for provenance and quarantine files; defaults to ``market.source``. A
        re-ingest under the same label replaces that label's quarantine file.
    rejected
        Rows the source could not even parse, already in quarantine form (``reason``,
        ``raw``, provenance, ``dataset``); they join validation's rejects.
    """
    started = time.perf_counter()
    label = source or market.source or "in-memory"
    result = IngestResult(files_seen=1, files_read=1)
    clean, report = validate_bars(market.bars, market.interval, label, keep_provenance=True)
    _account(result, store.write("bars", clean, market.interval), len(clean))
    if len(market.funding):
        funding, funding_report = validate_funding(market.funding, label, keep_provenance=True)
        _account(result, store.write("funding", funding), len(funding))
        report = report.merge(funding_report)
    if len(market.perp):
        perp, perp_report = validate_bars(
            market.perp,
            market.interval,
            label,
            dataset="perp",
            flow_optional=True,
            keep_provenance=True,
        )
        _account(result, store.write("perp", perp, market.interval), len(perp))
        report = report.merge(perp_report)
    # Positioning and the macro calendar are small side tables, merged whole.
    if len(market.positioning):
        store.write_table("positioning", market.positioning)
    if len(market.events):
        store.write_table("events", market.events)
    if rejected is not None and len(rejected):
        frames = [q for q in (report.quarantine, rejected) if len(q)]
        report.quarantine = pd.concat(frames, ignore_index=True)
    store.write_quarantine(report.quarantine, [label])
    result.report = report
    result.seconds = time.perf_counter() - started
    return result


def _account(result: IngestResult, outcome: tuple[int, int], rows: int) -> None:
    result.rows_read += rows
    result.rows_added += outcome[0]
    result.partitions_written += outcome[1]


def _manifest_key(path: Path) -> str:
    return os.path.abspath(path)  # scan results are already resolved; avoid a syscall each


def _manifest_entry(path: Path, sha256: str) -> dict[str, object]:
    stat = Path(path).stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}


def _unchanged(path: Path, entry: dict[str, object] | None) -> bool:
    """True when the file matches its manifest entry (size + mtime, or content hash)."""
    if entry is None:
        return False
    stat = path.stat()
    if stat.st_size != entry["size"]:
        return False
    if stat.st_mtime_ns == entry["mtime_ns"]:
        return True
    # Same size, new mtime (copied or touched): only the content decides.
    if hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]:
        entry["mtime_ns"] = stat.st_mtime_ns
        return True
    return False


def _split_by_manifest(
    files: list[DumpFile], manifest: dict[str, dict[str, object]]
) -> tuple[list[DumpFile], list[DumpFile]]:
    changed, unchanged = [], []
    for item in files:
        entry = manifest.get(_manifest_key(item.path))
        (unchanged if _unchanged(item.path, entry) else changed).append(item)
    return changed, unchanged
