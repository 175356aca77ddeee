"""Gzip for responses that were not pre-compressed (metrics, OpenAPI, problems, HTML docs).

Cached read responses carry their own gzip form (:mod:`serving.http_caching`); this pure
ASGI middleware compresses the rest. Unlike Starlette's ``GZipMiddleware`` it honours
``gzip;q=0``, leaves responses that already have a ``Content-Encoding`` untouched and never
duplicates ``Vary``.
"""

from __future__ import annotations

import gzip

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.http_caching import GZIP_MIN_BYTES, accepts_gzip


class GzipMiddleware:
    """Compress complete (non-streamed) responses when the client accepts gzip.

    Parameters
    ----------
    app
        The wrapped ASGI app.
    minimum_size
        Bodies smaller than this are sent as they are.
    """

    def __init__(self, app: ASGIApp, minimum_size: int = GZIP_MIN_BYTES) -> None:
        self.app = app
        self.minimum_size = minimum_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not accepts_gzip(Headers(scope=scope).get("accept-encoding")):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        passthrough = False

        async def compressing_send(message: Message) -> None:
            nonlocal start, passthrough
            if message["type"] == "http.response.start":
                headers = Headers(raw=message["headers"])
                if "content-encoding" in headers or message["status"] in (204, 206, 304):
                    passthrough = True
                    await send(message)
                else:
                    start = message
                return
            if passthrough or message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            body = message.get("body", b"")
            if message.get("more_body", False):
                # Streaming response: not worth buffering; send it as it comes.
                passthrough = True
                await send(start)
                await send(message)
                return
            headers = MutableHeaders(raw=start["headers"])
            if len(body) >= self.minimum_size:
                body = gzip.compress(body, compresslevel=6)
                headers["Content-Encoding"] = "gzip"
                headers["Content-Length"] = str(len(body))
            if "accept-encoding" not in headers.get("vary", "").lower():
                headers.append("Vary", "Accept-Encoding")
            await send(start)
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, compressing_send)
