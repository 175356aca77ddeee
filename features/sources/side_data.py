"""Positioning and the macro calendar for the live path, as known at a bar's close.

The batch path reads ``positioning/`` and ``events/`` of a data root in place
(:func:`features.positioning.read_positioning`, :func:`features.macro_calendar.read_macro_calendar`)
and the feature builders apply the point-in-time rule row by row. The live path must hand the
builders the same rows *as they were known at the close of the bar being published*, so that
the live row equals the batch row of the same time and nothing later leaks in:

- a **positioning** row (stamped at the instant it is known: a daily value at its day's
  close) is usable from that instant on: ``ts <= close``;
- a **calendar** row is usable from its ``known_from`` on: a scheduled release long before
  it happens, an unscheduled one only from its release (:mod:`features.macro_calendar`).

There is no live REST source for these series that works offline: Binance publishes no
liquidation history (the files are Coinglass's aggregation) and the open interest of the
files is the daily metrics dump, published a day late. So the live path reads the same
files in place (:class:`SideFiles`, re-read when a file changes) or the side tables the work
dir's store holds (:class:`StoreSideData`), and cuts them at the bar close with
:func:`known_at`, the one place this rule lives.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import pandas as pd

from contracts.timestamps import utc_timestamp
from features.macro_calendar import read_macro_calendar
from features.market import empty_events, empty_positioning
from features.positioning import read_positioning
from features.store import MarketStore

__all__ = ["SideData", "SideFiles", "StoreSideData", "known_at"]


def known_at(
    positioning: pd.DataFrame,
    events: pd.DataFrame,
    close: pd.Timestamp,
    assets: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The positioning rows and calendar rows known at ``close`` (inclusive).

    Parameters
    ----------
    positioning
        :data:`features.market.POSITIONING_COLUMNS`, ``ts`` = when each row is known.
    events
        :data:`features.market.EVENT_COLUMNS`.
    close
        The instant of knowledge (a bar's close).
    assets
        Keep the positioning of these assets only (``None``: all).

    Returns
    -------
    tuple of pandas.DataFrame
        ``(positioning, events)`` with ``positioning.ts <= close`` and
        ``events.known_from <= close``.
    """
    close = utc_timestamp(close)
    if len(positioning):
        keep = positioning["ts"] <= close
        if assets is not None:
            keep &= positioning["asset"].astype(str).isin({str(a) for a in assets})
        positioning = positioning.loc[keep].reset_index(drop=True)
    else:
        positioning = empty_positioning()
    if len(events):
        events = events.loc[events["known_from"] <= close].reset_index(drop=True)
    else:
        events = empty_events()
    return positioning, events


@runtime_checkable
class SideData(Protocol):
    """Where the live path gets positioning and the macro calendar from."""

    @property
    def name(self) -> str:
        """Human-readable origin (for logs and the feature set's source)."""
        ...

    def as_of(
        self, close: pd.Timestamp, assets: Sequence[str] | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(positioning, events)`` known at ``close`` (:func:`known_at`)."""
        ...


class SideFiles:
    """``positioning/`` and ``events/`` of a data root (like ``../shared/data``), read in place.

    The files are read with the batch path's own readers and cached; a file whose
    modification time or size changed is read again at the next :meth:`as_of`, so new days
    appended by whoever maintains the files are picked up without a restart.

    Parameters
    ----------
    root
        A data root holding ``positioning/`` and/or ``events/``.

    Raises
    ------
    FileNotFoundError
        If ``root`` holds neither folder (a typo must not silently mean "no data").
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        if not (self.root / "positioning").is_dir() and not (self.root / "events").is_dir():
            raise FileNotFoundError(
                f"{self.root}: no positioning/ or events/ folder; give a data root laid out "
                "like ../shared/data"
            )
        self._stamp: tuple[tuple[str, int, int], ...] | None = None
        self._positioning = empty_positioning()
        self._events = empty_events()

    @property
    def name(self) -> str:
        """``files:<root>``."""
        return f"files:{self.root}"

    def as_of(
        self, close: pd.Timestamp, assets: Sequence[str] | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(positioning, events)`` of the files known at ``close``."""
        self._refresh()
        return known_at(self._positioning, self._events, close, assets)

    def _refresh(self) -> None:
        stamp = tuple(
            (str(path), path.stat().st_mtime_ns, path.stat().st_size)
            for folder in ("positioning", "events")
            for path in sorted((self.root / folder).rglob("*"))
            if path.is_file()
        )
        if stamp == self._stamp:
            return
        self._positioning = read_positioning(self.root)
        self._events = read_macro_calendar(self.root)
        self._stamp = stamp


class StoreSideData:
    """The ``positioning`` and ``events`` side tables of a store (what a batch ingest wrote)."""

    def __init__(self, store: MarketStore) -> None:
        self.store = store

    @property
    def name(self) -> str:
        """``store:<root>``."""
        return f"store:{self.store.root}"

    def as_of(
        self, close: pd.Timestamp, assets: Sequence[str] | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(positioning, events)`` of the store's side tables known at ``close``."""
        return known_at(
            self.store.read_table("positioning"), self.store.read_table("events"), close, assets
        )
