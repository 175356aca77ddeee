"""Validation of market data: schema, time, ordering, duplicates, gaps, row sanity, spikes.

:func:`validate_bars` takes a Bars frame from any source and returns the clean frame and a
:class:`ValidationReport`. Its rules:

- **schema and dtypes**: the Bars columns must be present; numerics are coerced to float64
  (``trades`` to int64 when complete); ``ts`` must be tz-aware and is converted to UTC;
  a naive ``ts`` raises :class:`~features.errors.DataValidationError`.
- **ordering**: rows are sorted by ``asset, ts``; how many were out of order is reported.
- **duplicates**: identical rows for one ``(asset, ts)`` are dropped and counted; rows that
  differ raise :class:`~features.errors.ConflictingDuplicateError`.
- **row sanity**: non-finite or non-positive prices, inconsistent OHLC, negative volumes,
  ``taker_buy_volume > volume`` and timestamps off the interval grid are *quarantined*: moved
  to :attr:`ValidationReport.quarantine` with a ``reason`` column, never silently dropped.
- **gaps** between consecutive bars are reported, never filled.
- **return spikes**: log returns with a robust z-score above a threshold are flagged, not
  dropped; a crash is data, not an error.

Rows may carry provenance columns :data:`PROVENANCE_COLUMNS` (file and 1-based line) so that
errors and quarantined rows point at their origin; they are removed from the clean frame.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from contracts.files import atomic_write_bytes
from features.bars import FLOAT_COLUMNS, REQUIRED_COLUMNS, interval_to_timedelta
from features.errors import ConflictingDuplicateError, DataValidationError
from features.market import FUNDING_COLUMNS

PROVENANCE_COLUMNS: Final[tuple[str, str]] = ("source_file", "source_row")
"""Optional columns naming the file and 1-based line a row came from."""

QUARANTINE_EXTRA: Final[tuple[str, ...]] = ("dataset", "interval", "reason", "raw")
"""Columns a quarantined row carries besides its data and provenance."""

DEFAULT_SPIKE_Z: Final[float] = 12.0
"""Robust z-score above which a log return is flagged as a spike.

Hourly crypto returns are fat-tailed: with a Gaussian-consistent MAD scale over a trailing
30-day window, |z| > 12 flags roughly 5 to 20 crash and squeeze bars per asset-year on the
shared Binance data (BTC 1h: ~130 over 2017-2025) rather than every busy hour.
"""

PRICE_COLUMNS: Final[tuple[str, ...]] = ("open", "high", "low", "close")
FLOW_COLUMNS: Final[tuple[str, ...]] = (
    "quote_volume",
    "trades",
    "taker_buy_volume",
    "taker_buy_quote_volume",
)
# Taker volume is a sub-total of volume, both parsed from the same decimal text; the slack
# only absorbs float rounding, never a real excess.
_SUBTOTAL_RTOL: Final[float] = 1e-9
_MAD_TO_SIGMA: Final[float] = 1.4826


@dataclass(frozen=True)
class Gap:
    """Missing bars between two present ones.

    Attributes
    ----------
    start, end
        Open times of the first and last *missing* bar (inclusive).
    missing
        Number of missing bars.
    """

    start: pd.Timestamp
    end: pd.Timestamp
    missing: int


@dataclass(frozen=True)
class Spike:
    """A bar whose close-to-close log return has an extreme robust z-score."""

    ts: pd.Timestamp
    log_return: float
    zscore: float


@dataclass
class AssetReport:
    """Validation outcome of one series (dataset, asset, interval).

    Attributes
    ----------
    dataset
        ``"bars"`` (spot), ``"perp"`` or ``"funding"``.
    rows
        Clean rows kept.
    first, last
        First and last bar (or funding event) kept, ``None`` when empty.
    duplicates_dropped
        Identical duplicate rows dropped.
    reordered
        Rows that arrived before an earlier timestamp of the same asset.
    gaps
        Runs of missing bars (bars and perp only).
    quarantined
        Rows moved to quarantine; ``quarantine_reasons`` counts them by reason.
    spikes
        Flagged (kept) return spikes.
    """

    dataset: str
    asset: str
    interval: str
    rows: int = 0
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None
    duplicates_dropped: int = 0
    reordered: int = 0
    gaps: list[Gap] = field(default_factory=list)
    quarantined: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    spikes: list[Spike] = field(default_factory=list)

    @property
    def missing_bars(self) -> int:
        """Total bars missing inside the series' range."""
        return sum(gap.missing for gap in self.gaps)


