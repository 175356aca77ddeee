"""Data freshness per asset: is each feed up to date on the venue's clock, and if not, why.

The live ingest runner writes one record per asset after every cycle to
``<store>/_live/freshness.json``; the publish loop and the status page read it
(:func:`read_freshness`) to publish ``stale`` with the reason instead of a silent old
multiplier, and to show the data age.

Rules, evaluated at the venue time ``now`` of the cycle:

- a **bar feed** is ``ok`` when its newest stored bar is the newest closed one
  (``floor(now) - interval``); ``late`` when bars are missing but the oldest missing one
  closed at most ``late_grace`` ago (a venue publishes a few seconds after the close); and
  ``stale`` beyond that, or when the fetch failed after every retry;
- an **event feed** (funding) is ``stale`` when its newest event is older than ``max_age``
  (funding settles every 8 h or more often), or when the fetch failed;
- the **asset** takes the worst status of its ``required`` feeds (``ok < late < stale``); its
  ``reason`` joins theirs. Optional feeds keep their own status and reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import pandas as pd

from contracts.files import atomic_write_bytes

FeedStatus = Literal["ok", "late", "stale"]
AssetStatus = Literal["ok", "late", "stale"]

SCHEMA: Final[str] = "dynamargin.freshness/1"
_RANK: Final[dict[str, int]] = {"ok": 0, "late": 1, "stale": 2}


@dataclass(frozen=True)
class FeedFreshness:
    """How up to date one feed of one asset is.

    Attributes
    ----------
    feed
        Feed name, e.g. ``"binance-spot"``.
    dataset
        Store dataset (``bars``, ``perp``, ``funding``).
    role
        ``required`` or ``optional`` (see :data:`features.sources.live.FeedRole`).
    status
        ``ok``, ``late`` or ``stale``.
    reason
        Why it is not ``ok`` (empty when it is).
    last_ts
        Newest stored row: bar open time, or event time.
    data_through
        When that row's information was complete: ``last_ts + interval`` for bars.
    checked_at
        Venue time of the last successful fetch.
    missing
        Bars known to be missing between stored ones in the recent window (holes the venue
        did not serve yet; never filled with made-up values).
    """

    feed: str
    dataset: str
    role: str
    status: FeedStatus
    reason: str = ""
    last_ts: pd.Timestamp | None = None
    data_through: pd.Timestamp | None = None
    checked_at: pd.Timestamp | None = None
    missing: int = 0


@dataclass(frozen=True)
class AssetFreshness:
    """The data status of one asset after an ingest cycle.

    Attributes
    ----------
    asset
        The asset, e.g. ``"BTCUSDT"``.
    status
        Worst status of the required feeds.
    reason
        Their reasons, joined (empty when ``ok``).
    venue_time
        Venue time of the evaluation.
    data_through
        Oldest ``data_through`` of the required feeds: everything before it is in the store.
    feeds
        Every feed of the asset.
    snapshot
        Latest perpetual snapshot (open interest, mark, index, funding estimate), if any.
    oracle
        Latest oracle median (:meth:`features.oracle_price.MedianPrice.to_dict`), if any.
    """

    asset: str
    status: AssetStatus
    reason: str
    venue_time: pd.Timestamp
    data_through: pd.Timestamp | None
    feeds: tuple[FeedFreshness, ...] = field(default_factory=tuple)
    snapshot: dict[str, Any] | None = None
    oracle: dict[str, Any] | None = None

    def age(self, now: pd.Timestamp | None = None) -> pd.Timedelta | None:
        """Data age: ``now`` (default: the evaluation's venue time) minus ``data_through``."""
        if self.data_through is None:
            return None
        return (now if now is not None else self.venue_time) - self.data_through

    def feed(self, name: str) -> FeedFreshness:
        """The record of one feed.

        Raises
        ------
        KeyError
            If the asset has no such feed; the message lists the ones it has.
        """
        for item in self.feeds:
            if item.feed == name:
                return item
        raise KeyError(f"{self.asset} has no feed {name!r}; it has {[f.feed for f in self.feeds]}")


def classify_bars(
    last_ts: pd.Timestamp | None,
    step: pd.Timedelta,
    now: pd.Timestamp,
    late_grace: pd.Timedelta,
    first: pd.Timestamp | None = None,
) -> tuple[FeedStatus, str, int]:
    """Status of a bar feed whose newest stored bar opened at ``last_ts``.

    ``first`` is the first bar expected at all (bars before it are not asked for): a series
    with nothing stored is ``ok`` while no bar since ``first`` has closed.

    Returns
    -------
    status : str
        ``ok``, ``late`` or ``stale``.
    reason : str
        Empty when ``ok``.
    overdue : int
        Closed bars newer than ``last_ts`` that are not stored.

    Examples
    --------
    >>> h = pd.Timedelta("1h")
    >>> now = pd.Timestamp("2022-06-13 05:00:30", tz="UTC")
    >>> classify_bars(pd.Timestamp("2022-06-13 04:00", tz="UTC"), h, now, pd.Timedelta("5min"))
    ('ok', '', 0)
    >>> classify_bars(pd.Timestamp("2022-06-13 03:00", tz="UTC"), h, now, pd.Timedelta("5min"))[:2]
    ('late', 'bar 2022-06-13 04:00 closed 30 s ago and is not in yet')
    """
    newest_closed = now.floor(step) - step
    if last_ts is None:
        if first is not None and newest_closed < first:
            return "ok", "", 0
        if first is None:
            return "stale", "no bar stored yet", 0
        last_ts = first - step
    if last_ts >= newest_closed:
        return "ok", "", 0
    overdue = int((newest_closed - last_ts) // step)
    first_missing = last_ts + step
    closed_for = now - (first_missing + step)
    if closed_for <= late_grace and overdue == 1:
        return (
            "late",
            f"bar {_fmt(first_missing)} closed {closed_for.total_seconds():.0f} s ago "
            "and is not in yet",
            overdue,
        )
    return (
        "stale",
        f"no bar after {_fmt(last_ts)}: {overdue} closed bar(s) missing, the oldest closed "
        f"{_fmt_span(closed_for)} ago",
        overdue,
    )


def classify_events(
    last_ts: pd.Timestamp | None,
    now: pd.Timestamp,
    max_age: pd.Timedelta,
    first: pd.Timestamp | None = None,
) -> tuple[FeedStatus, str]:
    """Status of an event feed (funding) whose newest stored event is at ``last_ts``.

    With nothing stored, the feed is ``ok`` while ``max_age`` has not passed since ``first``
    (the start of what is asked for).
    """
    if last_ts is None:
        if first is not None and now - first <= max_age:
            return "ok", ""
        return "stale", "no event stored yet"
    age = now - last_ts
    if age <= max_age:
        return "ok", ""
    return "stale", f"newest event {_fmt(last_ts)} is {_fmt_span(age)} old > {_fmt_span(max_age)}"


def asset_status(feeds: Iterable[FeedFreshness]) -> tuple[AssetStatus, str]:
    """Worst status of the required feeds and their reasons."""
    required = [f for f in feeds if f.role == "required"]
    if not required:
        return "stale", "no required feed is listed for this asset"
    worst = max(required, key=lambda f: _RANK[f.status]).status
    reasons = [f"{f.feed}: {f.reason}" for f in required if f.status != "ok" and f.reason]
    return worst, "; ".join(reasons)


def freshness_path(store_root: Path) -> Path:
    """Where the live runner keeps the freshness records of a store."""
    return Path(store_root) / "_live" / "freshness.json"


def write_freshness(
    path: Path, records: Mapping[str, AssetFreshness], interval: str, venue_time: pd.Timestamp
) -> None:
    """Write every asset's record atomically (a reader never sees half a file)."""
    payload = {
        "schema": SCHEMA,
        "interval": interval,
        "venue_time": _iso(venue_time),
        "assets": {asset: _record_json(record) for asset, record in sorted(records.items())},
    }
    atomic_write_bytes(Path(path), json.dumps(payload, indent=1).encode())


def read_freshness(path: Path) -> dict[str, AssetFreshness]:
    """Read the records written by :func:`write_freshness`; empty when there is no file.

    Raises
    ------
    ValueError
        If the file is not a freshness file of this schema.
    """
    path = Path(path)
    if not path.exists():
        return {}
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}: unreadable freshness file ({exc}); the next cycle rewrites it"
        ) from exc
    if payload.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {payload.get('schema')!r}, expected {SCHEMA!r}")
    return {asset: _record_from_json(body) for asset, body in payload["assets"].items()}


