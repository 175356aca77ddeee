"""Daily open interest and liquidations read in place from a ``positioning/`` folder.

The folder is laid out like ``../shared/data/positioning`` (its README is the reference)::

    liquidations_1d/BTCUSDT.csv.gz     ts, long_liquidations_usd, short_liquidations_usd
    open_interest_1d/BTCUSDT.csv.gz    ts, open_interest

``ts`` there is the bar *open*; a daily value is known only at the day's close. This module
restamps every row at that close, so the bundle's ``ts`` is the instant the row becomes
known and the feature builders (and the generic look-ahead check, which perturbs rows by
``ts``) need no further rule. Nothing is filled: a day the source lacks stays absent, an
asset without open interest has NaN there, liquidation days before the source's 2021-04-27
level break are dropped (they are not comparable with later ones), and a non-positive open
interest (the source's placeholder for a missing day) is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from contracts.timestamps import utc_timestamp
from features.errors import MalformedFileError
from features.market import POSITIONING_COLUMNS, empty_positioning

__all__ = ["LIQUIDATIONS_COMPARABLE_FROM", "POSITIONING_BAR", "read_positioning"]

POSITIONING_BAR: Final[pd.Timedelta] = pd.Timedelta(days=1)
"""Length of a positioning bar; a row is known at its open plus this."""

LIQUIDATIONS_COMPARABLE_FROM: Final[pd.Timestamp] = pd.Timestamp("2021-04-27", tz="UTC")
"""Liquidation totals drop sharply from this day on (Binance began publishing at most one
liquidation per symbol per second); earlier days measure something else and are dropped."""

_FILES: Final[dict[str, tuple[str, ...]]] = {
    "liquidations_1d": ("long_liquidations_usd", "short_liquidations_usd"),
    "open_interest_1d": ("open_interest",),
}


def read_positioning(
    root: Path | str,
    assets: Sequence[str] | None = None,
    end: pd.Timestamp | str | None = None,
) -> pd.DataFrame:
    """Daily positioning of ``assets`` under ``root/positioning``, stamped when known.

    Parameters
    ----------
    root
        A data root holding ``positioning/`` (like ``../shared/data``), or that folder.
    assets
        Symbols to keep (``None``: every file found).
    end
        Keep rows *known* before this instant (``ts < end``).

    Returns
    -------
    pandas.DataFrame
        :data:`features.market.POSITIONING_COLUMNS`, sorted by ``asset, ts``; empty when
        there is no ``positioning/`` folder.

    Raises
    ------
    MalformedFileError
        If a file lacks its columns, repeats a day, or holds an unparsable time or value.
    """
    base = Path(root)
    base = base if base.name == "positioning" else base / "positioning"
    if not base.is_dir():
        return empty_positioning()
    wanted = None if assets is None else {a.upper() for a in assets}
    parts: dict[str, list[pd.DataFrame]] = {}
    for folder, columns in _FILES.items():
        for path in sorted((base / folder).glob("*.csv.gz")):
            asset = path.name.removesuffix(".csv.gz").upper()
            if wanted is not None and asset not in wanted:
                continue
            parts.setdefault(asset, []).append(_read_file(path, columns))
    if not parts:
        return empty_positioning()
    frames = []
    for asset, pieces in sorted(parts.items()):
        joined = pd.concat(pieces, axis=1, join="outer").sort_index()
        joined = joined.reindex(columns=list(POSITIONING_COLUMNS[2:]))
        frame = joined.rename_axis("ts").reset_index()
        frame.insert(1, "asset", asset)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out["asset"] = out["asset"].astype("string")
    if end is not None:
        out = out.loc[out["ts"] < utc_timestamp(end)]
    return out[list(POSITIONING_COLUMNS)].reset_index(drop=True)


def _read_file(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """One CSV, indexed by the instant each row is known (bar open + one day)."""
    try:
        raw = pd.read_csv(path)
    except (OSError, ValueError, EOFError) as exc:
        raise MalformedFileError(path, f"cannot be read as gzip CSV ({exc})") from exc
    missing = [c for c in ("ts", *columns) if c not in raw.columns]
    if missing:
        raise MalformedFileError(path, f"lacks column(s) {missing}")
    try:
        opens = pd.to_datetime(raw["ts"], utc=True, format="ISO8601")
        values = raw[list(columns)].apply(pd.to_numeric, errors="raise").astype("float64")
    except (ValueError, TypeError) as exc:
        raise MalformedFileError(path, f"holds an unparsable time or value ({exc})") from exc
    if opens.duplicated().any():
        raise MalformedFileError(path, f"repeats the day {opens[opens.duplicated()].iloc[0]}")
    if "long_liquidations_usd" in values:
        values = values.loc[(opens >= LIQUIDATIONS_COMPARABLE_FROM).to_numpy()]
        opens = opens.loc[values.index]
    if "open_interest" in values:
        # The source writes 0 for a day it lacks: missing, never a real zero.
        values.loc[~(values["open_interest"] > 0), "open_interest"] = np.nan
    values.index = pd.DatetimeIndex(opens + POSITIONING_BAR).astype("datetime64[ns, UTC]")
    return values.dropna(how="all")
