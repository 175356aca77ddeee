"""Bybit v5 market REST format, as ccxt's ``bybit`` client expects it (under ``/bybit``).

Routes: ``/v5/market/time``, ``/v5/market/instruments-info`` (linear perpetuals),
``/v5/market/kline`` and ``/v5/market/funding/history``. Every answer is
``{"retCode", "retMsg", "result", "retExtInfo", "time"}``; lists come newest first, and a
range longer than ``limit`` keeps its newest rows, as Bybit does. The emulator serves the
perpetual series of the data here (the shared data has no second venue; the format, the
client and the failure modes are what is being exercised). A rate limit is ``retCode``
10006 with ``X-Bapi-Limit-Reset-Timestamp``, as Bybit answers it.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from features.emulator.context import EmulatorContext
from features.emulator.data import RangeQuery, decimal_string

PREFIX = "/bybit"

_INTERVALS = {"1m": "1", "5m": "5", "15m": "15", "30m": "30", "1h": "60", "2h": "120", "4h": "240"}


def bybit_routes(context: EmulatorContext) -> list[Route]:
    """The Bybit v5 routes bound to one emulator's context."""

    def endpoint(handler: Any) -> Any:
        async def route(request: Request) -> Response:
            response = await context.guard(request, request.query_params.get("symbol"), _errors)
            return response if response is not None else handler(request)

        return route

    def server_time(_: Request) -> Response:
        now = context.clock.now_ms()
        return _ok({"timeSecond": str(now // 1000), "timeNano": str(now * 1_000_000)}, now)

    def instruments(request: Request) -> Response:
        if request.query_params.get("category") != "linear":
            category = request.query_params.get("category", "")
            return _ok({"category": category, "list": []}, context.clock.now_ms())
        if request.query_params.get("status") == "PreLaunch":
            return _ok(
                {"category": "linear", "list": [], "nextPageCursor": ""}, context.clock.now_ms()
            )
        listed = [
            {
                "symbol": symbol,
                "contractType": "LinearPerpetual",
                "status": "Trading",
                "baseCoin": symbol.removesuffix("USDT"),
                "quoteCoin": "USDT",
                "launchTime": "1585526400000",
                "deliveryTime": "0",
                "deliveryFeeRate": "",
                "priceScale": "2",
                "leverageFilter": {
                    "minLeverage": "1",
                    "maxLeverage": "100.00",
                    "leverageStep": "0.01",
                },
                "priceFilter": {
                    "minPrice": "0.0001",
                    "maxPrice": "1999999.00",
                    "tickSize": "0.0001",
                },
                "lotSizeFilter": {
                    "maxOrderQty": "1190.000",
                    "minOrderQty": "0.001",
                    "qtyStep": "0.001",
                    "postOnlyMaxOrderQty": "1190.000",
                    "minNotionalValue": "5",
                },
                "unifiedMarginTrade": True,
                "fundingInterval": 480,
                "settleCoin": "USDT",
            }
            for symbol in context.market.symbols("perp")
        ]
        return _ok(
            {"category": "linear", "list": listed, "nextPageCursor": ""}, context.clock.now_ms()
        )

    def kline(request: Request) -> Response:
        query = request.query_params
        symbol = query.get("symbol", "").upper()
        if query.get("category") != "linear":
            return _fail(10001, "params error: category only supports linear here")
        if query.get("interval") != _INTERVALS.get(context.market.interval):
            return _fail(10001, "params error: invalid interval")
        if symbol not in context.market.symbols("perp"):
            return _fail(10001, "params error: Symbol Is Invalid")
        page = _range(query, "start", "end", 1000)
        if isinstance(page, Response):
            return page
        rows = context.market.klines(
            "perp",
            symbol,
            context.clock.now_ms(),
            page,
            context.faults.data_faults(request.url.path, symbol),
        )
        listed = [
            [
                str(int(pd.Timestamp(r.ts).value // 1_000_000)),
                decimal_string(r.open),
                decimal_string(r.high),
                decimal_string(r.low),
                decimal_string(r.close),
                decimal_string(r.volume),
                decimal_string(r.quote_volume) or "",
            ]
            for r in rows.itertuples(index=False)
        ]
        return _ok({"symbol": symbol, "category": "linear", "list": listed}, context.clock.now_ms())

    def funding_history(request: Request) -> Response:
        query = request.query_params
        symbol = query.get("symbol", "").upper()
        if query.get("category") != "linear":
            return _fail(10001, "params error: category only supports linear here")
        page = _range(query, "startTime", "endTime", 200)
        if isinstance(page, Response):
            return page
        if page.start_ms is not None and page.end_ms is None:
            return _fail(10001, "params error: endTime is required when startTime is passed")
        if symbol not in context.market.symbols("perp"):
            return _fail(10001, "params error: Symbol Is Invalid")
        events = context.market.funding_events(
            symbol,
            context.clock.now_ms(),
            page,
            context.faults.data_faults(request.url.path, symbol),
        )
        listed = [
            {
                "symbol": symbol,
                "fundingRate": decimal_string(e.funding_rate),
                "fundingRateTimestamp": str(int(pd.Timestamp(e.ts).value // 1_000_000)),
            }
            for e in events.itertuples(index=False)
        ]
        return _ok({"category": "linear", "list": listed}, context.clock.now_ms())

    return [
        Route(f"{PREFIX}/v5/market/time", endpoint(server_time)),
        Route(f"{PREFIX}/v5/market/instruments-info", endpoint(instruments)),
        Route(f"{PREFIX}/v5/market/kline", endpoint(kline)),
        Route(f"{PREFIX}/v5/market/funding/history", endpoint(funding_history)),
    ]


def _ok(result: dict[str, Any], now: int) -> Response:
    return JSONResponse(
        {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": now}
    )


def _fail(code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        {
            "retCode": code,
            "retMsg": message,
            "result": {},
            "retExtInfo": {},
            "time": int(time.time() * 1000),
        },
        headers=headers,
    )


def _range(query: Any, start: str, end: str, most: int) -> RangeQuery | Response:
    """The time range and page size of a request (``limit`` defaults to 200, capped)."""
    try:
        bounds = [None if query.get(k) in (None, "") else int(query[k]) for k in (start, end)]
        limit = int(query.get("limit") or 200)
    except ValueError:
        return _fail(10001, f"params error: {start}, {end} and limit must be integers")
    return RangeQuery(bounds[0], bounds[1], max(1, min(limit, most)), "bybit")


class _BybitErrors:
    """How Bybit answers an injected rate limit or server error."""

    @staticmethod
    def rate_limited(retry_after: float) -> Response:
        reset = int((time.time() + retry_after) * 1000)
        return _fail(
            10006,
            "Too many visits. Exceeded the API Rate Limit.",
            {"X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": str(reset)},
        )

    @staticmethod
    def server_error(status: int) -> Response:
        return PlainTextResponse("Service Unavailable", status_code=status)


_errors = _BybitErrors()

__all__ = ["PREFIX", "bybit_routes"]