# --- helpers -----------------------------------------------------------------------------

_TIME_FIELDS: Final[tuple[str, ...]] = ("last_ts", "data_through", "checked_at")


def _record_json(record: AssetFreshness) -> dict[str, Any]:
    body = asdict(record)
    body["venue_time"] = _iso(record.venue_time)
    body["data_through"] = _iso(record.data_through)
    age = record.age()
    body["age_seconds"] = None if age is None else age.total_seconds()
    body["feeds"] = [
        {**asdict(f), **{k: _iso(getattr(f, k)) for k in _TIME_FIELDS}} for f in record.feeds
    ]
    return body


def _record_from_json(body: dict[str, Any]) -> AssetFreshness:
    feeds = tuple(
        FeedFreshness(**{**f, **{k: _parse(f.get(k)) for k in _TIME_FIELDS}})
        for f in body.get("feeds", [])
    )
    return AssetFreshness(
        asset=body["asset"],
        status=body["status"],
        reason=body.get("reason", ""),
        venue_time=_parse(body["venue_time"]),
        data_through=_parse(body.get("data_through")),
        feeds=feeds,
        snapshot=body.get("snapshot"),
        oracle=body.get("oracle"),
    )


def _iso(value: pd.Timestamp | None) -> str | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).isoformat()


def _parse(value: str | None) -> pd.Timestamp | None:
    return None if value is None else pd.Timestamp(value)


def _fmt(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%d %H:%M")


def _fmt_span(span: pd.Timedelta) -> str:
    seconds = span.total_seconds()
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


__all__ = [
    "AssetFreshness",
    "AssetStatus",
    "FeedFreshness",
    "FeedStatus",
    "asset_status",
    "classify_bars",
    "classify_events",
    "freshness_path",
    "read_freshness",
    "write_freshness",
]