@dataclass(frozen=True)
class FileProblem:
    """A source file that was rejected as a whole, with the error's message."""

    path: str
    error: str


def _empty_quarantine() -> pd.DataFrame:
    columns = [*REQUIRED_COLUMNS, *PROVENANCE_COLUMNS, *QUARANTINE_EXTRA]
    return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})


@dataclass
class ValidationReport:
    """What validation found, per series, plus the quarantined rows and rejected files.

    Attributes
    ----------
    series
        One :class:`AssetReport` per ``(dataset, asset, interval)``.
    quarantine
        Every quarantined row with its provenance and a ``reason`` column.
    file_problems
        Files rejected as a whole (checksum mismatch, truncated archive, ...).
    files_read
        Source files parsed.
    unverified_files
        Files read without a ``.CHECKSUM`` companion to verify them against.
    """

    series: dict[tuple[str, str, str], AssetReport] = field(default_factory=dict)
    quarantine: pd.DataFrame = field(default_factory=_empty_quarantine)
    file_problems: list[FileProblem] = field(default_factory=list)
    files_read: int = 0
    unverified_files: list[str] = field(default_factory=list)

    def get(self, asset: str, dataset: str = "bars", interval: str | None = None) -> AssetReport:
        """Return the report of one series.

        Raises
        ------
        KeyError
            If no such series was validated; the message lists the ones that were.
        """
        for (ds, name, iv), report in self.series.items():
            if ds == dataset and name == asset and (interval is None or iv == interval):
                return report
        known = ", ".join(f"{ds}:{a}:{iv}" for ds, a, iv in sorted(self.series))
        raise KeyError(f"no {dataset} series for {asset} {interval or ''} (have: {known})")

    @property
    def ok(self) -> bool:
        """True when no file was rejected (quarantined rows and gaps are not failures)."""
        return not self.file_problems

    def merge(self, other: ValidationReport) -> ValidationReport:
        """Combine two reports of *disjoint* series (e.g. bars and funding) into a new one."""
        overlap = set(self.series) & set(other.series)
        if overlap:
            raise ValueError(f"cannot merge reports that both cover {sorted(overlap)}")
        frames = [q for q in (self.quarantine, other.quarantine) if len(q)]
        return ValidationReport(
            series={**self.series, **other.series},
            quarantine=pd.concat(frames, ignore_index=True) if frames else _empty_quarantine(),
            file_problems=[*self.file_problems, *other.file_problems],
            files_read=self.files_read + other.files_read,
            unverified_files=[*self.unverified_files, *other.unverified_files],
        )

    def write_quarantine(self, directory: Path) -> Path | None:
        """Write the quarantined rows to ``directory/quarantine-<hash>.csv``.

        The name is a hash of the content, so writing the same report twice is idempotent.

        Returns
        -------
        pathlib.Path or None
            The file written, or ``None`` when nothing is quarantined.
        """
        if self.quarantine.empty:
            return None
        payload = self.quarantine.to_csv(index=False).encode()
        path = Path(directory) / f"quarantine-{hashlib.sha256(payload).hexdigest()[:16]}.csv"
        atomic_write_bytes(path, payload)
        return path


