"""Fast path for the hottest reads: served from the cached view before FastAPI routing.

Keepers poll ``/v1/multipliers`` and ``/v1/risk/{asset}`` continuously. Their responses are
pre-rendered per store version (:mod:`serving.latest_view`), so what is left per request
is FastAPI's parameter machinery, which costs several times the lookup itself. This pure
ASGI middleware answers the plain forms (GET, no query string, a known asset) directly
with the very same :class:`serving.http_caching.RenderedBody` the routes would serve;
everything else (query strings, a name that is not exactly a published asset's canonical
spelling, a withheld asset, an unreadable or failing store) falls through to the routes,
which produce the documented responses and errors. No case folding happens here: a path
names an asset only byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from serving.http_caching import RenderedBody, conditional_response
from serving.latest_view import StoreUnavailableError
from serving.risk_reads import RiskReads

RISK_PREFIX = "/v1/risk/"


class FastReadMiddleware:
    """Serve ``GET /v1/multipliers``, ``/v1/risk`` and ``/v1/risk/{asset}`` from the view.

    Parameters
    ----------
    app
        The wrapped app (the FastAPI router stack).
    reads
        Builds the rendered responses from the cached view.
    routes
        Route objects by path template, set as ``scope["route"]`` so request metrics are
        labelled exactly as when the router answers.
    """

    def __init__(self, app: ASGIApp, reads: RiskReads, routes: Mapping[str, Any]) -> None:
        self.app = app
        self.reads = reads
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["query_string"]:
            # HEAD arrives here as GET (serving.head_requests), so it takes this path too.
            await self.app(scope, receive, send)
            return
        found = await self._lookup(scope["path"])
        if found is None:
            await self.app(scope, receive, send)
            return
        template, rendered = found
        scope["route"] = self.routes.get(template)
        if_none_match = accept_encoding = None
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if_none_match = value.decode("latin-1")
            elif name == b"accept-encoding":
                accept_encoding = value.decode("latin-1")
        response = conditional_response(
            rendered, if_none_match=if_none_match, accept_encoding=accept_encoding
        )
        await response(scope, receive, send)

    async def _lookup(self, path: str) -> tuple[str, RenderedBody] | None:
        if path != "/v1/multipliers" and path != "/v1/risk" and not path.startswith(RISK_PREFIX):
            return None
        try:
            view = await self.reads.views.get()
        except StoreUnavailableError:
            return None  # the route reports it as a 503 problem
        if view.store_failure is not None:
            return None  # the route reports it as a 503 problem
        if path == "/v1/multipliers":
            return path, self.reads.multipliers(view)
        if path == "/v1/risk":
            return path, self.reads.all_latest(view)
        asset = path[len(RISK_PREFIX) :]
        if asset in view.snapshots:
            return "/v1/risk/{asset}", self.reads.one_latest(view, asset)
        return None
