"""The newest snapshot per asset, held in memory and refreshed at most once per interval.

Readers hit ``/v1/multipliers`` far more often than anything is published, so the API keeps
one immutable :class:`LatestView` and reloads it from the store at most every
``refresh_seconds`` (or at once after an admin action). Responses rendered from a view are
memoised on it, so when nothing was published the hot path is a dictionary lookup. When
a reload fails for a passing reason (the database is down) the last good view keeps being
served (snapshots carry their own ``valid_until``), the failure is logged and ``/readyz``
reports it. When the store's file was deleted or replaced, the old view is dropped: its
content can no longer be checked against the store, so reads answer 503.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio.to_thread

from serving.errors import StoreIdentityError
from serving.http_caching import RenderedBody

logger = logging.getLogger(__name__)

SnapshotData = Mapping[str, Any]
"""A RiskSnapshot in its v1 JSON wire shape."""


@dataclass(frozen=True)
class LoadedSnapshots:
    """One load of the store's newest, verified snapshots.

    Attributes
    ----------
    snapshots
        Asset -> newest snapshot, for every asset whose rows verify.
    withheld
        Asset -> why it is not served (its rows fail verification).
    store_failure
        Why nothing can be trusted (a store-wide integrity failure), or ``None``.
    mode
        ``live`` or ``replay`` (see :mod:`serving.store`); empty before the first publish.
    """

    snapshots: Mapping[str, SnapshotData]
    withheld: Mapping[str, str] = field(default_factory=dict)
    store_failure: str | None = None
    mode: str = ""


class StoreUnavailableError(RuntimeError):
    """The publication store could not be read and no earlier view exists to fall back on."""


@dataclass
class LatestView:
    """The newest snapshot of every asset at one store version.

    Attributes
    ----------
    snapshots
        Asset -> newest snapshot (JSON data), sorted by asset.
    version
        Digest of every ``(asset, update_id)``; equal views have equal versions.
    loaded_at
        ``time.monotonic()`` of the last successful load or confirmation.
    rendered
        Responses rendered from this view, by cache key (filled lazily).
    withheld
        Assets not served because their stored rows fail verification, with the reason.
    store_failure
        Set when nothing in the store can be trusted (a store-wide integrity failure).
    """

    snapshots: dict[str, SnapshotData]
    version: str
    loaded_at: float
    rendered: dict[str, RenderedBody] = field(default_factory=dict)
    withheld: dict[str, str] = field(default_factory=dict)
    store_failure: str | None = None

    def render(self, key: str, build: Callable[[], RenderedBody]) -> RenderedBody:
        """Return the response cached under ``key``, building it on first use."""
        cached = self.rendered.get(key)
        if cached is None:
            cached = self.rendered[key] = build()
        return cached

    def next_expected_update(self, asset: str, interval: timedelta) -> datetime:
        """When the asset's next publication is due: ``published_at + interval``."""
        return parse_time(self.snapshots[asset]["published_at"]) + interval

    def earliest_expected_update(self, interval: timedelta) -> datetime | None:
        """The soonest next publication over all assets (``None`` when empty)."""
        due = [self.next_expected_update(asset, interval) for asset in self.snapshots]
        return min(due) if due else None


class LatestViewCache:
    """Loads :class:`LatestView` objects from ``load_latest`` and decides when to reload.

    Parameters
    ----------
    load_latest
        Blocking call returning the newest verified snapshots; run in a worker thread.
    refresh_seconds
        Longest time a view is served before the store is asked again.
    """

    def __init__(
        self,
        load_latest: Callable[[], LoadedSnapshots],
        refresh_seconds: float,
    ) -> None:
        if refresh_seconds < 0:
            raise ValueError(f"refresh_seconds must be >= 0, got {refresh_seconds}")
        self._load_latest = load_latest
        self.refresh_seconds = refresh_seconds
        self._view: LatestView | None = None
        self._lock = asyncio.Lock()
        self.last_error: str | None = None

    async def get(self) -> LatestView:
        """The current view, reloading it first if it is older than ``refresh_seconds``.

        Raises
        ------
        StoreUnavailableError
            When the store cannot be read and nothing was loaded before.
        """
        view = self._view
        if view is not None and time.monotonic() - view.loaded_at < self.refresh_seconds:
            return view
        if view is not None and self._lock.locked():
            # Another request is already reloading; this one can use the current view.
            return view
        async with self._lock:
            if self._view is not None and self._view is not view:
                return self._view
            return await self._reload()

    @property
    def current(self) -> LatestView | None:
        """The last loaded view without touching the store (``None`` before the first load)."""
        return self._view

    def invalidate(self) -> None:
        """Force a reload on the next :meth:`get` (after an admin action)."""
        if self._view is not None:
            self._view.loaded_at = float("-inf")

    async def _reload(self) -> LatestView:
        previous = self._view
        try:
            loaded = await anyio.to_thread.run_sync(self._load_latest)
        except StoreIdentityError as exc:
            # Not a passing failure: the view came from a store that is gone.
            self._view = None
            self.last_error = str(exc)
            logger.error("publication store replaced under the API: %s", exc)
            raise StoreUnavailableError(str(exc)) from exc
        except Exception as exc:
            # Serving the last good view is safe: each snapshot carries its valid_until.
            self.last_error = f"{type(exc).__name__}: {exc}"
            logger.warning("publication store read failed: %s", self.last_error)
            if previous is None:
                raise StoreUnavailableError(
                    f"cannot read the publication store ({self.last_error}); check the "
                    "store URL and that the database is reachable"
                ) from exc
            previous.loaded_at = time.monotonic()
            return previous
        self.last_error = None
        snapshots = loaded.snapshots
        ordered = {asset: snapshots[asset] for asset in sorted(snapshots)}
        withheld = dict(loaded.withheld)
        if loaded.store_failure:
            ordered = {}
            withheld["*"] = loaded.store_failure
        version = view_version(ordered, withheld)
        if previous is not None and previous.version == version:
            previous.loaded_at = time.monotonic()
            return previous
        withheld.pop("*", None)
        self._view = LatestView(
            snapshots=ordered,
            version=version,
            loaded_at=time.monotonic(),
            withheld=withheld,
            store_failure=loaded.store_failure,
        )
        return self._view


def view_version(
    snapshots: Mapping[str, SnapshotData], withheld: Mapping[str, str] | None = None
) -> str:
    """Digest of the ``(asset, update_id, published_at)`` of every snapshot, and of the
    withheld assets (so a view changes when an asset starts or stops failing)."""
    digest = hashlib.sha256()
    for asset in sorted(snapshots):
        snap = snapshots[asset]
        digest.update(
            f"{asset}\x1f{snap.get('update_id')}\x1f{snap.get('published_at')}\x1e".encode()
        )
    for asset in sorted(withheld or {}):
        digest.update(f"!{asset}\x1f{(withheld or {})[asset]}\x1e".encode())
    return digest.hexdigest()[:24]


def parse_time(value: Any) -> datetime:
    """Parse an ISO-8601 UTC time as written in snapshots (``...Z``) or a datetime."""
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
