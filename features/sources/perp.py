"""Reader of perpetual-futures OHLCV CSVs (``perp_ohlcv/SYM_perp_1h_ohlcv.csv.gz``).

The files have a header ``date, open, high, low, close, volume`` with ISO times in UTC.
They carry no quote volume, trade count or taker flow: those Bars columns come back as NaN
("unknown"), never zero, and validation runs with ``flow_optional=True``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from features.bars import REQUIRED_COLUMNS, empty_bars
from features.errors import MalformedFileError
from features.sources.dump import between
from features.validation import ValidationReport, validate_bars

PERP_COLUMNS: Final[tuple[str, ...]] = ("date", "open", "high", "low", "close", "volume")
_NAME = re.compile(
    r"^(?P<symbol>[A-Z0-9]+?)(?:_perp)?_(?P<interval>\d+[mhd])(?:_ohlcv)?\.csv(?:\.gz)?$"
)


@dataclass(frozen=True)
class PerpFile:
    """A perp OHLCV file identified from its name (``BTCUSDT_perp_1h_ohlcv.csv.gz``)."""

    path: Path
    symbol: str
    interval: str


def scan_perp_dir(root: Path) -> list[PerpFile]:
    """Perp OHLCV files in ``root`` or ``root/perp_ohlcv``, sorted by symbol.

    Raises
    ------
    FileNotFoundError
        If neither directory exists.
    """
    root = Path(root)
    directory = (root / "perp_ohlcv" if (root / "perp_ohlcv").is_dir() else root).resolve()
    if not directory.is_dir():
        raise FileNotFoundError(f"{root}: no perp_ohlcv/ directory (expected *.csv.gz files)")
    found = []
    for path in sorted(directory.glob("*.csv*")):
        match = _NAME.match(path.name)
        if match is not None:
            found.append(PerpFile(path, match["symbol"], match["interval"]))
    return found


def read_perp_csv(path: Path, asset: str | None = None) -> tuple[pd.DataFrame, str]:
    """Read one perp OHLCV CSV (plain or gzip) into the Bars columns.

    Parameters
    ----------
    path
        The CSV file.
    asset
        Asset label; defaults to the symbol in the file name.

    Returns
    -------
    bars : pandas.DataFrame
        Bars columns plus provenance (``source_file``, ``source_row``); flow columns NaN.
        Rows whose fields do not parse keep NaN there, and validation quarantines them.
    sha256 : str
        Hex digest of the file's bytes.

    Raises
    ------
    MalformedFileError
        If the file is empty, not valid gzip, or its header is not
        ``date, open, high, low, close, volume``.
    """
    path = Path(path)
    if asset is None:
        match = _NAME.match(path.name)
        if match is None:
            raise MalformedFileError(
                path, "cannot tell the asset from the name", "pass asset= explicitly"
            )
        asset = match["symbol"]
    payload = path.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    if path.suffix == ".gz":
        try:
            payload = gzip.decompress(payload)
        except (OSError, EOFError, zlib.error) as exc:
            raise MalformedFileError(path, f"not a readable gzip file ({exc})") from exc
    if not payload.strip():
        raise MalformedFileError(path, "the file is empty")
    header = [
        h.strip().lower() for h in payload.split(b"\n", 1)[0].decode(errors="replace").split(",")
    ]
    if header != list(PERP_COLUMNS):
        raise MalformedFileError(
            path,
            f"unexpected header {header}; expected {list(PERP_COLUMNS)}",
            "check that this is a perp OHLCV file",
        )
    frame = _parse_fast(payload)
    if frame is None:
        frame = _parse_tolerant(payload)
    frame.insert(1, "asset", asset)
    for column in ("quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume"):
        frame[column] = np.nan
    frame = frame[list(REQUIRED_COLUMNS)]
    frame["source_file"] = str(path)
    frame["source_row"] = np.arange(2, len(frame) + 2, dtype="int64")
    return frame, digest


def _parse_fast(payload: bytes) -> pd.DataFrame | None:
    """Typed Arrow parse; ``None`` when any field does not parse (then go tolerant)."""
    types = {"date": pa.timestamp("ns", tz="UTC")} | {c: pa.float64() for c in PERP_COLUMNS[1:]}
    try:
        table = pacsv.read_csv(
            io.BytesIO(payload),
            read_options=pacsv.ReadOptions(use_threads=False),
            convert_options=pacsv.ConvertOptions(column_types=types),
        )
    except pa.ArrowInvalid:
        return None
    columns = {c: table.column(c).to_numpy() for c in PERP_COLUMNS[1:]}
    ts = pd.DatetimeIndex(table.column("date").to_pandas())
    return pd.DataFrame({"ts": ts, **columns})


def _parse_tolerant(payload: bytes) -> pd.DataFrame:
    """Field-by-field parse: what does not parse becomes NaN/NaT, for validation to quarantine."""
    raw = pd.read_csv(io.BytesIO(payload), dtype=str, engine="c", keep_default_na=False)
    frame = pd.DataFrame(
        {"ts": pd.to_datetime(raw["date"], utc=True, errors="coerce", format="ISO8601")}
    )
    for column in PERP_COLUMNS[1:]:
        frame[column] = pd.to_numeric(raw[column], errors="coerce").astype("float64")
    return frame


def load_perp(
    root: Path,
    interval: str = "1h",
    assets: list[str] | None = None,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Read and validate every perp OHLCV file of one interval under ``root``.

    Parameters
    ----------
    root
        Data root containing ``perp_ohlcv/``, or that directory itself.
    interval
        Bar interval of the files to take.
    assets
        Symbols to take; ``None`` for all.
    start, end
        Keep bars with ``start <= ts < end``.

    Returns
    -------
    bars : pandas.DataFrame
        Clean perp bars (flow columns NaN), sorted by ``asset, ts``.
    report : ValidationReport
        ``"perp"`` series per asset.
    """
    wanted = {a.upper() for a in assets} if assets is not None else None
    files = [
        f
        for f in scan_perp_dir(root)
        if f.interval == interval and (wanted is None or f.symbol in wanted)
    ]
    frames = [read_perp_csv(f.path, f.symbol)[0] for f in files]
    raw = pd.concat(frames, ignore_index=True) if frames else empty_bars()
    raw = between(raw, start, end)
    clean, report = validate_bars(raw, interval, str(root), dataset="perp", flow_optional=True)
    report.files_read = len(files)
    return clean, report
