"""The macro-event family: how far the bar close is from scheduled US macro releases.

A scheduled release (FOMC decision, CPI, payrolls) is public well before it happens, so the
time to the next one is known at every bar and anticipates the volatility that follows it;
an unscheduled one enters only from its release time. Each row of the calendar carries that
rule as ``known_from``/``known_until`` (:mod:`features.macro_calendar`); here a release
counts at a bar close ``t`` as *expected* when ``known_from <= t < known_until`` and
``release_utc > t``, and as *past* when ``release_utc <= t`` and it was not withdrawn.
The calendar is market-wide: every asset gets the same values. Outside the calendar's span
(and without a calendar) the columns are NaN.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

from features.columns.inputs import AssetInputs
from features.columns.registry import ColumnNames, Columns

__all__ = ["CAP_HOURS", "add_event_columns"]

FAMILY = "macro_event"
CAP_HOURS: Final[float] = 168.0
"""Hours-to and hours-since are capped here: beyond a week the distance carries no signal."""
_HOUR_NS: Final[int] = pd.Timedelta(hours=1).value
_NEVER: Final[int] = np.iinfo(np.int64).max


def add_event_columns(
    cols: Columns, names: ColumnNames, grid: pd.DataFrame, inputs: AssetInputs
) -> None:
    """Add the macro-event columns of one asset, in catalog order.

    Parameters
    ----------
    cols
        The collector the columns are added to.
    names
        Naming and window conversion for the config and interval.
    grid
        The asset's complete grid; only ``ts`` is read.
    inputs
        The market's event calendar (``inputs.events``).
    """
    close = (pd.DatetimeIndex(grid["ts"]) + names.step).asi8
    window = names.day
    values = _event_values(inputs.events, close, window)
    cap = f"capped at {CAP_HOURS:g}"
    cols.add(
        "event_hours_to_next",
        FAMILY,
        "calendar",
        f"hours from the bar close to the next expected macro release, {cap}",
        values["to_next"],
    )
    cols.add(
        f"event_next_{window}h",
        FAMILY,
        "calendar",
        f"expected macro releases in (close, close + {window}h]",
        values["next"],
    )
    cols.add(
        f"fomc_next_{window}h",
        FAMILY,
        "calendar",
        f"expected FOMC decisions in (close, close + {window}h]",
        values["fomc_next"],
    )
    cols.add(
        "event_hours_since_last",
        FAMILY,
        "calendar",
        f"hours since the last macro release at or before the close (scheduled or not), {cap}",
        values["since"],
    )


def _event_values(
    events: pd.DataFrame, close: np.ndarray, window_hours: int
) -> dict[str, np.ndarray]:
    n = len(close)
    nan = {k: np.full(n, np.nan) for k in ("to_next", "next", "fomc_next", "since")}
    if events is None or not len(events) or not n:
        return nan
    release = pd.DatetimeIndex(events["release_utc"]).asi8
    known_from = pd.DatetimeIndex(events["known_from"]).asi8
    until = pd.DatetimeIndex(events["known_until"])
    known_until = np.where(until.isna(), _NEVER, until.asi8)
    fomc = (events["event"].astype(str) == "fomc").to_numpy()
    # Rows that cannot be expected at any of these bars change nothing below: released
    # before the first bar, known only after the last, or withdrawn before the first. An
    # hourly incremental update spans weeks, so this leaves a few dozen of ~330 rows.
    live = (release > close.min()) & (known_from <= close.max()) & (known_until > close.min())
    horizon = window_hours * _HOUR_NS
    cap = int(CAP_HOURS * _HOUR_NS)
    next_release = np.full(n, _NEVER, dtype=np.int64)
    count = np.zeros(n)
    fomc_count = np.zeros(n)
    # A loop over calendar rows (a few hundred) with vector work over bars.
    for r in np.flatnonzero(live):
        expected = (close >= known_from[r]) & (close < known_until[r]) & (close < release[r])
        next_release = np.where(expected, np.minimum(next_release, release[r]), next_release)
        soon = expected & (release[r] - close <= horizon)
        count += soon
        if fomc[r]:
            fomc_count += soon
    happened = np.sort(release[known_until == _NEVER])
    pos = np.searchsorted(happened, close, side="right") - 1
    since = np.where(pos >= 0, close - happened[np.clip(pos, 0, None)], cap)
    to_next = np.where(next_release == _NEVER, cap, next_release - close)
    covered = (close >= release.min()) & (close <= release.max() - cap)
    return {
        "to_next": np.where(covered, np.minimum(to_next, cap) / _HOUR_NS, np.nan),
        "next": np.where(covered, count, np.nan),
        "fomc_next": np.where(covered, fomc_count, np.nan),
        "since": np.where(covered, np.minimum(since, cap) / _HOUR_NS, np.nan),
    }
