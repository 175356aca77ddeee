"""Parquet market-data store, hive-partitioned by asset, with atomic idempotent appends.

Layout under ``root``::

    bars/interval=1h/asset=BTCUSDT/year=2024/part-0.parquet      spot bars
    perp/interval=1h/asset=BTCUSDT/year=2024/part-0.parquet      perpetual bars
    funding/asset=BTCUSDT/year=2024/part-0.parquet               funding events
    positioning.parquet                                          daily positioning, when known
    events.parquet                                               the macro calendar
    quarantine/dataset=bars/<source-id>.csv                      rejected rows + reason
    _manifest.json                                               ingested source files
    .lock                                                        writers' exclusive lock

Design choices:

- **Atomic**: every file is written to a temporary name in its directory and moved into
  place with :func:`os.replace`, so a reader never sees half a file and a crash leaves the
  previous version intact.
- **Incremental append**: new rows are merged into the year partitions they touch; other
  partitions are not rewritten. Identical rows already stored are dropped, rows that differ
  from stored ones raise :class:`~features.errors.ConflictingDuplicateError`.
- **Idempotent**: ingesting the same files twice yields the same store. The manifest keeps
  each source file's size, mtime and sha256; an unchanged file is skipped without being
  read, which makes a no-op re-ingest cost a ``stat`` per file.
- **Concurrency**: writers take an exclusive lock on ``<root>/.lock``; readers need none,
  since every file they see is complete (a reader may mix partitions from before and after
  a concurrent ingest).
- Partition files carry no ``asset``/``interval`` column (the path does), so
  ``pyarrow.dataset(root / "bars", partitioning="hive")`` reads the store too.

Ingesting (choosing and reading source files, skipping unchanged ones, validating) is
:mod:`features.ingest`; the store's ``ingest_*`` methods run it under the writer lock.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Concatenate, Final, Literal, ParamSpec, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from contracts.files import atomic_write, atomic_write_bytes
from contracts.timestamps import optional_utc_timestamp
from features import ingest
from features.bars import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, empty_bars, interval_to_timedelta
from features.errors import ConflictingDuplicateError, StoreError
from features.market import FUNDING_COLUMNS, MarketData, empty_events, empty_positioning
from features.validation import (
    PROVENANCE_COLUMNS,
    find_gaps,
)

Dataset = Literal["bars", "perp", "funding"]
SideTable = Literal["positioning", "events"]
SIDE_TABLES: Final[dict[str, tuple[str, ...]]] = {
    "positioning": ("asset", "ts"),
    "events": ("release_utc", "event", "known_until"),
}
"""Whole-file tables beside the partitioned datasets, and the key each is merged on."""
DATASETS: Final[tuple[Dataset, ...]] = ("bars", "perp", "funding")
PART_NAME: Final[str] = "part-0.parquet"
MANIFEST_NAME: Final[str] = "_manifest.json"
LOCK_NAME: Final[str] = ".lock"

SUMMARY_COLUMNS: Final[tuple[str, ...]] = (
    "dataset",
    "asset",
    "interval",
    "first",
    "last",
    "rows",
    "gaps",
    "missing_bars",
    "quarantined",
)


_P = ParamSpec("_P")
_R = TypeVar("_R")
_LOCKS_HELD = threading.local()


def _exclusive(
    method: Callable[Concatenate[MarketStore, _P], _R],
) -> Callable[Concatenate[MarketStore, _P], _R]:
    """Run a writing method under an exclusive ``flock`` on ``<root>/.lock``.

    Two processes (or threads) ingesting into the same store would otherwise interleave
    read-merge-write cycles on a partition and lose rows. The lock is re-entrant within a
    thread, so ``ingest_*`` can call :meth:`MarketStore.write`.
    """

    @functools.wraps(method)
    def locked(store: MarketStore, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        held: set[str] = getattr(_LOCKS_HELD, "roots", set())
        _LOCKS_HELD.roots = held
        key = os.path.abspath(store.root)
        if key in held:
            return method(store, *args, **kwargs)
        store.root.mkdir(parents=True, exist_ok=True)
        with open(store.root / LOCK_NAME, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            held.add(key)
            try:
                return method(store, *args, **kwargs)
            finally:
                held.discard(key)
                fcntl.flock(handle, fcntl.LOCK_UN)

    return locked


class MarketStore:
    """Parquet store of spot bars, perp bars and funding, partitioned by asset and year.

    Parameters
    ----------
    root
        Store directory (created on first write). The CLI uses ``<workdir>/store``.
    quarantine_dir
        Where rejected rows go; defaults to ``root / "quarantine"``. The CLI uses the
        work dir's ``quarantine/``.

    Examples
    --------
    >>> store = MarketStore(tmp_path / "store")  # doctest: +SKIP
    >>> store.ingest_dump(Path("../shared/data"), intervals=["1h"])  # doctest: +SKIP
    >>> market = store.read_market("1h", ["BTCUSDT"], start="2024-01-01")  # doctest: +SKIP
    """

    def __init__(self, root: Path, quarantine_dir: Path | None = None) -> None:
        self.root = Path(root)
        self.quarantine_dir = Path(quarantine_dir) if quarantine_dir else self.root / "quarantine"

    # --- reading ---------------------------------------------------------------------

    def read_bars(
        self,
        interval: str = "1h",
        assets: Sequence[str] | None = None,
        start: pd.Timestamp | str | None = None,
        end: pd.Timestamp | str | None = None,
    ) -> pd.DataFrame:
        """Spot bars with ``start <= ts < end``, sorted by ``asset, ts``.

        Returns
        -------
        pandas.DataFrame
            The Bars contract (:mod:`features.bars`); empty with the right dtypes when the
            store holds nothing that matches.
        """
        return self._read("bars", interval, assets, start, end)

    def read_perp(
        self,
        interval: str = "1h",
        assets: Sequence[str] | None = None,
        start: pd.Timestamp | str | None = None,
        end: pd.Timestamp | str | None = None,
    ) -> pd.DataFrame:
        """Perpetual bars (Bars columns; flow columns NaN where the source has none)."""
        return self._read("perp", interval, assets, start, end)

    def read_funding(
        self,
        assets: Sequence[str] | None = None,
        start: pd.Timestamp | str | None = None,
        end: pd.Timestamp | str | None = None,
    ) -> pd.DataFrame:
        """Funding events ``ts, asset, funding_rate`` with ``start <= ts < end``."""
        return self._read("funding", None, assets, start, end)

    def read_market(
        self,
        interval: str = "1h",
        assets: Sequence[str] | None = None,
        start: pd.Timestamp | str | None = None,
        end: pd.Timestamp | str | None = None,
    ) -> MarketData:
        """Spot bars, funding and perp bars of the same assets and period as one bundle.

        Parameters
        ----------
        interval
            Bar interval of the spot and perp bars.
        assets
            Symbols to read; ``None`` for every asset with spot bars at ``interval``.
        start, end
            UTC bounds, ``start <= ts < end``.

        Raises
        ------
        StoreError
            If the store has no spot bars at ``interval`` (nothing was ingested yet), or
            ``assets`` names one it does not hold.
        """
        held = self.assets("bars", interval)
        if not held:
            raise StoreError(
                f"{self.root}: no {interval} spot bars in the store; ingest data first "
                "(dynamargin ingest binance-dir PATH, or dynamargin ingest synthetic)"
            )
        if assets is not None:
            unknown = sorted({a.upper() for a in assets} - set(held))
            if unknown:
                raise StoreError(
                    f"{self.root}: no {interval} spot bars for {unknown}; the store holds {held}"
                )
        chosen = list(assets) if assets is not None else held
        positioning = self.read_table("positioning")
        positioning = positioning.loc[positioning["asset"].astype(str).isin(chosen)]
        if end is not None:
            positioning = positioning.loc[positioning["ts"] < optional_utc_timestamp(end)]
        return MarketData(
            bars=self.read_bars(interval, chosen, start, end),
            funding=self.read_funding(chosen, start, end),
            perp=self.read_perp(interval, chosen, start, end),
            positioning=positioning.reset_index(drop=True),
            events=self.read_table("events"),
            interval=interval,
            source=f"store:{self.root}",
        )

    def assets(self, dataset: Dataset = "bars", interval: str | None = "1h") -> list[str]:
        """Assets held for a dataset (and interval), sorted."""
        base = self._dataset_dir(dataset, interval)
        if not base.is_dir():
            return []
        return sorted(p.name.split("=", 1)[1] for p in base.glob("asset=*") if p.is_dir())

    def intervals(self, dataset: Dataset = "bars") -> list[str]:
        """Intervals held for ``bars`` or ``perp``, sorted by length."""
        base = self.root / dataset
        if not base.is_dir():
            return []
        found = [p.name.split("=", 1)[1] for p in base.glob("interval=*") if p.is_dir()]
        return sorted(found, key=interval_to_timedelta)

    def summary(self) -> pd.DataFrame:
        """One row per stored series: dataset, asset, interval, first, last, rows, gaps.

        ``gaps`` and ``missing_bars`` are computed over the whole stored series (funding
        has none); ``quarantined`` counts rows rejected by validation for that series.
        """
        quarantined = self._quarantine_counts()
        rows = []
        for dataset in DATASETS:
            intervals: list[str | None] = [None] if dataset == "funding" else []
            intervals += self.intervals(dataset) if dataset != "funding" else []
            for interval in intervals:
                for asset in self.assets(dataset, interval):
                    ts = self._read_ts(dataset, interval, asset)
                    gaps = find_gaps(ts, interval_to_timedelta(interval)) if interval else []
                    rows.append(
                        {
                            "dataset": dataset,
                            "asset": asset,
                            "interval": interval or "",
                            "first": ts[0] if len(ts) else pd.NaT,
                            "last": ts[-1] if len(ts) else pd.NaT,
                            "rows": len(ts),
                            "gaps": len(gaps),
                            "missing_bars": sum(g.missing for g in gaps),
                            "quarantined": quarantined.get((dataset, interval or "", asset), 0),
                        }
                    )
        return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))

    # --- writing ---------------------------------------------------------------------

    @_exclusive
    def write(
        self, dataset: Dataset, frame: pd.DataFrame, interval: str | None = None
    ) -> tuple[int, int]:
        """Merge clean, validated rows into the store.

        Parameters
        ----------
        dataset
            ``"bars"``, ``"perp"`` or ``"funding"``.
        frame
            Rows in that dataset's schema (validated: unique per ``asset, ts``).
        interval
            Bar interval (``bars`` and ``perp`` only).

        Returns
        -------
        rows_added : int
            Rows not stored before.
        partitions_written : int
            Year partitions rewritten; 0 when every row was already stored.

        Raises
        ------
        ConflictingDuplicateError
            If a row differs from the stored row of the same asset and time. Every
            partition is checked before any is written, so the store is left unchanged.
        StoreError
            If ``frame`` repeats an ``(asset, ts)`` (it was not validated).
        """
        if dataset != "funding" and interval is None:
            raise StoreError(f"writing {dataset} needs an interval such as '1h'")
        if frame.empty:
            return 0, 0
        if frame.duplicated(["asset", "ts"]).any():
            raise StoreError(
                f"refusing to write {dataset}: the frame repeats (asset, ts) keys; validate it "
                "first (features.validation.validate_bars / validate_funding)"
            )
        keep = _stored_columns(dataset, frame)
        keep += [c for c in PROVENANCE_COLUMNS if c in frame.columns]
        years = frame["ts"].dt.year.to_numpy()
        plans = []
        for (asset, year), part in frame.groupby([frame["asset"].astype(str), years], sort=True):
            path = self._partition(dataset, interval, str(asset), int(year))
            merged, added = _merge_partition(path, part[keep], str(asset))
            if merged is not None:
                plans.append((path, merged, added))
        for path, merged, _ in plans:
            table = pa.Table.from_pandas(merged, preserve_index=False)
            _write_parquet(path, table.replace_schema_metadata(None))
        return sum(added for _, _, added in plans), len(plans)

    @_exclusive
    def write_table(self, name: SideTable, frame: pd.DataFrame) -> int:
        """Merge rows into a whole-file side table (``positioning`` or ``events``).

        Both are small (a row per asset and day, a row per release), so the file is read,
        merged on its key (newer rows win) and replaced atomically.

        Returns
        -------
        int
            Rows in the table after the merge.
        """
        key = SIDE_TABLES[name]
        stored = self.read_table(name)
        merged = (
            pd.concat([stored, frame[stored.columns]], ignore_index=True)
            if len(stored)
            else frame[list(_side_empty(name).columns)]
        )
        merged = merged.drop_duplicates(list(key), keep="last").sort_values(list(key))
        table = pa.Table.from_pandas(merged.reset_index(drop=True), preserve_index=False)
        _write_parquet(self.root / f"{name}.parquet", table.replace_schema_metadata(None))
        return len(merged)

    def read_table(self, name: SideTable) -> pd.DataFrame:
        """A side table (``positioning`` or ``events``); empty when none was stored."""
        path = self.root / f"{name}.parquet"
        if not path.is_file():
            return _side_empty(name)
        frame = pq.read_table(path).to_pandas()
        for column in frame.columns:
            if column in ("asset", "event"):
                frame[column] = frame[column].astype("string")
        return frame

    # Ingesting is features.ingest; as methods they hold the writer lock for the whole ingest.
    ingest_dump = _exclusive(ingest.ingest_dump)
    ingest_perp_dir = _exclusive(ingest.ingest_perp_dir)
    ingest_market = _exclusive(ingest.ingest_market)

    # --- internals -------------------------------------------------------------------

    def _dataset_dir(self, dataset: Dataset, interval: str | None) -> Path:
        if dataset == "funding":
            return self.root / "funding"
        return self.root / dataset / f"interval={interval}"

    def _partition(self, dataset: Dataset, interval: str | None, asset: str, year: int) -> Path:
        return self._dataset_dir(dataset, interval) / f"asset={asset}" / f"year={year}" / PART_NAME

    def _partitions(
        self,
        dataset: Dataset,
        interval: str | None,
        assets: Sequence[str] | None,
        start: pd.Timestamp | None,
        end: pd.Timestamp | None,
    ) -> list[tuple[str, Path]]:
        wanted = {a.upper() for a in assets} if assets is not None else None
        found = []
        for asset in self.assets(dataset, interval):
            if wanted is not None and asset not in wanted:
                continue
            for year_dir in (self._dataset_dir(dataset, interval) / f"asset={asset}").glob(
                "year=*"
            ):
                year = int(year_dir.name.split("=", 1)[1])
                if start is not None and year < start.year:
                    continue
                if end is not None and year > end.year:
                    continue
                if (year_dir / PART_NAME).is_file():
                    found.append((asset, year_dir / PART_NAME))
        return sorted(found)

    def _read(
        self,
        dataset: Dataset,
        interval: str | None,
        assets: Sequence[str] | None,
        start: pd.Timestamp | str | None,
        end: pd.Timestamp | str | None,
    ) -> pd.DataFrame:
        start_ts, end_ts = optional_utc_timestamp(start), optional_utc_timestamp(end)
        parts = self._partitions(dataset, interval, assets, start_ts, end_ts)
        frames = []
        for asset, path in parts:
            frame = pq.read_table(path).to_pandas()
            frame.insert(1, "asset", asset)
            frames.append(frame)
        if not frames:
            return _empty(dataset)
        out = pd.concat(frames, ignore_index=True)
        out["asset"] = out["asset"].astype("string")
        mask = np.ones(len(out), dtype=bool)
        if start_ts is not None:
            mask &= (out["ts"] >= start_ts).to_numpy()
        if end_ts is not None:
            mask &= (out["ts"] < end_ts).to_numpy()
        out = out[mask] if not mask.all() else out
        if dataset == "bars" and out["trades"].notna().all():
            out["trades"] = out["trades"].astype("int64")
        return out.reset_index(drop=True)

    def _read_ts(self, dataset: Dataset, interval: str | None, asset: str) -> pd.DatetimeIndex:
        parts = self._partitions(dataset, interval, [asset], None, None)
        arrays = [pq.read_table(path, columns=["ts"]).column("ts") for _, path in parts]
        if not arrays:
            return pd.DatetimeIndex([], tz="UTC")
        values = pa.chunked_array([c for a in arrays for c in a.chunks]).to_pandas()
        return pd.DatetimeIndex(values).sort_values()

    def write_quarantine(self, quarantine: pd.DataFrame, sources: Sequence[str] = ()) -> None:
        """Replace the quarantine files of ``sources`` (and of any source in ``quarantine``).

        There is one CSV per (dataset, source), named by a hash of the source, so a
        re-ingest of a source replaces its rejected rows instead of adding them twice, and a
        corrected source clears them.
        """
        frame = quarantine.copy()
        for column in ("dataset", "interval", "source_file"):
            frame[column] = frame[column].fillna("").astype(str)
        for source in {*sources, *frame["source_file"].unique()}:
            for old in self.quarantine_dir.glob(f"dataset=*/{_source_id(source)}.csv"):
                old.unlink()
        for (dataset, source), rows in frame.groupby(["dataset", "source_file"], sort=True):
            path = self.quarantine_dir / f"dataset={dataset}" / f"{_source_id(source)}.csv"
            atomic_write_bytes(path, rows.to_csv(index=False).encode())

    def _quarantine_counts(self) -> dict[tuple[str, str, str], int]:
        counts: dict[tuple[str, str, str], int] = {}
        for path in sorted(self.quarantine_dir.glob("dataset=*/*.csv")):
            columns = ["dataset", "interval", "asset"]
            rows = pd.read_csv(path, usecols=columns, dtype=str)[columns].fillna("")
            for (dataset, interval, asset), n in rows.value_counts().items():
                key = (dataset, interval, asset)
                counts[key] = counts.get(key, 0) + int(n)
        return counts

    def load_manifest(self) -> dict[str, dict[str, object]]:
        path = self.root / MANIFEST_NAME
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise StoreError(
                f"{path}: unreadable manifest ({exc}); delete it to re-verify every source "
                "file on the next ingest (the data itself is unaffected)"
            ) from exc

    def save_manifest(self, manifest: dict[str, dict[str, object]]) -> None:
        payload = json.dumps(manifest, indent=1, sort_keys=True).encode()
        atomic_write_bytes(self.root / MANIFEST_NAME, payload)


def _side_empty(name: str) -> pd.DataFrame:
    return empty_positioning() if name == "positioning" else empty_events()


def _write_parquet(path: Path, table: pa.Table) -> None:
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


# --- helpers -----------------------------------------------------------------------------


def _stored_columns(dataset: Dataset, frame: pd.DataFrame) -> list[str]:
    if dataset == "funding":
        return [c for c in FUNDING_COLUMNS if c != "asset"]
    optional = [c for c in OPTIONAL_COLUMNS if c in frame.columns]
    return [c for c in REQUIRED_COLUMNS if c != "asset"] + optional


def _empty(dataset: Dataset) -> pd.DataFrame:
    if dataset == "funding":
        return MarketData(bars=pd.DataFrame()).funding
    return empty_bars()


def _merge_partition(path: Path, rows: pd.DataFrame, asset: str) -> tuple[pd.DataFrame | None, int]:
    """The partition's new content and the rows it adds; ``None`` when nothing is new.

    Raises :class:`ConflictingDuplicateError` if a row differs from its stored version.
    """
    if path.exists():
        stored = pq.read_table(path).to_pandas()
        known = rows["ts"].isin(stored["ts"]).to_numpy()
        if known.any():
            _check_same(stored, rows[known], path, asset)
        fresh = rows[~known]
        if fresh.empty:
            return None, 0
        merged = pd.concat([stored, _without_provenance(fresh)], ignore_index=True)
    else:
        fresh = rows
        merged = _without_provenance(rows)
    return merged.sort_values("ts", kind="stable").reset_index(drop=True), len(fresh)


def _without_provenance(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in PROVENANCE_COLUMNS if c in frame.columns])


def _check_same(stored: pd.DataFrame, incoming: pd.DataFrame, path: Path, asset: str) -> None:
    """Raise when incoming rows differ from the stored rows of the same timestamps."""
    columns = [c for c in stored.columns if c in incoming.columns and c != "ts"]
    left = stored.set_index("ts").loc[incoming["ts"], columns]
    right = incoming.set_index("ts")[columns]
    left_values = left.to_numpy(dtype="float64", na_value=np.nan)
    right_values = right.to_numpy(dtype="float64", na_value=np.nan)
    same = (left_values == right_values) | (np.isnan(left_values) & np.isnan(right_values))
    bad_rows = np.flatnonzero(~same.all(axis=1))
    if bad_rows.size == 0:
        return
    i = bad_rows[0]
    differing = [c for c, ok in zip(columns, same[i], strict=True) if not ok]
    ts = right.index[i]
    shown_old = ", ".join(f"{c}={left.iloc[i][c]}" for c in differing)
    shown_new = ", ".join(f"{c}={right.iloc[i][c]}" for c in differing)
    origin = "incoming"
    if "source_file" in incoming.columns:
        origin = f"{incoming['source_file'].iloc[i]} row {incoming['source_row'].iloc[i]}"
    raise ConflictingDuplicateError(
        asset,
        ts,
        f"[stored {path}: {shown_old}]",
        f"[{origin}: {shown_new}]",
        differing,
        int(bad_rows.size),
    )


def _source_id(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


IngestResult = ingest.IngestResult
"""What one ingest did (:class:`features.ingest.IngestResult`)."""

__all__ = [
    "DATASETS",
    "IngestResult",
    "MarketStore",
]
