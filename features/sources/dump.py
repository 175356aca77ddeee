"""Read and validate a selection of Binance dump files as one batch.

This is the directory-level step shared by :func:`features.sources.load_market` (in memory)
and :meth:`features.store.MarketStore.ingest_dump` (into the Parquet store): pick the files,
parse them in a bounded thread pool (zip inflation and Arrow CSV parsing release the GIL),
then validate each dataset as a whole so duplicates across monthly files are caught.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import numpy as np
import pandas as pd

from features.errors import MalformedFileError
from features.sources.binance import DumpFile, FileRead, read_funding, read_klines, scan_dump
from features.validation import (
    AssetReport,
    FileProblem,
    ValidationReport,
    validate_bars,
    validate_funding,
)

OnFileError = Literal["raise", "skip"]
"""What to do with a file that cannot be read at all: stop, or record it and go on."""

DEFAULT_WORKERS: Final[int] = 2


@dataclass
class DumpBatch:
    """Validated content of a set of dump files.

    Attributes
    ----------
    bars
        Clean spot bars per interval.
    funding
        Clean funding events.
    report
        Validation of every series, quarantined rows and rejected files.
    reads
        Per file read: its sha256, whether its checksum was verified, its row count.
    """

    bars: dict[str, pd.DataFrame] = field(default_factory=dict)
    funding: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            {
                "ts": pd.Series(dtype="datetime64[ns, UTC]"),
                "asset": pd.Series(dtype="string"),
                "funding_rate": pd.Series(dtype="float64"),
            }
        )
    )
    report: ValidationReport = field(default_factory=ValidationReport)
    reads: dict[Path, FileRead] = field(default_factory=dict)


def select_files(
    root: Path,
    intervals: Sequence[str] = ("1h",),
    symbols: Sequence[str] | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    funding: bool = True,
) -> list[DumpFile]:
    """Dump files for some intervals and symbols whose period overlaps ``[start, end)``.

    Parameters
    ----------
    root
        Data root, ``binance/`` directory or ``binance/data`` (see
        :func:`features.sources.binance.dump_data_dir`).
    intervals
        Kline intervals to take.
    symbols
        Symbols to take (case-insensitive); ``None`` for all.
    start, end
        UTC bounds; a file is taken when its month overlaps them.
    funding
        Also take the funding files of the selected symbols.
    """
    wanted = {s.upper() for s in symbols} if symbols is not None else None
    selected = []
    for item in scan_dump(root):
        if wanted is not None and item.symbol not in wanted:
            continue
        if item.kind == "klines" and item.interval not in intervals:
            continue
        if item.kind == "fundingRate" and not funding:
            continue
        if start is not None and item.period_end <= start:
            continue
        if end is not None and item.period_start >= end:
            continue
        selected.append(item)
    return selected


def read_batch(
    files: Iterable[DumpFile],
    *,
    verify: bool = True,
    on_file_error: OnFileError = "raise",
    workers: int = DEFAULT_WORKERS,
    on_file: Callable[[DumpFile], None] | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    keep_provenance: bool = False,
) -> DumpBatch:
    """Parse and validate dump files together.

    Parameters
    ----------
    files
        Files from :func:`select_files` or :func:`features.sources.binance.scan_dump`.
    verify
        Check ``.CHECKSUM`` companions.
    on_file_error
        ``"raise"`` stops at the first unreadable file; ``"skip"`` records it in
        ``report.file_problems`` and keeps every other file.
    workers
        Threads parsing files concurrently.
    on_file
        Called once per file after it is parsed (e.g. to advance a progress bar).
    start, end
        Keep rows with ``start <= ts < end`` (rows without a time are kept, so that
        validation quarantines them).
    keep_provenance
        Keep ``source_file``/``source_row`` in the clean frames.

    Returns
    -------
    DumpBatch
        Clean bars per interval, clean funding and the merged validation report.

    Raises
    ------
    MalformedFileError, ChecksumMismatchError
        With ``on_file_error="raise"``, for the first unreadable file.
    ConflictingDuplicateError
        If two rows for the same asset and time differ (always raised: choosing one
        silently would hide a data problem).
    """
    files = list(files)
    reads: dict[Path, FileRead] = {}
    problems: list[FileProblem] = []

    def parse(item: DumpFile) -> FileRead | MalformedFileError:
        reader = read_klines if item.kind == "klines" else read_funding
        try:
            return reader(item.path, item.symbol, verify=verify)
        except MalformedFileError as exc:
            return exc
        finally:
            if on_file is not None:
                on_file(item)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for item, outcome in zip(files, pool.map(parse, files), strict=True):
            if isinstance(outcome, MalformedFileError):
                if on_file_error == "raise":
                    raise outcome
                problems.append(FileProblem(str(item.path), str(outcome)))
            else:
                reads[item.path] = outcome

    batch = DumpBatch(reads=reads)
    reports = [ValidationReport(file_problems=problems)]
    by_interval: dict[str, list[DumpFile]] = {}
    for item in files:
        if item.path in reads and item.kind == "klines":
            by_interval.setdefault(item.interval or "", []).append(item)
    for interval, items in sorted(by_interval.items()):
        frames = [reads[i.path].frame for i in items]
        raw = between(pd.concat(frames, ignore_index=True), start, end)
        clean, report = validate_bars(raw, interval, keep_provenance=keep_provenance)
        report.quarantine = _with_parse_failures(report, reads, items, "bars", interval)
        batch.bars[interval] = clean
        reports.append(report)
    funding_items = [i for i in files if i.path in reads and i.kind == "fundingRate"]
    if funding_items:
        frames = [reads[i.path].frame for i in funding_items]
        raw = between(pd.concat(frames, ignore_index=True), start, end)
        clean, report = validate_funding(raw, keep_provenance=keep_provenance)
        report.quarantine = _with_parse_failures(report, reads, funding_items, "funding", "")
        batch.funding = clean
        reports.append(report)

    merged = reports[0]
    for report in reports[1:]:
        merged = merged.merge(report)
    merged.files_read = len(reads)
    merged.unverified_files = sorted(str(p) for p, r in reads.items() if not r.verified)
    batch.report = merged
    return batch


def _with_parse_failures(
    report: ValidationReport,
    reads: dict[Path, FileRead],
    items: list[DumpFile],
    dataset: str,
    interval: str,
) -> pd.DataFrame:
    """Add the lines the parser rejected to the report's quarantine and per-asset counts."""
    failures = [reads[i.path].quarantine for i in items if len(reads[i.path].quarantine)]
    if not failures:
        return report.quarantine
    parsed = pd.concat(failures, ignore_index=True).assign(dataset=dataset, interval=interval)
    for asset, rows in parsed.groupby("asset"):
        key = (dataset, str(asset), interval)
        series = report.series.setdefault(key, AssetReport(dataset, str(asset), interval))
        series.quarantined += len(rows)
        for reason, count in rows["reason"].value_counts().items():
            series.quarantine_reasons[reason] = series.quarantine_reasons.get(reason, 0) + count
    frames = [q for q in (report.quarantine, parsed) if len(q)]
    return pd.concat(frames, ignore_index=True)


def between(
    frame: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp | None
) -> pd.DataFrame:
    """Rows with ``start <= ts < end``; rows without a time are kept for quarantine."""
    if start is None and end is None:
        return frame
    undated = frame["ts"].isna().to_numpy()
    mask = np.ones(len(frame), dtype=bool)
    if start is not None:
        mask &= (frame["ts"] >= start).to_numpy() | undated
    if end is not None:
        mask &= (frame["ts"] < end).to_numpy() | undated
    return frame if mask.all() else frame[mask]
