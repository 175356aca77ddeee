"""The emulator's ASGI app: the venues' routes, fault handling and the control endpoints.

Control endpoints (JSON; for tests, the demo and an operator rehearsing an incident):

- ``GET /_emulator/state``: clock, market, active faults, answers served by path and status;
- ``POST /_emulator/clock``: ``{"set": ISO time, "speed": x, "paused": bool, "advance": "1h"}``
  (any subset);
- ``POST /_emulator/faults``: a :class:`~features.emulator.faults.Fault`; answers its ``id``;
- ``DELETE /_emulator/faults`` (all) and ``DELETE /_emulator/faults/{id}``.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from features.emulator.binance_api import binance_routes
from features.emulator.bybit_api import bybit_routes
from features.emulator.context import EmulatorContext
from features.emulator.dump_api import dump_routes
from features.emulator.faults import Fault

logger = logging.getLogger("dynamargin.emulator")

CONTROL_PREFIX = "/_emulator"


def build_app(context: EmulatorContext) -> Starlette:
    """The emulator's Starlette app for one context."""

    async def state(_: Request) -> Response:
        span = context.market.span()
        with context.lock:
            served = [
                {"path": path, "status": status, "count": count}
                for (path, status), count in sorted(context.served.items())
            ]
        return JSONResponse(
            {
                "clock": context.clock.state(),
                "market": {
                    "source": context.market.source,
                    "interval": context.market.interval,
                    "spot": context.market.symbols("spot"),
                    "perp": context.market.symbols("perp"),
                    "first_bar": span[0].isoformat() if span else None,
                    "last_bar": span[1].isoformat() if span else None,
                },
                "faults": [f.to_dict() for f in context.faults.active()],
                "served": served,
            }
        )

    async def clock(request: Request) -> Response:
        body = await _json(request)
        if isinstance(body, Response):
            return body
        unknown = set(body) - {"set", "speed", "paused", "advance"}
        if unknown:
            return _bad(
                f"unknown clock field(s) {sorted(unknown)}; use set, speed, paused, advance"
            )
        try:
            if any(k in body for k in ("set", "speed", "paused")):
                context.clock.set(
                    body.get("set"), speed=body.get("speed"), paused=body.get("paused")
                )
            if "advance" in body:
                advance = body["advance"]
                delta = (
                    pd.Timedelta(seconds=advance)
                    if isinstance(advance, int | float)
                    else pd.Timedelta(advance)
                )
                context.clock.advance(delta)
        except (TypeError, ValueError) as exc:
            return _bad(f"bad clock change {body}: {exc}")
        logger.info("emulator: clock %s", context.clock.state())
        return JSONResponse(context.clock.state())

    async def add_fault(request: Request) -> Response:
        body = await _json(request)
        if isinstance(body, Response):
            return body
        try:
            fault = Fault.model_validate(body)
        except ValidationError as exc:
            return _bad(f"not a fault: {exc.errors(include_url=False)}")
        active = context.faults.add(fault, context.clock.now(), context.market.step)
        logger.warning("emulator: injected %s", active.to_dict())
        return JSONResponse(active.to_dict(), status_code=201)

    async def clear_faults(_: Request) -> Response:
        count = context.faults.clear()
        logger.info("emulator: cleared %d fault(s)", count)
        return JSONResponse({"cleared": count})

    async def remove_fault(request: Request) -> Response:
        fault_id = request.path_params["fault_id"]
        if not context.faults.remove(fault_id):
            return JSONResponse({"error": f"no active fault {fault_id}"}, status_code=404)
        logger.info("emulator: removed fault #%d", fault_id)
        return JSONResponse({"removed": fault_id})

    routes = [
        Route(f"{CONTROL_PREFIX}/state", state),
        Route(f"{CONTROL_PREFIX}/clock", clock, methods=["POST"]),
        Route(f"{CONTROL_PREFIX}/faults", add_fault, methods=["POST"]),
        Route(f"{CONTROL_PREFIX}/faults", clear_faults, methods=["DELETE"]),
        Route(f"{CONTROL_PREFIX}/faults/{{fault_id:int}}", remove_fault, methods=["DELETE"]),
        *binance_routes(context),
        *bybit_routes(context),
        *dump_routes(context),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(_CountAnswers, context=context)
    return app


class _CountAnswers:
    """Count every answer by path and status (the state endpoint reports them)."""

    def __init__(self, app: ASGIApp, context: EmulatorContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]

        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                with self.context.lock:
                    self.context.served[(path, int(message["status"]))] += 1
            await send(message)

        await self.app(scope, receive, counting)


async def _json(request: Request) -> dict[str, Any] | Response:
    try:
        body = await request.json()
    except ValueError:
        return _bad("the body is not JSON")
    if not isinstance(body, dict):
        return _bad("the body must be a JSON object")
    return body


def _bad(message: str) -> Response:
    return JSONResponse({"error": message}, status_code=400)


__all__ = ["CONTROL_PREFIX", "EmulatorContext", "build_app"]
