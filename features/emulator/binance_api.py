"""Binance spot and USDT-M futures REST formats, as the emulator serves them.

Spot: ``/api/v3/time``, ``/api/v3/exchangeInfo``, ``/api/v3/klines``. USDT-M:
``/fapi/v1/time``, ``/fapi/v1/exchangeInfo``, ``/fapi/v1/klines``, ``/fapi/v1/fundingRate``,
``/fapi/v1/premiumIndex``, ``/fapi/v1/openInterest``. Answers follow Binance's documented
shapes (klines as 12-field arrays with numbers as strings; errors as ``{"code", "msg"}`` with
HTTP 400; ``X-MBX-USED-WEIGHT-1M`` on every answer; 429 with ``Retry-After`` when the
per-minute weight is exceeded). Values the data does not have (the perp files carry no
quote volume, trade count or taker flow) are served as JSON ``null``; the real venue always
sends them.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Final

import pandas as pd
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from features.emulator.context import EmulatorContext
from features.emulator.data import RangeQuery, decimal_string, is_missing

SPOT_WEIGHT_LIMIT: Final[int] = 6000
USDM_WEIGHT_LIMIT: Final[int] = 2400
WEIGHT_HEADER: Final[str] = "X-MBX-USED-WEIGHT-1M"


class WeightMeter:
    """Request weight counted per real minute, per server, as Binance meters an IP."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._minute = -1
        self._used = 0

    def spend(self, weight: int) -> tuple[int, float | None]:
        """Count ``weight``; returns the weight used and, when over the limit, the seconds
        until the minute ends (the ``Retry-After`` to send)."""
        now = time.time()
        with self._lock:
            minute = int(now // 60)
            if minute != self._minute:
                self._minute, self._used = minute, 0
            self._used += weight
            over = self._used > self.limit
            return self._used, (60.0 - now % 60) if over else None


def binance_routes(context: EmulatorContext) -> list[Route]:
    """The spot and USDT-M routes bound to one emulator's context."""
    spot = WeightMeter(SPOT_WEIGHT_LIMIT)
    usdm = WeightMeter(USDM_WEIGHT_LIMIT)

    def endpoint(meter: WeightMeter, weight: Any, handler: Any) -> Any:
        async def route(request: Request) -> Response:
            cost = weight(request) if callable(weight) else weight
            used, retry_after = meter.spend(cost)
            response = await context.guard(request, request.query_params.get("symbol"), _errors)
            if response is None and retry_after is not None:
                response = _error(
                    429,
                    -1003,
                    f"Too many requests; current limit of IP is {meter.limit} request weight "
                    "per 1 MINUTE.",
                    {"Retry-After": str(math.ceil(retry_after))},
                )
            if response is None:
                response = handler(request)
            response.headers[WEIGHT_HEADER] = str(used)
            return response

        return route

    def server_time(_: Request) -> Response:
        return JSONResponse({"serverTime": context.clock.now_ms()})

    def exchange_info(kind: str, limit: int) -> Any:
        def handler(_: Request) -> Response:
            symbols = context.market.symbols("spot" if kind == "spot" else "perp")
            return JSONResponse(
                {
                    "timezone": "UTC",
                    "serverTime": context.clock.now_ms(),
                    "rateLimits": [
                        {
                            "rateLimitType": "REQUEST_WEIGHT",
                            "interval": "MINUTE",
                            "intervalNum": 1,
                            "limit": limit,
                        }
                    ],
                    "exchangeFilters": [],
                    "symbols": [
                        {
                            "symbol": s,
                            "status": "TRADING",
                            "baseAsset": s.removesuffix("USDT"),
                            "quoteAsset": "USDT",
                            **({"contractType": "PERPETUAL"} if kind == "usdm" else {}),
                        }
                        for s in symbols
                    ],
                }
            )

        return handler

    def klines(kind: str, max_limit: int) -> Any:
        def handler(request: Request) -> Response:
            query = request.query_params
            symbol = query.get("symbol", "").upper()
            if query.get("interval") != context.market.interval:
                return _error(400, -1120, "Invalid interval.")
            parsed = _ints(query, ("startTime", "endTime", "limit"))
            if isinstance(parsed, Response):
                return parsed
            limit = parsed["limit"] or 500
            if not 1 <= limit <= max_limit:
                return _error(400, -1130, f"Parameter 'limit' must lie in 1..{max_limit}.")
            if symbol not in context.market.symbols("spot" if kind == "spot" else "perp"):
                return _error(400, -1121, "Invalid symbol.")
            path = request.url.path
            rows = context.market.klines(
                "spot" if kind == "spot" else "perp",
                symbol,
                context.clock.now_ms(),
                RangeQuery(parsed["startTime"], parsed["endTime"], limit, "binance"),
                context.faults.data_faults(path, symbol),
            )
            step = context.market.step_ms
            return JSONResponse([_kline(row, step) for row in rows.itertuples(index=False)])

        return handler

    def funding_rate(request: Request) -> Response:
        query = request.query_params
        symbol = query.get("symbol", "").upper()
        parsed = _ints(query, ("startTime", "endTime", "limit"))
        if isinstance(parsed, Response):
            return parsed
        limit = parsed["limit"] or 100
        if not 1 <= limit <= 1000:
            return _error(400, -1130, "Parameter 'limit' must lie in 1..1000.")
        if symbol not in context.market.funding:
            return JSONResponse([])
        now = context.clock.now_ms()
        events = context.market.funding_events(
            symbol,
            now,
            RangeQuery(parsed["startTime"], parsed["endTime"], limit, "binance"),
            context.faults.data_faults(request.url.path, symbol),
        )
        out = []
        for event in events.itertuples(index=False):
            ms = int(pd.Timestamp(event.ts).value // 1_000_000)
            mark = context.market.last_close("perp", symbol, ms)
            out.append(
                {
                    "symbol": symbol,
                    "fundingRate": decimal_string(event.funding_rate),
                    "fundingTime": ms,
                    "markPrice": decimal_string(mark[0]) if mark is not None else "",
                }
            )
        return JSONResponse(out)

    def premium_index(request: Request) -> Response:
        symbol = request.query_params.get("symbol", "").upper()
        if symbol not in context.market.symbols("perp"):
            return _error(400, -1121, "Invalid symbol.")
        now = _frozen_now(context, request, symbol)
        mark = context.market.last_close("perp", symbol, now)
        index = context.market.last_close("spot", symbol, now)
        funding = context.market.last_funding(symbol, now)
        return JSONResponse(
            {
                "symbol": symbol,
                "markPrice": decimal_string(mark[0]) if mark else "",
                "indexPrice": decimal_string(index[0]) if index else "",
                "estimatedSettlePrice": decimal_string(mark[0]) if mark else "",
                "lastFundingRate": decimal_string(funding[0]) if funding else "0",
                "interestRate": "0.00010000",
                "nextFundingTime": context.market.next_funding_ms(symbol, now),
                "time": now,
            }
        )

    def open_interest(request: Request) -> Response:
        symbol = request.query_params.get("symbol", "").upper()
        if symbol not in context.market.symbols("perp"):
            return _error(400, -1121, "Invalid symbol.")
        now = _frozen_now(context, request, symbol)
        value = context.market.open_interest_at(symbol, now)
        shown = decimal_string(value) if value is not None else ""
        return JSONResponse({"openInterest": shown, "symbol": symbol, "time": now})

    def kline_weight(request: Request) -> int:
        limit = int(request.query_params.get("limit", "500") or 500)
        return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10

    return [
        Route("/api/v3/time", endpoint(spot, 1, server_time)),
        Route("/api/v3/exchangeInfo", endpoint(spot, 20, exchange_info("spot", spot.limit))),
        Route("/api/v3/klines", endpoint(spot, 2, klines("spot", 1000))),
        Route("/fapi/v1/time", endpoint(usdm, 1, server_time)),
        Route("/fapi/v1/exchangeInfo", endpoint(usdm, 1, exchange_info("usdm", usdm.limit))),
        Route("/fapi/v1/klines", endpoint(usdm, kline_weight, klines("usdm", 1500))),
        Route("/fapi/v1/fundingRate", endpoint(usdm, 1, funding_rate)),
        Route("/fapi/v1/premiumIndex", endpoint(usdm, 1, premium_index)),
        Route("/fapi/v1/openInterest", endpoint(usdm, 1, open_interest)),
    ]


def _frozen_now(context: EmulatorContext, request: Request, symbol: str) -> int:
    """Simulated now, or the freeze time of a ``stale`` fault on this endpoint and symbol."""
    now = context.clock.now_ms()
    faults = context.faults.data_faults(request.url.path, symbol)
    for item in faults.items:
        if item.fault.kind == "stale" and item.since is not None:
            faults.applied(item)
            now = min(now, int(item.since.value // 1_000_000))
    return now


def _kline(row: Any, step_ms: int) -> list[Any]:
    open_ms = int(pd.Timestamp(row.ts).value // 1_000_000)
    trades = None if is_missing(row.trades) else int(row.trades)
    return [
        open_ms,
        decimal_string(row.open),
        decimal_string(row.high),
        decimal_string(row.low),
        decimal_string(row.close),
        decimal_string(row.volume),
        open_ms + step_ms - 1,
        decimal_string(row.quote_volume),
        trades,
        decimal_string(row.taker_buy_volume),
        decimal_string(row.taker_buy_quote_volume),
        "0",
    ]


def _ints(query: Any, names: tuple[str, ...]) -> dict[str, int | None] | Response:
    out: dict[str, int | None] = {}
    for name in names:
        raw = query.get(name)
        if raw is None or raw == "":
            out[name] = None
            continue
        try:
            out[name] = int(raw)
        except ValueError:
            return _error(400, -1100, f"Illegal characters found in parameter '{name}'.")
    return out


def _error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"code": code, "msg": message}, status_code=status, headers=headers)


class _BinanceErrors:
    """How Binance answers an injected rate limit or server error."""

    @staticmethod
    def rate_limited(retry_after: float) -> Response:
        return _error(
            429,
            -1003,
            "Too many requests; please use the websocket for live updates to avoid polling.",
            {"Retry-After": f"{retry_after:g}"},
        )

    @staticmethod
    def server_error(status: int) -> Response:
        return _error(
            status,
            -1001,
            "Internal error; unable to process your request. Please try again.",
        )


_errors = _BinanceErrors()

__all__ = ["binance_routes"]
