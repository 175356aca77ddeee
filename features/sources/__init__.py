"""Market-data sources and the single entry point that loads them.

:func:`load_market` reads a directory laid out like ``../shared/data``::

    binance/data/spot/monthly/klines/SYM/IV/SYM-IV-YYYY-MM.zip     spot bars
    binance/data/futures/um/monthly/fundingRate/SYM/*.zip          funding
    perp_ohlcv/SYM_perp_IV_ohlcv.csv.gz                            perpetual bars

validates it (:mod:`features.validation`) and returns a :class:`~features.market.MarketData`
with its :class:`~features.validation.ValidationReport`. Every command that reads market data
from a directory goes through it; the Parquet store (:mod:`features.store`) serves the same
bundle from the work dir.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from contracts.timestamps import optional_utc_timestamp
from features.bars import empty_bars
from features.macro_calendar import read_macro_calendar
from features.market import FUNDING_COLUMNS, MarketData
from features.positioning import read_positioning
from features.sources.dump import OnFileError, read_batch, select_files
from features.sources.perp import load_perp
from features.validation import ValidationReport

__all__ = ["load_market"]


def load_market(
    root: Path,
    interval: str = "1h",
    assets: Sequence[str] | None = None,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
    *,
    verify_checksums: bool = True,
    on_file_error: OnFileError = "raise",
    workers: int = 2,
) -> tuple[MarketData, ValidationReport]:
    """Load, validate and bundle the market data under ``root``.

    Parameters
    ----------
    root
        Directory laid out like ``../shared/data`` (``binance/``, ``perp_ohlcv/``); the
        ``binance/`` directory itself is accepted too (then there is no perp data).
    interval
        Spot and perp bar interval, e.g. ``"1h"`` or ``"2h"``.
    assets
        Symbols such as ``["BTCUSDT", "ETHUSDT"]``; ``None`` takes every symbol with spot
        bars at ``interval``. Funding and perp data are kept for these assets only.
    start, end
        UTC bounds, ``start <= ts < end`` (strings are parsed; naive means UTC).
    verify_checksums
        Check each zip against its ``.CHECKSUM`` companion when present.
    on_file_error
        ``"raise"`` (default) stops at the first unreadable file; ``"skip"`` records it in
        ``report.file_problems`` and loads everything else.
    workers
        Threads parsing files concurrently.

    Returns
    -------
    market : MarketData
        Spot bars, funding events and perp bars, each sorted by ``asset, ts``.
    report : ValidationReport
        Per-series rows, first/last bar, duplicates, gaps, quarantined rows and spikes.

    Raises
    ------
    FileNotFoundError
        If ``root`` is not laid out like a dump.
    ValueError
        If ``assets`` names a symbol with no spot bars at ``interval``.
    MalformedFileError, ChecksumMismatchError, ConflictingDuplicateError
        See :func:`features.sources.dump.read_batch`.

    Examples
    --------
    >>> market, report = load_market(Path("../shared/data"), "1h", ["BTCUSDT"])  # doctest: +SKIP
    >>> report.get("BTCUSDT").first
    Timestamp('2017-08-17 04:00:00+0000', tz='UTC')
    """
    root = Path(root)
    start_ts, end_ts = optional_utc_timestamp(start), optional_utc_timestamp(end)
    files = select_files(root, (interval,), assets, start_ts, end_ts, funding=True)
    spot_symbols = {f.symbol for f in files if f.kind == "klines"}
    if assets is not None:
        unknown = sorted({a.upper() for a in assets} - spot_symbols)
        if unknown:
            raise ValueError(
                f"{root}: no {interval} spot bars for {unknown} in the requested period; "
                f"available: {sorted(spot_symbols) or 'none'}"
            )
    # Funding without spot bars (e.g. LTCUSDT) has nothing to attach to.
    files = [f for f in files if f.symbol in spot_symbols]
    batch = read_batch(
        files,
        verify=verify_checksums,
        on_file_error=on_file_error,
        workers=workers,
        start=start_ts,
        end=end_ts,
    )
    report = batch.report
    bars = batch.bars.get(interval)
    if bars is None:
        bars = empty_bars()
    perp = empty_bars()
    if (root / "perp_ohlcv").is_dir():
        perp, perp_report = load_perp(root, interval, sorted(spot_symbols), start_ts, end_ts)
        report = report.merge(perp_report)
    # Positioning and the macro calendar are read in place, when the root has them.
    market = MarketData(
        bars=bars,
        funding=batch.funding[list(FUNDING_COLUMNS)].reset_index(drop=True),
        perp=perp,
        positioning=read_positioning(root, sorted(spot_symbols), end=end_ts),
        events=read_macro_calendar(root),
        interval=interval,
        source=f"binance-dump:{root}",
    )
    return market, report
