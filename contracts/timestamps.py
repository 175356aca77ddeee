"""UTC times: the one rule for turning a user's or a file's time into a tz-aware UTC time.

Two readings exist and each has one function:

* :func:`utc_timestamp` / :func:`utc_datetime`: a naive value *means* UTC (command-line
  dates, file bounds, test periods);
* :func:`aware_utc`: a naive value is an error (decision and publication times, which must
  never be guessed).

Examples
--------
>>> utc_timestamp("2024-07-01")
Timestamp('2024-07-01 00:00:00+0000', tz='UTC')
>>> utc_timestamp("2024-07-01T02:00+02:00")
Timestamp('2024-07-01 00:00:00+0000', tz='UTC')
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from contracts.errors import NaiveTimeError

TimeLike = str | datetime | pd.Timestamp


def utc_timestamp(value: TimeLike) -> pd.Timestamp:
    """``value`` as a tz-aware UTC :class:`pandas.Timestamp`; a naive value is taken as UTC."""
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def optional_utc_timestamp(value: TimeLike | None) -> pd.Timestamp | None:
    """:func:`utc_timestamp`, with ``None`` passed through (an open bound)."""
    return None if value is None else utc_timestamp(value)


def utc_datetime(value: datetime) -> datetime:
    """``value`` as a tz-aware UTC :class:`datetime.datetime`; a naive value is taken as UTC.

    Raises
    ------
    OverflowError
        If the conversion leaves the representable range (e.g. ``9999-12-31T23:00-05:00``).
    """
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def aware_utc(value: datetime | pd.Timestamp, what: str) -> datetime:
    """``value`` converted to UTC, refusing a naive value.

    Parameters
    ----------
    value
        A tz-aware time.
    what
        What the time is, for the error message (e.g. ``"decision time"``).

    Raises
    ------
    NaiveTimeError
        If ``value`` has no timezone.
    """
    if value.tzinfo is None:
        raise NaiveTimeError(f"{what} must be timezone-aware (UTC), got {value!r}")
    return pd.Timestamp(value).tz_convert("UTC").to_pydatetime()
