"""Reader of the public Binance data dump (``data.binance.vision`` layout).

Layout::

    data/spot/monthly/klines/SYM/IV/SYM-IV-YYYY-MM.zip            (+ .zip.CHECKSUM)
    data/futures/um/monthly/fundingRate/SYM/SYM-fundingRate-YYYY-MM.zip (+ .zip.CHECKSUM)

Each zip holds one CSV. Kline CSVs are headerless in the spot dump and headered in the
futures dump; both are accepted, as is a plain ``.csv``. Open times are milliseconds before
2025-01 and microseconds after in the spot dump; the unit is decided *per row* from the
magnitude, so a file that mixes units still parses to the right times. The ``.CHECKSUM``
companion (``<sha256>  <name>``) is verified whenever it exists.

Readers return a :class:`FileRead`: the parsed rows in the Bars (or funding) schema, with
provenance columns, plus the rows that could not be parsed, already in quarantine form.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from features.errors import ChecksumMismatchError, MalformedFileError
from features.validation import PROVENANCE_COLUMNS

KLINE_COLUMNS: Final[tuple[str, ...]] = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
"""The 12 kline columns, in file order."""

FUNDING_FILE_COLUMNS: Final[tuple[str, ...]] = (
    "calc_time",
    "funding_interval_hours",
    "last_funding_rate",
)

_KLINE_HEADER_ALIASES: Final[dict[str, str]] = {
    "open time": "open_time",
    "close time": "close_time",
    "quote_asset_volume": "quote_volume",
    "number_of_trades": "count",
    "trades": "count",
    "taker_buy_base_asset_volume": "taker_buy_volume",
    "taker_buy_base_volume": "taker_buy_volume",
    "taker_buy_quote_asset_volume": "taker_buy_quote_volume",
}

# Epoch magnitudes: a millisecond stamp of 1973..5138 lies in [1e11, 1e14); a microsecond
# stamp of the same era in [1e14, 1e17). Anything else is not a time we can trust.
_MS_RANGE: Final[tuple[float, float]] = (1e11, 1e14)
_US_RANGE: Final[tuple[float, float]] = (1e14, 1e17)

_DUMP_NAME = re.compile(
    r"^(?P<symbol>[A-Z0-9]+)-(?P<kind>fundingRate|\d+[smhdwM])-(?P<period>\d{4}-\d{2}(?:-\d{2})?)"
    r"\.(?:zip|csv)$"
)

DumpKind = Literal["klines", "fundingRate"]


@dataclass(frozen=True)
class DumpFile:
    """One data file of the dump, identified from its name.

    Attributes
    ----------
    path
        Location of the ``.zip`` (or ``.csv``).
    kind
        ``"klines"`` or ``"fundingRate"``.
    symbol
        Exchange symbol, e.g. ``"BTCUSDT"``; used as the ``asset``.
    interval
        Kline interval such as ``"1h"``; ``None`` for funding.
    period
        ``"YYYY-MM"`` (monthly) or ``"YYYY-MM-DD"`` (daily).
    """

    path: Path
    kind: DumpKind
    symbol: str
    interval: str | None
    period: str

    @property
    def period_start(self) -> pd.Timestamp:
        """UTC start of the month (or day) the file covers."""
        return pd.Timestamp(self.period, tz="UTC")

    @property
    def period_end(self) -> pd.Timestamp:
        """UTC end (exclusive) of the period the file covers."""
        offset = pd.DateOffset(days=1) if len(self.period) == 10 else pd.DateOffset(months=1)
        return self.period_start + offset


@dataclass(frozen=True)
class FileRead:
    """The result of reading one dump file.

    Attributes
    ----------
    frame
        Parsed rows (Bars or funding schema) with :data:`PROVENANCE_COLUMNS`.
    quarantine
        Lines that could not be parsed, with a ``reason`` and the ``raw`` text.
    sha256
        Hex digest of the file's bytes.
    verified
        True when a ``.CHECKSUM`` companion existed and matched.
    """

    frame: pd.DataFrame
    quarantine: pd.DataFrame
    sha256: str
    verified: bool


def parse_dump_name(path: Path) -> DumpFile | None:
    """Identify a dump file from its name; ``None`` when the name is not a dump name."""
    match = _DUMP_NAME.match(path.name)
    if match is None:
        return None
    kind: DumpKind = "fundingRate" if match["kind"] == "fundingRate" else "klines"
    interval = None if kind == "fundingRate" else match["kind"]
    return DumpFile(path, kind, match["symbol"], interval, match["period"])


def scan_dump(root: Path) -> list[DumpFile]:
    """List the kline and funding files under a dump root, sorted by kind, symbol, period.

    Parameters
    ----------
    root
        A directory laid out like ``../shared/data`` (containing ``binance/``), the
        ``binance/`` directory itself (containing ``data/``) or its ``data/`` directory.

    Returns
    -------
    list of DumpFile
        Files whose names follow the dump convention; other files are ignored.
    """
    data = dump_data_dir(root).resolve()
    files = []
    for pattern in ("spot/*/klines/*/*/*.zip", "futures/um/*/fundingRate/*/*.zip"):
        for path in data.glob(pattern):
            parsed = parse_dump_name(path)
            if parsed is not None:
                files.append(parsed)
    return sorted(files, key=lambda f: (f.kind, f.symbol, f.interval or "", f.period))


def dump_data_dir(root: Path) -> Path:
    """Resolve the dump's ``data/`` directory from any of the accepted roots.

    Raises
    ------
    FileNotFoundError
        If none of ``root/binance/data``, ``root/data`` or ``root`` looks like a dump.
    """
    root = Path(root)
    for candidate in (root / "binance" / "data", root / "data", root):
        if (candidate / "spot").is_dir() or (candidate / "futures").is_dir():
            return candidate
    raise FileNotFoundError(
        f"{root} is not a Binance dump: expected binance/data/spot or data/spot under it "
        "(pass the data root, its binance/ directory or binance/data)"
    )


def read_file_bytes(path: Path, verify: bool = True) -> tuple[bytes, str, bool]:
    """Read a file and check it against its ``.CHECKSUM`` companion when there is one.

    Returns
    -------
    payload : bytes
        The file's bytes.
    sha256 : str
        Their hex digest.
    verified : bool
        Whether a companion existed and matched.

    Raises
    ------
    ChecksumMismatchError
        If the companion's digest differs.
    MalformedFileError
        If the companion cannot be parsed.
    """
    path = Path(path)
    payload = path.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    companion = path.with_name(path.name + ".CHECKSUM")
    if not verify or not companion.exists():
        return payload, digest, False
    expected = parse_checksum_file(companion)
    if expected != digest:
        raise ChecksumMismatchError(path, expected, digest)
    return payload, digest, True


def parse_checksum_file(path: Path) -> str:
    """The lower-case hex digest in a ``<sha256>  <name>`` checksum file."""
    text = Path(path).read_text(encoding="ascii", errors="replace").strip()
    token = text.split()[0].lower() if text else ""
    if not re.fullmatch(r"[0-9a-f]{64}", token):
        raise MalformedFileError(
            path, f"not a sha256 checksum file (starts with {text[:40]!r})", "re-download it"
        )
    return token


def read_klines(path: Path, asset: str | None = None, *, verify: bool = True) -> FileRead:
    """Read a kline ``.zip`` (or ``.csv``) of the dump into the Bars schema.

    Parameters
    ----------
    path
        The file. Its name gives the asset unless ``asset`` is passed.
    asset
        Asset label for the rows; defaults to the symbol in the file name.
    verify
        Check the ``.CHECKSUM`` companion when present.

    Returns
    -------
    FileRead
        Bars with provenance; rows whose fields or open time cannot be parsed are in
        ``quarantine``.

    Raises
    ------
    ChecksumMismatchError
        If the file does not match its checksum.
    MalformedFileError
        If the file is not a readable zip, is empty, or its header or column count is not
        that of a kline file.
    """
    path = Path(path)
    asset = asset or _asset_from_name(path)
    payload, digest, verified = read_file_bytes(path, verify)
    text = _csv_payload(path, payload)
    raw = _parse_csv(path, text, KLINE_COLUMNS, _KLINE_HEADER_ALIASES, int_fields=("count",))
    frame, quarantine = klines_to_bars(raw.columns, asset, str(path))
    quarantine = _concat([raw.quarantine.assign(asset=asset), quarantine])
    return FileRead(frame, quarantine, digest, verified)


def read_funding(path: Path, asset: str | None = None, *, verify: bool = True) -> FileRead:
    """Read a ``fundingRate`` ``.zip`` (or ``.csv``) into ``ts, asset, funding_rate``.

    ``ts`` is ``calc_time`` rounded to the second: the exchange sometimes stamps the
    settlement a millisecond late (``...00001``), and joins with bars need the exact time.

    Raises
    ------
    ChecksumMismatchError, MalformedFileError
        As :func:`read_klines`.
    """
    path = Path(path)
    asset = asset or _asset_from_name(path)
    payload, digest, verified = read_file_bytes(path, verify)
    text = _csv_payload(path, payload)
    raw = _parse_csv(path, text, FUNDING_FILE_COLUMNS, {}, int_fields=())
    table = raw.columns
    ts, bad_time = epoch_to_utc(table["calc_time"])
    frame = pd.DataFrame(
        {
            "ts": ts.round("s"),
            "asset": asset,
            "funding_rate": table["last_funding_rate"].astype("float64"),
            "source_file": str(path),
            "source_row": table["source_row"],
        }
    )
    quarantine = frame[bad_time].assign(
        reason="calc_time is neither epoch milliseconds nor microseconds",
        raw=table["calc_time"][bad_time].astype(str),
    )
    return FileRead(
        frame[~bad_time].reset_index(drop=True),
        _concat([raw.quarantine.assign(asset=asset), quarantine]),
        digest,
        verified,
    )


def epoch_to_utc(values: np.ndarray) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Convert epoch stamps to UTC times, deciding ms or µs per value by magnitude.

    Parameters
    ----------
    values
        Integer (or float) epoch stamps, milliseconds or microseconds, possibly mixed.

    Returns
    -------
    ts : pandas.DatetimeIndex
        UTC times; NaT where the stamp is neither.
    bad : numpy.ndarray
        Boolean mask of stamps that are neither ms nor µs (or missing).

    Examples
    --------
    >>> ts, bad = epoch_to_utc(np.array([1735689600000, 1735689600000000]))
    >>> ts[0] == ts[1], bad.any()
    (True, False)
    """
    values = np.asarray(values, dtype="float64")
    is_ms = (values >= _MS_RANGE[0]) & (values < _MS_RANGE[1])
    is_us = (values >= _US_RANGE[0]) & (values < _US_RANGE[1])
    bad = ~(is_ms | is_us)
    as_int = np.where(bad, 0, values).astype("int64")
    ns = np.where(is_us, as_int * 1_000, as_int * 1_000_000)
    ts = pd.DatetimeIndex(ns.astype("datetime64[ns]")).tz_localize("UTC")
    if bad.any():
        ts = ts.where(~bad)
    return ts, bad


