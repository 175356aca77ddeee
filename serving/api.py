"""The serving API: risk snapshots and multipliers over HTTP.

``create_app(config)`` builds the FastAPI app; ``app_from_env()`` is the factory uvicorn
workers call (``uvicorn serving.api:app_from_env --factory``).

Read endpoints (public, versioned under ``/v1``) are rendered once per store version and
served from memory with a weak ETag (``If-None-Match`` -> 304), gzip when accepted and
``Cache-Control: max-age`` counting down to the next expected publication. Time-travel and
closed history windows are immutable in an append-only store and say so. Every error is
an RFC 9457 problem. Admin endpoints (:mod:`serving.admin_api`) need an API key.

Routes
------
``GET /v1/risk``                          newest snapshot of every asset
``GET /v1/risk/{asset}?at=``              newest snapshot, or the one in force at ``at``
``GET /v1/risk/{asset}/history``          ``from``, ``to``, ``limit``, ``cursor``; paginated
``GET /v1/multipliers``                   asset -> multiplier, status, valid_until
``GET /v1/oracle-updates``                the risk-oracle form of the newest snapshots
``GET /v1/schema``, ``GET /v1/keys``      JSON Schema; public keys for verification
``GET /healthz``, ``/readyz``, ``/metrics``   liveness, readiness, Prometheus
``POST /v1/admin/assets/{asset}/halt|resume|override|clear-override``
``GET /``                                 the status page
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Protocol
from urllib.parse import urlencode

import anyio.to_thread
from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.middleware.cors import CORSMiddleware
from starlette.responses import Response

from contracts.timestamps import utc_datetime
from serving.admin_api import build_admin_router
from serving.admin_auth import load_keyring
from serving.api_backend import ApiBackend, StoreBackend
from serving.api_config import ApiConfig
from serving.compression import GzipMiddleware
from serving.fast_reads import FastReadMiddleware
from serving.http_caching import (
    JSON_MEDIA_TYPE,
    RenderedBody,
    conditional_response,
    render_bytes,
    render_json,
)
from serving.latest_view import LatestView, LatestViewCache, StoreUnavailableError, parse_time
from serving.metrics import ApiMetrics, MetricsMiddleware, SnapshotGauge
from serving.problems import (
    PROBLEM_MEDIA_TYPE,
    BadParameterError,
    NoSnapshotAtError,
    ProblemError,
    UnknownAssetError,
    install_problem_handlers,
    problem_response,
)
from serving.request_limits import BodySizeLimitMiddleware
from serving.standard import canonical_json, format_time
from serving.status_page import AssetRow, render_status_page
from serving.store import StoreNotInitialisedError

logger = logging.getLogger(__name__)

API_VERSION = "1"
ASSET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$"
MAX_HISTORY_LIMIT = 1000
WEEK = timedelta(days=7)
SCHEMA_MAX_AGE = timedelta(hours=1)

AssetParam = Annotated[
    str,
    PathParam(
        pattern=ASSET_PATTERN, description="Asset symbol, e.g. BTCUSDT.", examples=["BTCUSDT"]
    ),
]

_PROBLEM = {"description": "RFC 9457 problem", "content": {PROBLEM_MEDIA_TYPE: {}}}
_READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified (If-None-Match matched the ETag)"},
    503: _PROBLEM,
}


class HasWorkdir(Protocol):
    """Anything with a ``workdir`` (e.g. :class:`pipelines.settings.Settings`)."""

    workdir: Path


def create_app(
    settings_or_config: ApiConfig | HasWorkdir, *, backend: ApiBackend | None = None
) -> FastAPI:
    """Build the serving app.

    Parameters
    ----------
    settings_or_config
        An :class:`ApiConfig`, or settings with a ``workdir`` (defaults derived from it).
    backend
        Store, signing and policy access; defaults to :class:`StoreBackend` on
        ``config.store_url``.

    Returns
    -------
    FastAPI
        The app, with middleware (metrics, body limit, CORS, gzip) and problem handlers.
    """
    config = (
        settings_or_config
        if isinstance(settings_or_config, ApiConfig)
        else ApiConfig.from_workdir(Path(settings_or_config.workdir))
    )
    backend = backend or StoreBackend(config)
    views = LatestViewCache(_empty_until_initialised(backend.latest), config.refresh_seconds)
    reads = RiskReads(config, backend, views)
    metrics = ApiMetrics(reads.snapshot_gauges)

    app = FastAPI(
        title=config.title,
        version=API_VERSION,
        summary="Signed dynamic margin multipliers and RiskSnapshot v1 risk metrics.",
        # Prometheus (/metrics) is the observability path; FastAPI's built-in
        # OpenTelemetry hooks would cost ~40 us per request to do nothing here.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.config = config
    app.state.backend = backend
    app.state.reads = reads
    app.state.metrics = metrics
    install_problem_handlers(app)
    _add_read_routes(app, reads)
    _add_ops_routes(app, reads, metrics)
    app.include_router(
        build_admin_router(
            backend, lambda: load_keyring(config.workdir), on_change=views.invalidate
        )
    )

    # Added innermost first: requests pass metrics -> body limit -> CORS -> gzip ->
    # fast reads -> routes.
    routes = {getattr(route, "path", ""): route for route in app.routes}
    app.add_middleware(FastReadMiddleware, reads=reads, routes=routes)
    app.add_middleware(GzipMiddleware)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "HEAD", "OPTIONS"],
            allow_headers=["If-None-Match", "Accept-Encoding"],
            expose_headers=["ETag", "Cache-Control", "Link"],
            max_age=600,
        )
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=config.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def app_from_env() -> FastAPI:
    """App factory for uvicorn workers: the config comes from ``DYNAMARGIN_*`` variables."""
    return create_app(ApiConfig.from_env())


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
        """The current view, or a 503 problem when the store was never readable."""
        try:
            return await self.views.get()
        except StoreUnavailableError as exc:
            raise ProblemError(503, "store-unavailable", str(exc)) from exc

    def require_asset(self, view: LatestView, asset: str) -> str:
        """The canonical (upper-case) asset name, or a 404 problem if never published."""
        canonical = asset.upper()
        if canonical not in view.snapshots:
            raise UnknownAssetError(asset, list(view.snapshots))
        return canonical

    def all_latest(self, view: LatestView) -> RenderedBody:
        """``GET /v1/risk``."""
        return view.render(
            "risk",
            lambda: _render(
                {"snapshots": list(view.snapshots.values()), "count": len(view.snapshots)},
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
                {"schema": "dynamargin.multipliers/1", "multipliers": table},
                fresh_until=self._fresh_until(view),
            )

        return view.render("multipliers", build)

    async def oracle_updates(self, view: LatestView) -> RenderedBody:
        """``GET /v1/oracle-updates``: the newest snapshots in risk-oracle form."""
        cached = view.rendered.get("oracle")
        if cached is None:
            updates = await anyio.to_thread.run_sync(
                self.backend.oracle_updates, list(view.snapshots.values())
            )
            cached = view.rendered["oracle"] = _render(
                {"updates": updates}, fresh_until=self._fresh_until(view)
            )
        return cached

    async def at(self, view: LatestView, asset: str, at: datetime) -> RenderedBody:
        """``GET /v1/risk/{asset}?at=``: what was in force at ``at`` (immutable)."""
        now = datetime.now(UTC)
        if at > now:
            raise BadParameterError(
                "at", f"at={_iso(at)} is in the future; omit it for the newest snapshot."
            )
        snap = await anyio.to_thread.run_sync(self.backend.snapshot_at, asset, at)
        if snap is None:
            raise NoSnapshotAtError(asset, _iso(at))
        return _render(snap, fresh_until=None)

    async def history(
        self,
        view: LatestView,
        asset: str,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        cursor: str | None,
        base_url: str,
    ) -> RenderedBody:
        """``GET /v1/risk/{asset}/history``: one page, oldest first, with a next cursor."""
        if start is not None and end is not None and start > end:
            raise BadParameterError(
                "from", f"from={_iso(start)} is after to={_iso(end)}; swap them."
            )
        page = await anyio.to_thread.run_sync(
            self.backend.history, asset, start, end, limit, cursor
        )
        payload: dict[str, Any] = {
            "asset": asset,
            "snapshots": page.snapshots,
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
        link = f'<{base_url}?{_next_query(start, end, limit, page.next_cursor)}>; rel="next"'
        return RenderedBody(
            body=rendered.body,
            media_type=rendered.media_type,
            etag=rendered.etag,
            gzipped=rendered.gzipped,
            fresh_until=rendered.fresh_until,
            extra_headers={"Link": link},
        )

    async def status_page(self, view: LatestView) -> RenderedBody:
        """``GET /``: rendered at most once a minute per view ("5 min ago" must stay true)."""
        now = datetime.now(UTC)
        key = f"status@{now:%Y%m%d%H%M}"
        cached = view.rendered.get(key)
        if cached is not None:
            return cached

        def rows() -> list[AssetRow]:
            return [
                AssetRow(snapshot=snap, week=self.backend.week(asset, now - WEEK, now))
                for asset, snap in view.snapshots.items()
            ]

        html = render_status_page(
            await anyio.to_thread.run_sync(rows), now=now, title=self.config.title
        )
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
        """Check the store now (not the cache) and every required asset's expiry."""
        try:
            latest = await anyio.to_thread.run_sync(self.backend.latest)
        except StoreNotInitialisedError as exc:
            return False, {"store": f"uninitialised: {exc} (no snapshot has been published yet)"}
        except Exception as exc:
            # The failure is the answer: report it, do not raise.
            logger.warning("readiness: store unreachable: %s", exc)
            return False, {"store": f"unreachable: {type(exc).__name__}: {exc}"}
        now = datetime.now(UTC)
        required = self.config.assets or tuple(sorted(latest))
        checks: dict[str, Any] = {"store": "ok", "assets": {}}
        ready = bool(required)
        if not required:
            checks["store"] = "ok, but no snapshot has been published yet"
        for asset in required:
            snap = latest.get(asset)
            if snap is None:
                checks["assets"][asset] = "never published"
                ready = False
                continue
            valid_until = parse_time(snap["valid_until"])
            if valid_until <= now:
                checks["assets"][asset] = f"expired at {_iso(valid_until)}"
                ready = False
            else:
                checks["assets"][asset] = f"ok until {_iso(valid_until)}"
        return ready, checks

    def _fresh_until(self, view: LatestView) -> datetime | None:
        due = view.earliest_expected_update(self.config.update_interval)
        # An empty store can change at any moment: revalidate every time.
        return due if due is not None else datetime.now(UTC)


