"""The scheduled US macro calendar (FOMC, CPI, payrolls), read in place, with as-of validity.

``<root>/events/us_macro_events.csv`` lists every release with its UTC instant and whether
it was scheduled in advance; ``us_macro_events_irregular.csv`` lists cancelled and moved
releases (``../shared/data/events/README.md`` is the reference). This module turns both
into one frame of *expectations* (:data:`features.market.EVENT_COLUMNS`) that says, for each
release, from when to when a model may know of it:

- a **scheduled** release is public long before it happens: from ``schedule_known_by``
  where the calendar gives a date, else :data:`SCHEDULE_LEAD` before the release (the Fed
  and the BLS publish their calendars about a year ahead or more);
- an **unscheduled** release (the March 2020 emergency FOMC actions) is known only from its
  ``release_utc``;
- a **cancelled** or **moved** release stays expected at its original time until the change
  is known: until the new date's ``schedule_known_by`` for a move, and, lacking a dated
  announcement, until its original time (the conservative reading: never earlier than the
  world could know).

Only the time of a release is used, never its content (the files hold none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pandas as pd

from features.errors import MalformedFileError
from features.market import EVENT_COLUMNS, empty_events

__all__ = ["EVENTS_FILE", "IRREGULAR_FILE", "SCHEDULE_LEAD", "read_macro_calendar"]

EVENTS_FILE: Final[str] = "us_macro_events.csv"
IRREGULAR_FILE: Final[str] = "us_macro_events_irregular.csv"
SCHEDULE_LEAD: Final[pd.Timedelta] = pd.Timedelta(days=180)
"""How long before a scheduled release, at the latest, its time is taken to be public when
the calendar gives no ``schedule_known_by`` date (FOMC calendars come 1-2 years ahead, BLS
calendars a year ahead; half a year is a safe lower bound)."""

_REQUIRED: Final[tuple[str, ...]] = ("event", "release_utc", "scheduled")


def read_macro_calendar(root: Path | str) -> pd.DataFrame:
    """The expectation calendar of ``root/events`` (or of ``root`` if it is that folder).

    Returns
    -------
    pandas.DataFrame
        :data:`features.market.EVENT_COLUMNS`, sorted by ``release_utc``; empty when there
        is no ``events/`` folder.

    Raises
    ------
    MalformedFileError
        If a file lacks a required column or holds an unparsable time or flag.
    """
    base = Path(root)
    base = base if base.name == "events" else base / "events"
    path = base / EVENTS_FILE
    if not path.is_file():
        return empty_events()
    main = _read(path, _REQUIRED)
    release = _stamp(main["release_utc"], path)
    scheduled = _flag(main["scheduled"], path)
    known_by = _stamp(main.get("schedule_known_by", pd.Series(index=main.index)), path)
    lead = release - SCHEDULE_LEAD
    known_from = known_by.where(known_by.notna(), lead)
    known_from = known_from.where(scheduled, release)
    frame = pd.DataFrame(
        {
            "event": main["event"].astype("string"),
            "release_utc": release,
            "scheduled": scheduled,
            "known_from": known_from,
            "known_until": pd.Series(pd.NaT, index=main.index, dtype="datetime64[ns, UTC]"),
        }
    )
    # A moved release's new date is known from its schedule_known_by (the announcement).
    announced = dict(zip(release[known_by.notna()], known_by[known_by.notna()], strict=True))
    irregular = base / IRREGULAR_FILE
    if irregular.is_file():
        frame = pd.concat([frame, _withdrawn(irregular, announced)], ignore_index=True)
    frame = frame.sort_values(["release_utc", "event"], kind="stable").reset_index(drop=True)
    return frame[list(EVENT_COLUMNS)]


def _withdrawn(path: Path, announced: dict[pd.Timestamp, pd.Timestamp]) -> pd.DataFrame:
    """Cancelled and moved releases as expectations that end when the change is known."""
    raw = _read(path, ("event", "original_release_utc", "status"))
    raw = raw.loc[raw["status"].isin(["cancelled", "rescheduled"])]
    # Excluded items are not releases at all; items without a time of day cannot be placed.
    original = _stamp(raw["original_release_utc"], path)
    actual = _stamp(raw.get("actual_release_utc", pd.Series(index=raw.index)), path)
    until = pd.Series(
        [announced.get(a, o) if pd.notna(a) else o for a, o in zip(actual, original, strict=True)],
        index=raw.index,
        dtype="datetime64[ns, UTC]",
    )
    until = until.where(until <= original, original)
    return pd.DataFrame(
        {
            "event": raw["event"].astype("string"),
            "release_utc": original,
            "scheduled": True,
            "known_from": original - SCHEDULE_LEAD,
            "known_until": until,
        }
    )


def _read(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise MalformedFileError(path, f"cannot be read as CSV ({exc})") from exc
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise MalformedFileError(path, f"lacks column(s) {missing}")
    return raw


def _stamp(values: pd.Series, path: Path) -> pd.Series:
    text = values.fillna("").astype(str).str.strip()
    try:
        stamps = pd.to_datetime(text.where(text != "", None), utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise MalformedFileError(path, f"holds an unparsable time ({exc})") from exc
    return pd.Series(stamps, index=values.index).astype("datetime64[ns, UTC]")


def _flag(values: pd.Series, path: Path) -> pd.Series:
    text = values.astype(str).str.strip().str.lower()
    bad = ~text.isin(["true", "false"])
    if bad.any():
        raise MalformedFileError(path, f"scheduled must be true/false, got {text[bad].iloc[0]!r}")
    return text == "true"