# --- parsing helpers -------------------------------------------------------------------


@dataclass(frozen=True)
class _RawTable:
    columns: dict[str, np.ndarray]  # named numeric columns + source_row
    quarantine: pd.DataFrame  # source_file, source_row, reason, raw


def _asset_from_name(path: Path) -> str:
    parsed = parse_dump_name(path)
    if parsed is None:
        raise MalformedFileError(
            path,
            "the file name does not follow SYM-IV-YYYY-MM.zip, so the asset is unknown",
            "rename it or pass asset= explicitly",
        )
    return parsed.symbol


def _csv_payload(path: Path, payload: bytes) -> bytes:
    """The CSV bytes of a dump file: the single member of a zip, or the file itself."""
    if not payload.strip():
        raise MalformedFileError(path, "the file is empty")
    if path.suffix.lower() != ".zip":
        return payload
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) != 1:
                raise MalformedFileError(
                    path, f"the archive holds {len(members)} files, expected exactly one CSV"
                )
            text = archive.read(members[0])
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise MalformedFileError(
            path, f"not a readable zip archive, probably truncated or corrupt ({exc})"
        ) from exc
    if not text.strip():
        raise MalformedFileError(path, f"the CSV {members[0].filename!r} in the archive is empty")
    return text


def _header_names(
    path: Path, first_line: str, expected: tuple[str, ...], aliases: dict[str, str]
) -> list[str] | None:
    """Column names from a header line, or ``None`` when the first line is data."""
    fields = [f.strip().strip('"').strip() for f in first_line.split(",")]
    try:
        float(fields[0])
        return None
    except ValueError:
        pass
    names = [aliases.get(f.lower(), f.lower()) for f in fields]
    required = [c for c in expected if c != "ignore"]
    missing = [c for c in required if c not in names]
    if missing:
        raise MalformedFileError(
            path,
            f"unrecognised header {first_line.strip()[:120]!r}: missing {missing}; "
            f"expected the columns {list(expected)}",
            "check that this is a Binance dump file of the right kind",
        )
    return names