def _add_read_routes(app: FastAPI, reads: RiskReads) -> None:
    @app.get("/v1/risk", tags=["risk"], responses=_READ_RESPONSES)
    async def list_risk(request: Request) -> Response:
        """Newest RiskSnapshot v1 of every asset, sorted by asset."""
        return _send(request, reads.all_latest(await reads.view()))

    @app.get("/v1/multipliers", tags=["risk"], responses=_READ_RESPONSES)
    async def multipliers(request: Request) -> Response:
        """Compact map asset -> multiplier, status, valid_until, update_id, imf, mmf."""
        return _send(request, reads.multipliers(await reads.view()))

    @app.get("/v1/oracle-updates", tags=["risk"], responses=_READ_RESPONSES)
    async def oracle_updates(request: Request) -> Response:
        """Newest snapshots as risk-oracle updates (updateType, market, newValue, ...)."""
        return _send(request, await reads.oracle_updates(await reads.view()))

    @app.get("/v1/risk/{asset}", tags=["risk"], responses={**_READ_RESPONSES, 404: _PROBLEM})
    async def risk_of(
        request: Request,
        asset: AssetParam,
        at: Annotated[
            datetime | None,
            Query(description="ISO-8601 time; the snapshot in force then (UTC if naive)."),
        ] = None,
    ) -> Response:
        """Newest snapshot of one asset, or with ``at`` the one published last before it."""
        view = await reads.view()
        canonical = reads.require_asset(view, asset)
        if at is None:
            return _send(request, reads.one_latest(view, canonical))
        return _send(request, await reads.at(view, canonical, _utc(at, "at")))

    @app.get(
        "/v1/risk/{asset}/history",
        tags=["risk"],
        responses={**_READ_RESPONSES, 404: _PROBLEM},
    )
    async def risk_history(
        request: Request,
        asset: AssetParam,
        start: Annotated[
            datetime | None, Query(alias="from", description="Earliest published_at.")
        ] = None,
        end: Annotated[
            datetime | None, Query(alias="to", description="Latest published_at.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_HISTORY_LIMIT)] = 100,
        cursor: Annotated[
            str | None,
            Query(max_length=200, description="Opaque cursor from the previous page."),
        ] = None,
    ) -> Response:
        """Published snapshots of one asset, oldest first, ``limit`` per page."""
        view = await reads.view()
        canonical = reads.require_asset(view, asset)
        rendered = await reads.history(
            view,
            canonical,
            _utc(start, "from") if start else None,
            _utc(end, "to") if end else None,
            limit,
            cursor,
            str(request.url.replace(query="")),
        )
        return _send(request, rendered)

    @app.get("/v1/schema", tags=["meta"], responses=_READ_RESPONSES)
    async def schema(request: Request) -> Response:
        """JSON Schema of RiskSnapshot v1."""
        return _send(request, reads.schema())

    @app.get("/v1/keys", tags=["meta"], responses=_READ_RESPONSES)
    async def keys(request: Request) -> Response:
        """Public keys (Ed25519, EIP-712 signer) to verify snapshot signatures."""
        return _send(request, reads.keys())

    @app.get("/", tags=["meta"], responses=_READ_RESPONSES)
    async def status_page(request: Request) -> Response:
        """Human status page: multipliers, status, last week, model and data freshness."""
        return _send(request, await reads.status_page(await reads.view()))


def _add_ops_routes(app: FastAPI, reads: RiskReads, metrics: ApiMetrics) -> None:
    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers (does not touch the store)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: _PROBLEM})
    async def readyz(request: Request) -> Response:
        """Readiness: the store answers and every required asset has a live snapshot."""
        ready, checks = await reads.readiness()
        if ready:
            return _uncached_json({"status": "ready", "checks": checks})
        return problem_response(
            503,
            "not-ready",
            "Not ready: the store is unreachable or a required asset has no live snapshot.",
            instance=request.url.path,
            extensions={"checks": checks},
            headers={"Cache-Control": "no-store"},
        )

    @app.get("/metrics", tags=["ops"])
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition: requests, latency, snapshot age per asset."""
        try:
            await reads.view()
        except ProblemError:
            pass  # No snapshot gauges without a store; request metrics still matter.
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})


def _empty_until_initialised(
    load_latest: Callable[[], Mapping[str, Any]],
) -> Callable[[], Mapping[str, Any]]:
    # Before the first `dynamargin publish` there is no schema; to a reader that is the
    # same as "nothing published yet" (an empty list, revalidated on every request), while
    # /readyz says "uninitialised" so an operator sees the difference.
    def load() -> Mapping[str, Any]:
        try:
            return load_latest()
        except StoreNotInitialisedError:
            return {}

    return load


def _uncached_json(payload: dict[str, Any]) -> Response:
    # Operational answers must reflect this moment, never a cache.
    rendered = render_json(payload, fresh_until=None)
    return Response(
        rendered.body, media_type=rendered.media_type, headers={"Cache-Control": "no-store"}
    )


def _render(
    payload: Any, *, fresh_until: datetime | None, media_type: str = JSON_MEDIA_TYPE
) -> RenderedBody:
    # Canonical JSON (serving.standard): a single snapshot's body is byte for byte what was
    # signed, so clients can verify the response itself.
    return render_bytes(canonical_json(payload), media_type=media_type, fresh_until=fresh_until)


def _send(request: Request, rendered: RenderedBody) -> Response:
    headers = request.headers
    return conditional_response(
        rendered,
        if_none_match=headers.get("if-none-match"),
        accept_encoding=headers.get("accept-encoding"),
    )


def _utc(value: datetime, parameter: str) -> datetime:
    try:
        return utc_datetime(value)
    except OverflowError as exc:
        # e.g. 9999-12-31T23:00-05:00 is past datetime.max once converted to UTC.
        raise BadParameterError(
            parameter, f"{parameter}={value.isoformat()} is outside the representable range."
        ) from exc


def _iso(value: datetime) -> str:
    return format_time(value)


def _next_query(start: datetime | None, end: datetime | None, limit: int, cursor: str) -> str:
    params: dict[str, str] = {"limit": str(limit), "cursor": cursor}
    if start is not None:
        params["from"] = _iso(start)
    if end is not None:
        params["to"] = _iso(end)
    return urlencode(params)
