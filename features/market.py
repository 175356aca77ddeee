"""The market-data bundle that sources produce and feature builders consume."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Final

import pandas as pd

from features.errors import MarketDataError

FUNDING_COLUMNS: Final[tuple[str, ...]] = ("ts", "asset", "funding_rate")
"""Funding events: ``ts`` is the UTC funding (settlement) time, ``funding_rate`` per interval."""

POSITIONING_COLUMNS: Final[tuple[str, ...]] = (
    "ts",
    "asset",
    "open_interest",
    "long_liquidations_usd",
    "short_liquidations_usd",
)
"""Daily positioning: ``ts`` is the instant the row is *known* (the day's close, open + 1 day);
open interest in coins at that close, liquidated notional (USD) over the day. NaN where the
source has no value (open interest exists for fewer assets than liquidations)."""

EVENT_COLUMNS: Final[tuple[str, ...]] = (
    "event",
    "release_utc",
    "scheduled",
    "known_from",
    "known_until",
)
"""Macro calendar (:mod:`features.macro_calendar`): one row per expected release. A row may
be used from ``known_from`` (a scheduled release long before it happens, an unscheduled one
only from ``release_utc``) until ``known_until`` (NaT: never withdrawn; a cancelled or moved
release stops being expected there). Market-wide: no ``asset`` column."""


def empty_positioning() -> pd.DataFrame:
    """A positioning frame with no rows and the :data:`POSITIONING_COLUMNS` dtypes."""
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in POSITIONING_COLUMNS})
    frame["ts"] = pd.Series(dtype="datetime64[ns, UTC]")
    frame["asset"] = pd.Series(dtype="string")
    return frame


def empty_events() -> pd.DataFrame:
    """An event calendar with no rows and the :data:`EVENT_COLUMNS` dtypes."""
    stamp = "datetime64[ns, UTC]"
    return pd.DataFrame(
        {
            "event": pd.Series(dtype="string"),
            "release_utc": pd.Series(dtype=stamp),
            "scheduled": pd.Series(dtype="bool"),
            "known_from": pd.Series(dtype=stamp),
            "known_until": pd.Series(dtype=stamp),
        }
    )


@dataclass(frozen=True)
class MarketData:
    """Everything known about a set of assets at one bar interval.

    Attributes
    ----------
    bars
        Spot bars in the Bars contract (:mod:`features.bars`), sorted by ``asset, ts``.
    funding
        Perpetual funding events (:data:`FUNDING_COLUMNS`), sorted by ``asset, ts``;
        empty where no perpetual exists.
    perp
        Perpetual OHLCV bars with the Bars columns; taker and trade-count columns are NaN
        where the source has none. Empty where no perpetual exists.
    positioning
        Daily open interest and liquidations (:data:`POSITIONING_COLUMNS`), stamped at the
        time each row is known; empty where the source has none.
    events
        The scheduled-macro calendar (:data:`EVENT_COLUMNS`); empty where none is given.
    interval
        Bar interval, e.g. ``"1h"``.
    source
        Human-readable origin, e.g. ``"binance-dump:/path"`` or ``"synthetic(seed=7)"``.
    """

    bars: pd.DataFrame
    funding: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            {
                "ts": pd.Series(dtype="datetime64[ns, UTC]"),
                "asset": pd.Series(dtype="string"),
                "funding_rate": pd.Series(dtype="float64"),
            }
        )
    )
    perp: pd.DataFrame = field(default_factory=pd.DataFrame)
    positioning: pd.DataFrame = field(default_factory=empty_positioning)
    events: pd.DataFrame = field(default_factory=empty_events)
    interval: str = "1h"
    source: str = ""

    @property
    def assets(self) -> list[str]:
        """Assets present in the spot bars, sorted."""
        return sorted(self.bars["asset"].astype(str).unique().tolist())

    def select(self, assets: Sequence[str]) -> MarketData:
        """The same market restricted to ``assets`` (bars, funding and perp).

        Raises
        ------
        MarketDataError
            Naming the assets that are not in the bars.
        """
        wanted = {str(a) for a in assets}
        missing = sorted(wanted - set(self.assets))
        if missing:
            raise MarketDataError(
                f"assets {missing} are not in the market {self.source or ''} (it has {self.assets})"
            )

        def keep(frame: pd.DataFrame) -> pd.DataFrame:
            if frame.empty or "asset" not in frame.columns:
                return frame
            return frame.loc[frame["asset"].astype(str).isin(wanted)].reset_index(drop=True)

        return replace(
            self,
            bars=keep(self.bars),
            funding=keep(self.funding),
            perp=keep(self.perp),
            positioning=keep(self.positioning),
        )