def _parse_csv(
    path: Path,
    text: bytes,
    expected: tuple[str, ...],
    aliases: dict[str, str],
    int_fields: tuple[str, ...],
) -> _RawTable:
    """Parse a dump CSV; fall back to line-by-line parsing when the fast path fails."""
    first_line = text.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    header = _header_names(path, first_line, expected, aliases)
    names = header or list(expected)
    n_fields = len(first_line.split(","))
    if header is None and n_fields != len(expected):
        raise MalformedFileError(
            path,
            f"line 1 has {n_fields} fields, a {'kline' if 'open' in expected else 'funding'} "
            f"file has {len(expected)}",
            "check that this is a Binance dump file of the right kind",
        )
    wanted = [c for c in expected if c != "ignore"]
    skip = 1 if header is not None else 0
    if not text[len(first_line) :].strip() and header is not None:
        raise MalformedFileError(path, "the file has a header but no data rows")
    try:
        table = pacsv.read_csv(
            io.BytesIO(text),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip, use_threads=False),
            # Keep blank lines as all-null rows so that line numbers stay exact; they are
            # dropped below.
            parse_options=pacsv.ParseOptions(ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                include_columns=wanted,
                column_types={c: (pa.int64() if c in int_fields else pa.float64()) for c in wanted},
            ),
        )
    except pa.ArrowInvalid:
        return _parse_csv_slowly(path, text, names, wanted, skip)
    columns = {c: table.column(c).to_numpy() for c in wanted}
    columns["source_row"] = np.arange(1 + skip, table.num_rows + 1 + skip, dtype="int64")
    if table.num_rows and table.column(wanted[0]).null_count:
        blank = np.logical_and.reduce([table.column(c).is_null().to_numpy() for c in wanted])
        if blank.any():
            columns = {c: values[~blank] for c, values in columns.items()}
    return _RawTable(columns, _EMPTY_QUARANTINE)


