"""The public dump's daily spot kline files, as the emulator serves them (under ``/dump``).

``/dump/data/spot/daily/klines/SYM/IV/SYM-IV-YYYY-MM-DD.zip`` and its ``.CHECKSUM``: one
headerless 12-column CSV per day in a zip, published ``publish_delay`` (simulated) after the
day ends, with open and close times in milliseconds before 2025 and in microseconds from
2025-01-01 on, as the real spot dump switched. The zip is built deterministically (fixed
member time), so its checksum is stable and a cached copy stays valid.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile

import pandas as pd
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from features.emulator.context import EmulatorContext
from features.emulator.data import decimal_string

PREFIX = "/dump"
_NAME = re.compile(
    r"^(?P<symbol>[A-Z0-9]+)-(?P<interval>\d+[mhd])-(?P<day>\d{4}-\d{2}-\d{2})\.zip$"
)
_MICROSECONDS_FROM = pd.Timestamp("2025-01-01", tz="UTC")


def dump_routes(context: EmulatorContext) -> list[Route]:
    """The daily-file route bound to one emulator's context."""

    async def daily_file(request: Request) -> Response:
        symbol = request.path_params["symbol"].upper()
        response = await context.guard(request, symbol, _errors)
        if response is not None:
            return response
        name = request.path_params["name"]
        checksum = name.endswith(".CHECKSUM")
        match = _NAME.match(name.removesuffix(".CHECKSUM"))
        if (
            match is None
            or match["symbol"] != symbol
            or match["interval"] != request.path_params["interval"]
            or match["interval"] != context.market.interval
            or symbol not in context.market.symbols("spot")
        ):
            return _not_found()
        day = pd.Timestamp(match["day"], tz="UTC")
        published = day + pd.Timedelta(days=1) + context.dump_publish_delay
        if context.clock.now() < published:
            return _not_found()
        payload = daily_zip(context, symbol, day, name.removesuffix(".CHECKSUM"))
        if payload is None:
            return _not_found()
        if checksum:
            digest = hashlib.sha256(payload).hexdigest()
            return PlainTextResponse(f"{digest}  {name.removesuffix('.CHECKSUM')}\n")
        return Response(payload, media_type="application/zip")

    return [Route(f"{PREFIX}/data/spot/daily/klines/{{symbol}}/{{interval}}/{{name}}", daily_file)]


def daily_zip(context: EmulatorContext, symbol: str, day: pd.Timestamp, name: str) -> bytes | None:
    """The zip of one day's bars, or ``None`` when the day has no bar."""
    series = context.market.spot.get(symbol)
    if series is None:
        return None
    frame = series.frame
    rows = frame[(frame["ts"] >= day) & (frame["ts"] < day + pd.Timedelta(days=1))]
    if rows.empty:
        return None
    scale = 1_000 if day >= _MICROSECONDS_FROM else 1
    step_ms = context.market.step_ms
    lines = []
    for row in rows.itertuples(index=False):
        open_ms = int(pd.Timestamp(row.ts).value // 1_000_000)
        fields = [
            str(open_ms * scale),
            decimal_string(row.open),
            decimal_string(row.high),
            decimal_string(row.low),
            decimal_string(row.close),
            decimal_string(row.volume),
            str((open_ms + step_ms) * scale - 1),
            decimal_string(row.quote_volume),
            str(int(row.trades)),
            decimal_string(row.taker_buy_volume),
            decimal_string(row.taker_buy_quote_volume),
            "0",
        ]
        lines.append(",".join(field or "" for field in fields))
    member = zipfile.ZipInfo(
        name.replace(".zip", ".csv"), date_time=(day.year, day.month, day.day, 0, 0, 0)
    )
    member.compress_type = zipfile.ZIP_DEFLATED
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(member, "\n".join(lines) + "\n")
    return buffer.getvalue()


def _not_found() -> Response:
    return PlainTextResponse("Not Found", status_code=404)


class _DumpErrors:
    """How the dump's file server answers an injected rate limit or server error."""

    @staticmethod
    def rate_limited(retry_after: float) -> Response:
        return PlainTextResponse(
            "Too Many Requests", status_code=429, headers={"Retry-After": f"{retry_after:g}"}
        )

    @staticmethod
    def server_error(status: int) -> Response:
        return PlainTextResponse("Service Unavailable", status_code=status)


_errors = _DumpErrors()

__all__ = ["PREFIX", "daily_zip", "dump_routes"]