def validate_bars(
    bars: pd.DataFrame,
    interval: str,
    source: str = "",
    *,
    dataset: str = "bars",
    flow_optional: bool = False,
    spike_z: float = DEFAULT_SPIKE_Z,
    keep_provenance: bool = False,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Validate a Bars frame and split it into clean rows and quarantined rows.

    Parameters
    ----------
    bars
        Frame with the Bars columns; may carry :data:`PROVENANCE_COLUMNS`.
    interval
        Bar interval such as ``"1h"``; defines the time grid and the gaps.
    source
        Where the frame came from, used in messages when rows carry no provenance.
    dataset
        Report label: ``"bars"`` for spot, ``"perp"`` for perpetual bars.
    flow_optional
        Allow NaN in ``quote_volume``, ``trades`` and the taker columns (sources such as
        the perp OHLCV files have none). When False, NaN there quarantines the row.
    spike_z
        Robust z-score threshold for flagging return spikes.
    keep_provenance
        Keep :data:`PROVENANCE_COLUMNS` in the clean frame (the store uses them to name
        the source of a row that conflicts with stored data).

    Returns
    -------
    clean : pandas.DataFrame
        Valid rows with the Bars columns (plus any optional ones present), sorted by
        ``asset, ts``, unique per ``(asset, ts)``.
    report : ValidationReport
        Per-asset counts, gaps, spikes and the quarantined rows.

    Raises
    ------
    DataValidationError
        If a required column is missing or ``ts`` is not tz-aware.
    ConflictingDuplicateError
        If two different rows share an ``(asset, ts)``.

    Examples
    --------
    >>> from features.bars import empty_bars
    >>> clean, report = validate_bars(empty_bars(), "1h")
    >>> len(clean), report.ok
    (0, True)
    """
    step = interval_to_timedelta(interval)
    frame = _conform_schema(bars, source)
    frame, reordered = _sort_by_key(frame)

    reasons = _row_problems(frame, step, flow_optional)
    bad = reasons != ""
    quarantine = _to_quarantine(frame[bad], reasons[bad], dataset, interval)
    frame = frame[~bad]

    frame, dropped = _drop_identical_duplicates(frame)
    if not flow_optional or frame["trades"].notna().all():
        frame["trades"] = frame["trades"].astype("int64")

    optional = [c for c in frame.columns if c not in REQUIRED_COLUMNS + PROVENANCE_COLUMNS]
    kept = [*REQUIRED_COLUMNS, *optional, *(PROVENANCE_COLUMNS if keep_provenance else ())]
    clean = frame[kept].reset_index(drop=True)

    report = ValidationReport(quarantine=quarantine)
    assets = sorted(set(clean["asset"].unique()) | set(quarantine["asset"].dropna().unique()))
    ts_by_asset = _split_by_asset(clean)
    for asset in assets:
        ts, close = ts_by_asset.get(asset, (None, None))
        series = AssetReport(dataset=dataset, asset=str(asset), interval=interval)
        if ts is not None:
            series.rows = len(ts)
            series.first, series.last = ts[0], ts[-1]
            series.gaps = find_gaps(ts, step)
            series.spikes = find_spikes(ts, close, spike_z)
        series.duplicates_dropped = int(dropped.get(asset, 0))
        series.reordered = int(reordered.get(asset, 0))
        asset_q = quarantine[quarantine["asset"] == asset]
        series.quarantined = len(asset_q)
        series.quarantine_reasons = asset_q["reason"].value_counts().to_dict()
        report.series[(dataset, str(asset), interval)] = series
    return clean, report


def validate_funding(
    funding: pd.DataFrame, source: str = "", *, keep_provenance: bool = False
) -> tuple[pd.DataFrame, ValidationReport]:
    """Validate funding events (:data:`features.market.FUNDING_COLUMNS`).

    Non-finite rates and missing times are quarantined; identical duplicates dropped;
    conflicting ones raise :class:`ConflictingDuplicateError`. No gaps are computed:
    funding intervals legitimately change (8h, 4h, 1h).

    Returns
    -------
    clean : pandas.DataFrame
        ``ts, asset, funding_rate`` sorted by ``asset, ts``.
    report : ValidationReport
        One ``"funding"`` series per asset.
    """
    missing = [c for c in FUNDING_COLUMNS if c not in funding.columns]
    if missing:
        raise DataValidationError(
            f"{source or 'funding frame'}: missing column(s) {missing}; funding needs "
            f"{list(FUNDING_COLUMNS)}"
        )
    frame = _with_provenance(funding, source)
    frame["ts"] = _utc_ts(frame["ts"], source)
    frame["asset"] = frame["asset"].astype("string")
    frame["funding_rate"] = pd.to_numeric(frame["funding_rate"], errors="coerce").astype("float64")
    frame, reordered = _sort_by_key(frame)
    reasons = np.full(len(frame), "", dtype=object)
    _add_reason(reasons, frame["ts"].isna().to_numpy(), "missing timestamp")
    _add_reason(reasons, ~np.isfinite(frame["funding_rate"].to_numpy()), "non-finite rate")
    reasons = pd.Series(reasons, index=frame.index, dtype=object).str.rstrip("; ")
    bad = reasons != ""
    quarantine = _to_quarantine(frame[bad], reasons[bad], "funding", "")
    frame, dropped = _drop_identical_duplicates(frame[~bad], value_columns=["funding_rate"])
    kept = [*FUNDING_COLUMNS, *(PROVENANCE_COLUMNS if keep_provenance else ())]
    clean = frame[kept].reset_index(drop=True)

    report = ValidationReport(quarantine=quarantine)
    assets = sorted(set(clean["asset"].unique()) | set(quarantine["asset"].dropna().unique()))
    for asset in assets:
        ts = clean.loc[clean["asset"] == asset, "ts"]
        series = AssetReport(dataset="funding", asset=str(asset), interval="")
        series.rows = len(ts)
        if len(ts):
            series.first, series.last = ts.iloc[0], ts.iloc[-1]
        series.duplicates_dropped = int(dropped.get(asset, 0))
        series.reordered = int(reordered.get(asset, 0))
        asset_q = quarantine[quarantine["asset"] == asset]
        series.quarantined = len(asset_q)
        series.quarantine_reasons = asset_q["reason"].value_counts().to_dict()
        report.series[("funding", str(asset), "")] = series
    return clean, report


def find_gaps(ts: pd.DatetimeIndex | pd.Series | np.ndarray, step: pd.Timedelta) -> list[Gap]:
    """Runs of missing bars in a sorted, unique series of bar open times.

    Parameters
    ----------
    ts
        Bar open times of one asset, ascending.
    step
        The bar interval.

    Returns
    -------
    list of Gap
        One entry per run of missing bars, in time order.
    """
    index = pd.DatetimeIndex(ts)
    if len(index) < 2:
        return []
    values = index.asi8
    step_ns = step.value
    diffs = np.diff(values)
    where = np.flatnonzero(diffs > step_ns)
    tz = index.tz
    return [
        Gap(
            start=pd.Timestamp(values[i] + step_ns, tz=tz),
            end=pd.Timestamp(values[i + 1] - step_ns, tz=tz),
            missing=int(diffs[i] // step_ns) - 1,
        )
        for i in where
    ]


def robust_zscores(values: np.ndarray, window: int | None = None) -> np.ndarray:
    """Robust z-scores ``(x - median) / (1.4826 * MAD)``; NaN where the scale is zero.

    Parameters
    ----------
    values
        The series (NaN ignored).
    window
        ``None`` for one median and MAD over the whole series. An integer uses a trailing
        window of that many points for the scale (the median absolute deviation from the
        global median), so a move is judged against the volatility of its own regime
        rather than against a calm or wild decade.

    Notes
    -----
    The 1.4826 factor makes the MAD a consistent estimate of the standard deviation under
    normality, so thresholds read like ordinary z-scores.
    """
    values = np.asarray(values, dtype="float64")
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.full(values.shape, np.nan)
    median = np.median(finite)
    deviation = np.abs(values - median)
    if window is None or values.size <= window:
        scale = np.full(values.shape, np.nanmedian(deviation) * _MAD_TO_SIGMA)
    else:
        # The scale moves slowly, so evaluating the trailing median once per `stride`
        # points (and holding it in between) costs 1/stride of a full rolling median.
        stride = max(1, window // 30)
        # NaN returns get the typical deviation so that np.median (fast) can be used.
        filled = np.where(np.isfinite(deviation), deviation, np.nanmedian(deviation))
        windows = np.lib.stride_tricks.sliding_window_view(filled, window)[::stride]
        sampled = np.median(windows, axis=1)  # window k ends at point k*stride+window-1
        ends = np.arange(len(sampled)) * stride + window - 1
        held = np.searchsorted(ends, np.arange(values.size), side="right") - 1
        # Before the first full window, the scale of that first window stands in.
        scale = sampled[np.maximum(held, 0)]
        scale = scale * _MAD_TO_SIGMA
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (values - median) / scale
    z[~np.isfinite(scale) | (scale == 0)] = np.nan
    return z


SPIKE_WINDOW: Final[int] = 720
"""Trailing points (30 days of hourly bars) defining the local scale for spike z-scores."""


def find_spikes(
    ts: pd.DatetimeIndex, close: np.ndarray, threshold: float, window: int | None = SPIKE_WINDOW
) -> list[Spike]:
    """Bars whose log return from the previous bar has ``|robust z| > threshold``."""
    if len(close) < 3:
        return []
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.diff(np.log(np.asarray(close, dtype="float64")))
    z = robust_zscores(returns, window)
    hits = np.flatnonzero(np.abs(np.nan_to_num(z)) > threshold)
    return [Spike(ts=ts[i + 1], log_return=float(returns[i]), zscore=float(z[i])) for i in hits]


# --- helpers ---------------------------------------------------------------------------


def _with_provenance(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    out = frame.copy()
    if "source_file" not in out.columns:
        out["source_file"] = source
    if "source_row" not in out.columns:
        out["source_row"] = np.arange(1, len(out) + 1, dtype="int64")
    return out


def _utc_ts(ts: pd.Series, source: str) -> pd.Series:
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        if len(ts) == 0 or pd.api.types.is_datetime64_dtype(ts.dtype):
            if len(ts):
                raise DataValidationError(
                    f"{source or 'frame'}: column ts is timezone-naive ({ts.dtype}); "
                    "localize it to UTC (ts.dt.tz_localize('UTC')) if it is UTC, or convert it"
                )
            return pd.Series(ts, dtype="datetime64[ns, UTC]")
        raise DataValidationError(
            f"{source or 'frame'}: column ts has dtype {ts.dtype}, expected a tz-aware "
            "datetime; parse it with pd.to_datetime(..., utc=True)"
        )
    return ts.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


def _conform_schema(bars: pd.DataFrame, source: str) -> pd.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in bars.columns]
    if missing:
        raise DataValidationError(
            f"{source or 'bars frame'}: missing column(s) {missing}; the Bars contract "
            f"(features.bars.REQUIRED_COLUMNS) needs {list(REQUIRED_COLUMNS)}"
        )
    frame = _with_provenance(bars, source)
    frame["ts"] = _utc_ts(frame["ts"], source)
    frame["asset"] = frame["asset"].astype("string")
    for column in (*FLOAT_COLUMNS, "trades"):
        if not pd.api.types.is_float_dtype(frame[column].dtype):
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
        frame[column] = frame[column].astype("float64")
    return frame


def _sort_by_key(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Sort by asset then ts (stable) and count rows that came before an earlier time."""
    if frame.empty:
        return frame, {}
    ts = frame["ts"].to_numpy(dtype="datetime64[ns]")
    asset = frame["asset"]
    # pandas comparison, not numpy: a missing asset (<NA>) must compare as "different".
    same = (asset == asset.shift()).fillna(False).to_numpy(dtype=bool)
    back = np.r_[False, ts[1:] < ts[:-1]] & same
    reordered: dict[str, int] = {}
    if back.any():
        reordered = asset[back].value_counts().to_dict()
    runs = asset[~same]
    in_order = not back.any() and runs.is_unique and runs.is_monotonic_increasing
    if not in_order:
        frame = frame.sort_values(["asset", "ts"], kind="stable")
    return frame, reordered


def _add_reason(reasons: np.ndarray, mask: np.ndarray, label: str) -> None:
    if mask.any():
        reasons[mask] = reasons[mask] + (label + "; ")


def _row_problems(frame: pd.DataFrame, step: pd.Timedelta, flow_optional: bool) -> pd.Series:
    """One reason string per row ("" when the row is fine), reasons joined by '; '."""
    n = len(frame)
    reasons = np.full(n, "", dtype=object)
    ts = frame["ts"]
    ts_ns = ts.to_numpy(dtype="datetime64[ns]").astype("int64")
    _add_reason(reasons, ts.isna().to_numpy(), "missing timestamp")
    _add_reason(
        reasons,
        ts.notna().to_numpy() & (ts_ns % step.value != 0),
        f"ts not on the {_fmt_step(step)} grid",
    )
    _add_reason(reasons, frame["asset"].isna().to_numpy(), "missing asset")
    prices = {c: frame[c].to_numpy() for c in PRICE_COLUMNS}
    for column, values in prices.items():
        _add_reason(reasons, ~np.isfinite(values), f"non-finite {column}")
        _add_reason(reasons, values <= 0, f"non-positive {column}")
    with np.errstate(invalid="ignore"):
        top = np.maximum(prices["open"], prices["close"])
        bottom = np.minimum(prices["open"], prices["close"])
        _add_reason(
            reasons,
            (prices["high"] < top) | (prices["low"] > bottom) | (prices["high"] < prices["low"]),
            "OHLC inconsistent (high < max(open, close) or low > min(open, close))",
        )
    volume = frame["volume"].to_numpy()
    _add_reason(reasons, ~np.isfinite(volume), "non-finite volume")
    _add_reason(reasons, volume < 0, "negative volume")
    for column in FLOW_COLUMNS:
        values = frame[column].to_numpy()
        if not flow_optional:
            _add_reason(reasons, np.isnan(values), f"missing {column}")
        _add_reason(reasons, np.isinf(values) | (values < 0), f"invalid {column}")
    with np.errstate(invalid="ignore"):
        taker = frame["taker_buy_volume"].to_numpy()
        _add_reason(reasons, taker > volume * (1 + _SUBTOTAL_RTOL), "taker_buy_volume > volume")
        taker_q = frame["taker_buy_quote_volume"].to_numpy()
        quote = frame["quote_volume"].to_numpy()
        _add_reason(
            reasons,
            taker_q > quote * (1 + _SUBTOTAL_RTOL),
            "taker_buy_quote_volume > quote_volume",
        )
    return pd.Series(reasons, index=frame.index, dtype=object).str.rstrip("; ")


def _fmt_step(step: pd.Timedelta) -> str:
    seconds = int(step.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return str(step)


def _to_quarantine(
    rows: pd.DataFrame, reasons: pd.Series, dataset: str, interval: str
) -> pd.DataFrame:
    if rows.empty:
        return _empty_quarantine()
    out = rows.copy()
    out["dataset"] = dataset
    out["interval"] = interval
    out["reason"] = reasons.to_numpy()
    if "raw" not in out.columns:
        out["raw"] = None
    return out.reset_index(drop=True)


def _drop_identical_duplicates(
    frame: pd.DataFrame, value_columns: Iterable[str] | None = None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop exact repeats of an ``(asset, ts)`` row; raise on repeats that differ."""
    key = ["asset", "ts"]
    repeated = frame.duplicated(key, keep=False)
    if not repeated.any():
        return frame, {}
    values = (
        list(value_columns)
        if value_columns is not None
        else [c for c in frame.columns if c not in (*key, *PROVENANCE_COLUMNS, "raw")]
    )
    candidates = frame[repeated]
    distinct = candidates.drop_duplicates(subset=[*key, *values])
    conflicting = distinct[distinct.duplicated(key, keep=False)]
    if len(conflicting):
        _raise_conflict(conflicting, values)
    extra = frame.duplicated(key, keep="first")
    dropped = frame.loc[extra, "asset"].value_counts().to_dict()
    return frame[~extra], dropped


def _raise_conflict(conflicting: pd.DataFrame, values: list[str]) -> None:
    first_key = conflicting.iloc[0][["asset", "ts"]]
    pair = conflicting[
        (conflicting["asset"] == first_key["asset"]) & (conflicting["ts"] == first_key["ts"])
    ].head(2)
    a, b = pair.iloc[0], pair.iloc[1]
    differing = [c for c in values if not (a[c] == b[c] or (pd.isna(a[c]) and pd.isna(b[c])))]

    def describe(row: pd.Series) -> str:
        shown = ", ".join(f"{c}={row[c]}" for c in differing)
        return f"[{row['source_file']} row {row['source_row']}: {shown}]"

    n_keys = len(conflicting.drop_duplicates(["asset", "ts"]))
    raise ConflictingDuplicateError(
        str(first_key["asset"]), first_key["ts"], describe(a), describe(b), differing, n_keys
    )


def _split_by_asset(clean: pd.DataFrame) -> dict[str, tuple[pd.DatetimeIndex, np.ndarray]]:
    """Per asset: (ts index, close array) views of a frame sorted by asset, ts."""
    if clean.empty:
        return {}
    asset = clean["asset"].to_numpy(dtype=object)
    starts = np.r_[0, np.flatnonzero(asset[1:] != asset[:-1]) + 1, len(asset)]
    ts = pd.DatetimeIndex(clean["ts"])
    close = clean["close"].to_numpy()
    return {str(asset[lo]): (ts[lo:hi], close[lo:hi]) for lo, hi in itertools.pairwise(starts)}