def _parse_csv_slowly(
    path: Path, text: bytes, names: list[str], wanted: list[str], skip: int
) -> _RawTable:
    """Line-by-line parse that quarantines each unparseable line instead of the file."""
    lines = text.decode("utf-8", errors="replace").splitlines()
    records: list[list[str]] = []
    good_rows: list[int] = []
    bad: list[dict[str, object]] = []
    for number, line in enumerate(lines[skip:], start=1 + skip):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != len(names):
            bad.append(
                _bad_line(path, number, line, f"{len(fields)} fields, expected {len(names)}")
            )
            continue
        records.append(fields)
        good_rows.append(number)
    strings = pd.DataFrame(records, columns=names)[wanted] if records else None
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in wanted})
    if strings is not None:
        frame = strings.apply(pd.to_numeric, errors="coerce").astype("float64")
        unparseable = frame.isna() & strings.apply(lambda col: col.str.strip() != "")
        unparseable |= strings.apply(lambda col: col.str.strip() == "")
        for i in np.flatnonzero(unparseable.any(axis=1).to_numpy()):
            columns = [c for c in wanted if unparseable.iloc[i][c]]
            row = good_rows[i]
            bad.append(_bad_line(path, row, lines[row - 1], f"unparseable {', '.join(columns)}"))
        keep = ~unparseable.any(axis=1).to_numpy()
        frame = frame[keep].reset_index(drop=True)
        good_rows = [r for r, k in zip(good_rows, keep, strict=True) if k]
    columns = {c: frame[c].to_numpy() for c in wanted}
    columns["source_row"] = np.asarray(good_rows, dtype="int64")
    return _RawTable(columns, _concat([pd.DataFrame(bad)]))


