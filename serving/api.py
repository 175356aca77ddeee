"""The serving API: risk snapshots and multipliers over HTTP.

``create_app(config)`` builds the FastAPI app; ``app_from_env()`` is the factory uvicorn
workers call (``uvicorn serving.api:app_from_env --factory``).

Read endpoints (public, versioned under ``/v1``, ``GET`` and ``HEAD``) are rendered once
per store version by :class:`serving.risk_reads.RiskReads` and served from memory with a
weak ETag (``If-None-Match`` -> 304), gzip when accepted and ``Cache-Control: max-age``
counting down to the next expected publication. Every row is verified before it is
served (:mod:`serving.log_integrity`); an asset whose rows do not verify answers 503.
Every error is an RFC 9457 problem. Admin endpoints (:mod:`serving.admin_api`) need an
API key.

Routes
------
``GET /v1/risk``                          newest snapshot of every asset
``GET /v1/risk/{asset}?at=``              newest snapshot, or the one in force at ``at``
``GET /v1/risk/{asset}/history``          ``from``, ``to``, ``limit``, ``cursor``; paginated,
                                          with the hash chain of every snapshot
``GET /v1/multipliers``                   asset -> multiplier, status, valid_until
``GET /v1/oracle-updates``                the risk-oracle form of the newest snapshots
``GET /v1/checkpoint``                    newest signed checkpoint over every chain head
``GET /v1/schema``, ``GET /v1/keys``      JSON Schema; public keys for verification
``GET /healthz``, ``/readyz``, ``/metrics``   liveness, readiness, Prometheus
``POST /v1/admin/assets/{asset}/halt|resume|override|clear-override``
``GET /``                                 the status page
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Protocol

from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.middleware.cors import CORSMiddleware
from starlette.responses import Response

from serving.admin_api import build_admin_router
from serving.admin_auth import load_keyring
from serving.api_backend import StoreBackend
from serving.api_config import ApiConfig
from serving.compression import GzipMiddleware
from serving.errors import InvalidInputError
from serving.fast_reads import FastReadMiddleware
from serving.head_requests import HeadMiddleware
from serving.http_caching import RenderedBody, conditional_response, render_json
from serving.input_validation import ASSET_INPUT_PATTERN, to_utc
from serving.latest_view import LatestViewCache, LoadedSnapshots
from serving.metrics import ApiMetrics, MetricsMiddleware
from serving.problems import (
    PROBLEM_MEDIA_TYPE,
    ProblemError,
    install_problem_handlers,
    problem_for,
    problem_response,
)
from serving.request_limits import BodySizeLimitMiddleware, InFlightLimitMiddleware
from serving.risk_reads import RiskReads
from serving.store import StoreNotInitialisedError

API_VERSION = "1"
MAX_HISTORY_LIMIT = 1000

AssetParam = Annotated[
    str,
    PathParam(
        description=f"Asset symbol, e.g. BTCUSDT (ASCII, {ASSET_INPUT_PATTERN}).",
        examples=["BTCUSDT"],
    ),
]

_PROBLEM = {"description": "RFC 9457 problem", "content": {PROBLEM_MEDIA_TYPE: {}}}
_READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified (If-None-Match matched the ETag)"},
    422: _PROBLEM,
    503: _PROBLEM,
}


class HasWorkdir(Protocol):
    """Anything with a ``workdir`` (e.g. :class:`pipelines.settings.Settings`)."""

    workdir: Path


def create_app(
    settings_or_config: ApiConfig | HasWorkdir, *, backend: StoreBackend | None = None
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
        The app, with middleware (metrics, in-flight limit, HEAD, body limit, CORS, gzip,
        fast reads) and problem handlers.
    """
    config = (
        settings_or_config
        if isinstance(settings_or_config, ApiConfig)
        else ApiConfig.from_workdir(Path(settings_or_config.workdir))
    )
    reads_ref: list[RiskReads] = []
    metrics = ApiMetrics(lambda: reads_ref[0].snapshot_gauges() if reads_ref else {})
    backend = backend or StoreBackend(config, on_integrity_failure=metrics.integrity_failure)
    views = LatestViewCache(_empty_until_initialised(backend.latest), config.refresh_seconds)
    reads = RiskReads(config, backend, views)
    reads_ref.append(reads)

    app = FastAPI(
        title=config.title,
        version=API_VERSION,
        summary="Signed dynamic margin multipliers and RiskSnapshot v1 risk metrics.",
        # Prometheus (/metrics) is the observability path; FastAPI's built-in
        # OpenTelemetry hooks would cost ~40 us per request to do nothing here.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # A trailing-slash redirect would build its Location from the client's Host
        # header; a wrong path is a 404 problem that names the right one instead.
        redirect_slashes=False,
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

    # Added innermost first: requests pass metrics -> in-flight limit -> HEAD -> body
    # limit -> CORS -> gzip -> fast reads -> routes.
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
    app.add_middleware(HeadMiddleware)
    app.add_middleware(InFlightLimitMiddleware, max_in_flight=config.max_in_flight)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def app_from_env() -> FastAPI:
    """App factory for uvicorn workers: the config comes from ``DYNAMARGIN_*`` variables."""
    return create_app(ApiConfig.from_env())


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

    @app.get(
        "/v1/risk/{asset}",
        tags=["risk"],
        responses={**_READ_RESPONSES, 404: _PROBLEM},
    )
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
        """Published snapshots of one asset, oldest first, ``limit`` per page.

        ``chain`` lists, for each snapshot, the hash-chain link that lets a consumer
        check that no publication was removed, inserted or rewritten (see the README).
        """
        view = await reads.view()
        canonical = reads.require_asset(view, asset)
        rendered = await reads.history(
            view,
            canonical,
            _utc(start, "from") if start else None,
            _utc(end, "to") if end else None,
            limit,
            cursor,
            request.url.path,
        )
        return _send(request, rendered)

    @app.get(
        "/v1/checkpoint",
        tags=["risk"],
        responses={**_READ_RESPONSES, 404: _PROBLEM},
    )
    async def checkpoint(request: Request) -> Response:
        """Newest checkpoint: the publisher's Ed25519 signature over every chain head."""
        return _send(request, await reads.checkpoint())

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
        """Readiness: the store is the one opened, verifies, and every required asset has a
        live snapshot."""
        ready, checks = await reads.readiness()
        if ready:
            return _uncached_json({"status": "ready", "checks": checks})
        return problem_response(
            503,
            "not-ready",
            "Not ready: the store is unreachable, replaced or fails verification, or a "
            "required asset has no live snapshot.",
            instance=request.url.path,
            extensions={"checks": checks},
            headers={"Cache-Control": "no-store"},
        )

    @app.get("/metrics", tags=["ops"])
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition: requests, latency, snapshot age, integrity failures."""
        try:
            await reads.view()
        except ProblemError:
            pass  # No snapshot gauges without a store; request metrics still matter.
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})


def _empty_until_initialised(load_latest: Any) -> Any:
    # Before the first `dynamargin publish` there is no schema; to a reader that is the
    # same as "nothing published yet" (an empty list, revalidated on every request), while
    # /readyz says "uninitialised" so an operator sees the difference.
    def load() -> LoadedSnapshots:
        try:
            return load_latest()
        except StoreNotInitialisedError:
            return LoadedSnapshots({})

    return load


def _uncached_json(payload: dict[str, Any]) -> Response:
    # Operational answers must reflect this moment, never a cache.
    rendered = render_json(payload, fresh_until=None)
    return Response(
        rendered.body, media_type=rendered.media_type, headers={"Cache-Control": "no-store"}
    )


def _send(request: Request, rendered: RenderedBody) -> Response:
    headers = request.headers
    return conditional_response(
        rendered,
        if_none_match=headers.get("if-none-match"),
        accept_encoding=headers.get("accept-encoding"),
    )


def _utc(value: datetime, parameter: str) -> datetime:
    try:
        return to_utc(value, parameter)
    except InvalidInputError as exc:
        raise problem_for(exc) from exc
