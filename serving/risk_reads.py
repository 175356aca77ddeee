"""Every read response of the API, rendered from the store's newest verified view.

:class:`RiskReads` builds (and memoises on the view) the bodies the routes and the fast
path (:mod:`serving.fast_reads`) serve. Snapshot bodies are canonical JSON, so a single
snapshot is byte for byte what was signed. An asset whose stored rows fail verification
(:mod:`serving.log_integrity`) is withheld: its own URLs answer 503, and the aggregate
documents list it under ``withheld`` instead of carrying its numbers.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import anyio.to_thread

from serving.api_backend import ApiBackend
from serving.api_config import ApiConfig
from serving.errors import IntegrityFailure, InvalidInputError, PublicationStoreError
from serving.http_caching import JSON_MEDIA_TYPE, RenderedBody, render_bytes
from serving.input_validation import normalise_asset
from serving.latest_view import LatestView, LatestViewCache, StoreUnavailableError
from serving.live_data import read_live_data
from serving.metrics import SnapshotGauge
from serving.problems import (
    BadParameterError,
    NoSnapshotAtError,
    ProblemError,
    UnknownAssetProblem,
    problem_for,
)
from serving.standard import canonical_json, format_time, parse_time
from serving.status_page import AssetRow, render_status_page
from serving.store import StoreNotInitialisedError

logger = logging.getLogger(__name__)

WEEK = timedelta(days=7)
SCHEMA_MAX_AGE = timedelta(hours=1)


class RiskReads:
    """Builds (and memoises) every read response from the store's newest view.

    Parameters
    ----------
    config
        The API config (update interval, assets, title).
    backend
        Store, schema and key access.
    views
        The cached newest-snapshot view.
    """

    def __init__(self, config: ApiConfig, backend: ApiBackend, views: LatestViewCache) -> None:
        self.config = config
        self.backend = backend
        self.views = views
        self._schema: RenderedBody | None = None

    async def view(self) -> LatestView:
        """The current view, or a 503 problem when the store cannot be read or trusted."""
        try:
            view = await self.views.get()
        except StoreUnavailableError as exc:
            raise ProblemError(503, "store-unavailable", str(exc)) from exc
        if view.store_failure is not None:
            raise problem_for(IntegrityFailure(None, [view.store_failure]))
        return view

    def require_asset(self, view: LatestView, asset: str) -> str:
        """The canonical asset name of a path segment that names a servable asset.

        Raises
        ------
        ProblemError
            422 for a malformed name, 503 for an asset whose rows fail verification, 404
            for one never published.
        """
        try:
            canonical = normalise_asset(asset)
        except InvalidInputError as exc:
            raise problem_for(exc) from exc
        if canonical in view.withheld:
            raise problem_for(IntegrityFailure(canonical, [view.withheld[canonical]]))
        if canonical not in view.snapshots:
            raise UnknownAssetProblem(canonical, list(view.snapshots))
        return canonical

    def all_latest(self, view: LatestView) -> RenderedBody:
        """``GET /v1/risk``."""
        return view.render(
            "risk",
            lambda: _render(
                _with_withheld(
                    view,
                    {"snapshots": list(view.snapshots.values()), "count": len(view.snapshots)},
                ),
                fresh_until=self._fresh_until(view),
            ),
        )

    def one_latest(self, view: LatestView, asset: str) -> RenderedBody:
        """``GET /v1/risk/{asset}``."""
        return view.render(
            f"risk/{asset}",
            lambda: _render(
                view.snapshots[asset],
                fresh_until=view.next_expected_update(asset, self.config.update_interval),
            ),
        )

    def multipliers(self, view: LatestView) -> RenderedBody:
        """``GET /v1/multipliers``: the compact map keepers poll."""

        def build() -> RenderedBody:
            table = {
                asset: {
                    "multiplier": snap["margin"]["multiplier"],
                    "status": snap["status"],
                    "valid_until": snap["valid_until"],
                    "update_id": snap["update_id"],
                    "imf": snap["margin"]["imf"],
                    "mmf": snap["margin"]["mmf"],
                }
                for asset, snap in view.snapshots.items()
            }
            return _render(
                _with_withheld(view, {"schema": "dynamargin.multipliers/1", "multipliers": table}),
                fresh_until=self._fresh_until(view),
            )

        return view.render("multipliers", build)

    async def oracle_updates(self, view: LatestView) -> RenderedBody:
        """``GET /v1/oracle-updates``: the newest snapshots in risk-oracle form."""
        cached = view.rendered.get("oracle")
        if cached is None:
            updates = await self._blocking(
                self.backend.oracle_updates, list(view.snapshots.values())
            )
            cached = view.rendered["oracle"] = _render(
                _with_withheld(view, {"updates": updates}), fresh_until=self._fresh_until(view)
            )
        return cached

    async def at(self, view: LatestView, asset: str, at: datetime) -> RenderedBody:
        """``GET /v1/risk/{asset}?at=``: what was in force at ``at`` (immutable)."""
        now = datetime.now(UTC)
        if at > now:
            raise BadParameterError(
                "at", f"at={format_time(at)} is in the future; omit it for the newest snapshot."
            )
        snap = await self._blocking(self.backend.snapshot_at, asset, at)
        if snap is None:
            raise NoSnapshotAtError(asset, format_time(at))
        return _render(snap, fresh_until=None)

    async def history(
        self,
        view: LatestView,
        asset: str,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        cursor: str | None,
        base_path: str,
    ) -> RenderedBody:
        """``GET /v1/risk/{asset}/history``: one page, oldest first, with its hash chain."""
        if start is not None and end is not None and start > end:
            raise BadParameterError(
                "from", f"from={format_time(start)} is after to={format_time(end)}; swap them."
            )
        page = await self._blocking(self.backend.history, asset, start, end, limit, cursor)
        payload: dict[str, Any] = {
            "asset": asset,
            "snapshots": page.snapshots,
            "chain": page.chain,
            "count": len(page.snapshots),
            "next_cursor": page.next_cursor,
        }
        closed = end is not None and end < datetime.now(UTC)
        fresh_until = (
            None if closed else view.next_expected_update(asset, self.config.update_interval)
        )
        rendered = _render(payload, fresh_until=fresh_until)
        if page.next_cursor is None:
            return rendered
        # A relative reference: the Host header is the client's word, never ours to echo.
        link = f'<{base_path}?{_next_query(start, end, limit, page.next_cursor)}>; rel="next"'
        return RenderedBody(
            body=rendered.body,
            media_type=rendered.media_type,
            etag=rendered.etag,
            gzipped=rendered.gzipped,
            fresh_until=rendered.fresh_until,
            extra_headers={"Link": link},
        )

    async def checkpoint(self) -> RenderedBody:
        """``GET /v1/checkpoint``: the newest signed checkpoint over every chain head."""
        document = await self._blocking(self.backend.checkpoint)
        return _render(document, fresh_until=datetime.now(UTC))

    async def status_page(self, view: LatestView) -> RenderedBody:
        """``GET /``: rendered at most once a minute per view ("5 min ago" must stay true)."""
        now = datetime.now(UTC)
        key = f"status@{now:%Y%m%d%H%M}"
        cached = view.rendered.get(key)
        if cached is not None:
            return cached

        def rows() -> list[AssetRow]:
            live = read_live_data(self.config.live_data_file)
            return [
                AssetRow(
                    snapshot=snap,
                    week=self.backend.week(asset, now - WEEK, now),
                    live=live.get(asset),
                )
                for asset, snap in view.snapshots.items()
            ]

        html = render_status_page(await self._blocking(rows), now=now, title=self.config.title)
        due = self._fresh_until(view)
        minute_end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        rendered = render_bytes(
            html.encode(),
            media_type="text/html; charset=utf-8",
            fresh_until=min(due, minute_end) if due is not None else minute_end,
        )
        for stale in [k for k in view.rendered if k.startswith("status@")]:
            del view.rendered[stale]
        view.rendered[key] = rendered
        return rendered

    def schema(self) -> RenderedBody:
        """``GET /v1/schema``: fixed for the life of the process."""
        if self._schema is None:
            self._schema = _render(
                self.backend.json_schema(),
                fresh_until=datetime.now(UTC) + SCHEMA_MAX_AGE,
                media_type="application/schema+json",
            )
        return self._schema

    def keys(self) -> RenderedBody:
        """``GET /v1/keys``: read on each call (keys appear when the publisher first signs)."""
        return _render(
            self.backend.public_keys(), fresh_until=datetime.now(UTC) + timedelta(minutes=5)
        )

    def snapshot_gauges(self) -> dict[str, SnapshotGauge]:
        """Scrape-time figures for the Prometheus snapshot gauges (from the cached view)."""
        view = self.views.current
        if view is None:
            return {}
        now = datetime.now(UTC)
        return {
            asset: SnapshotGauge(
                age_seconds=(now - parse_time(snap["published_at"])).total_seconds(),
                seconds_to_expiry=(parse_time(snap["valid_until"]) - now).total_seconds(),
                multiplier=float(snap["margin"]["multiplier"]),
            )
            for asset, snap in view.snapshots.items()
        }

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Check the store now (not the cache): identity, integrity and every asset's expiry."""
        try:
            loaded = await anyio.to_thread.run_sync(self.backend.latest)
        except StoreNotInitialisedError as exc:
            return False, {"store": f"uninitialised: {exc} (no snapshot has been published yet)"}
        except Exception as exc:
            # The failure is the answer: report it, do not raise.
            logger.warning("readiness: store unreachable: %s", exc)
            return False, {"store": f"unreachable: {type(exc).__name__}: {exc}"}
        latest, withheld = loaded.snapshots, loaded.withheld
        now = datetime.now(UTC)
        required = self.config.assets or tuple(sorted({*latest, *withheld}))
        checks: dict[str, Any] = {"store": "ok", "mode": loaded.mode, "assets": {}}
        ready = bool(required)
        if loaded.store_failure:
            checks["store"] = f"integrity failure: {loaded.store_failure}"
            ready = False
        elif not required:
            checks["store"] = "ok, but no snapshot has been published yet"
        for asset in required:
            snap = latest.get(asset)
            if asset in withheld:
                checks["assets"][asset] = f"integrity failure: {withheld[asset]}"
                ready = False
            elif snap is None:
                checks["assets"][asset] = "never published"
                ready = False
            else:
                valid_until = parse_time(snap["valid_until"])
                if valid_until <= now:
                    checks["assets"][asset] = f"expired at {format_time(valid_until)}"
                    ready = False
                else:
                    checks["assets"][asset] = f"ok until {format_time(valid_until)}"
        return ready, checks

    def _fresh_until(self, view: LatestView) -> datetime | None:
        due = view.earliest_expected_update(self.config.update_interval)
        # An empty store can change at any moment: revalidate every time.
        return due if due is not None else datetime.now(UTC)

    async def _blocking(self, call: Any, *args: Any) -> Any:
        # Store errors become problems here, so a route never answers a bare 500.
        try:
            return await anyio.to_thread.run_sync(call, *args)
        except PublicationStoreError as exc:
            raise problem_for(exc) from exc


def _with_withheld(view: LatestView, payload: dict[str, Any]) -> dict[str, Any]:
    if view.withheld:
        payload["withheld"] = dict(view.withheld)
    return payload


def _render(
    payload: Any, *, fresh_until: datetime | None, media_type: str = JSON_MEDIA_TYPE
) -> RenderedBody:
    # Canonical JSON (serving.standard): a single snapshot's body is byte for byte what was
    # signed, so clients can verify the response itself.
    return render_bytes(canonical_json(payload), media_type=media_type, fresh_until=fresh_until)


def _next_query(start: datetime | None, end: datetime | None, limit: int, cursor: str) -> str:
    params: dict[str, str] = {"limit": str(limit), "cursor": cursor}
    if start is not None:
        params["from"] = format_time(start)
    if end is not None:
        params["to"] = format_time(end)
    return urlencode(params)