def _bad_line(path: Path, number: int, line: str, problem: str) -> dict[str, object]:
    return {"source_file": str(path), "source_row": number, "reason": problem, "raw": line}


def parse_kline_rows(
    rows: Sequence[Sequence[object]], asset: str, source: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse klines as a venue's REST API returns them (JSON arrays) into the Bars schema.

    The REST answer of ``/api/v3/klines`` and ``/fapi/v1/klines`` has the dump's 12 fields
    per row (numbers as strings), so it goes through the same conversion as a dump file.
    Fields that do not parse become NaN and validation quarantines the row; a JSON ``null``
    (a field the source does not have) becomes NaN, i.e. unknown.

    Parameters
    ----------
    rows
        The JSON arrays, in the order received.
    asset
        Asset label for the rows.
    source
        Provenance label (e.g. the request URL); ``source_row`` is the 1-based index.

    Returns
    -------
    bars : pandas.DataFrame
        Bars with provenance columns.
    rejected : pandas.DataFrame
        Rows with the wrong number of fields or an open time that is not an epoch stamp,
        in quarantine form (``reason``, ``raw``).
    """
    wanted = [c for c in KLINE_COLUMNS if c != "ignore"]
    good: list[Sequence[object]] = []
    numbers: list[int] = []
    bad: list[dict[str, object]] = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, list | tuple) or len(row) != len(KLINE_COLUMNS):
            size = len(row) if isinstance(row, list | tuple) else "no"
            bad.append(
                {
                    "source_file": source,
                    "source_row": number,
                    "reason": f"{size} fields, expected {len(KLINE_COLUMNS)}",
                    "raw": repr(row)[:500],
                }
            )
            continue
        good.append(row)
        numbers.append(number)
    table = pd.DataFrame(list(good), columns=list(KLINE_COLUMNS))[wanted] if good else None
    columns: dict[str, np.ndarray] = {}
    for column in wanted:
        values = table[column] if table is not None else pd.Series(dtype="float64")
        columns[column] = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
    columns["source_row"] = np.asarray(numbers, dtype="int64")
    frame, rejected = klines_to_bars(columns, asset, source)
    if bad:
        rejected = _concat([rejected, pd.DataFrame(bad).assign(asset=asset)])
    return frame, rejected


def klines_to_bars(
    raw: dict[str, np.ndarray], asset: str, source: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Map the dump's kline columns (``open_time`` ... ``source_row``) onto the Bars schema.

    Returns the bars and, in quarantine form, the rows whose open time is not an epoch stamp.
    """
    ts, bad_time = epoch_to_utc(raw["open_time"])
    # One constructor call: inserting columns one by one costs more than parsing the CSV.
    columns: dict[str, object] = {"ts": ts, "asset": asset}
    for column in ("open", "high", "low", "close", "volume", "quote_volume"):
        columns[column] = raw[column]
    columns["trades"] = raw["count"]
    columns["taker_buy_volume"] = raw["taker_buy_volume"]
    columns["taker_buy_quote_volume"] = raw["taker_buy_quote_volume"]
    columns["source_file"] = source
    columns["source_row"] = raw["source_row"]
    frame = pd.DataFrame(columns)
    if not bad_time.any():
        return frame, _EMPTY_QUARANTINE
    quarantine = frame[bad_time].assign(
        reason="open_time is neither epoch milliseconds nor microseconds",
        raw=raw["open_time"][bad_time].astype(str),
    )
    return frame[~bad_time].reset_index(drop=True), quarantine.reset_index(drop=True)


_EMPTY_QUARANTINE: Final[pd.DataFrame] = pd.DataFrame(
    {c: pd.Series(dtype="object") for c in (*PROVENANCE_COLUMNS, "asset", "reason", "raw")}
)
"""Shared empty quarantine (the common case); callers only ever copy it."""


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return _EMPTY_QUARANTINE
    return pd.concat(frames, ignore_index=True)
