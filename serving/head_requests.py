"""HEAD answered exactly like GET, without the body (RFC 9110 section 9.3.2).

Every GET route also answers HEAD; this pure ASGI middleware runs the request as the GET it
mirrors and drops the body bytes on the way out, keeping the status and every header
(``Content-Length``, ``ETag``, ``Cache-Control``) so a client can probe a resource cheaply.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadMiddleware:
    """Serve ``HEAD`` through the ``GET`` handlers and send no body.

    Parameters
    ----------
    app
        The wrapped ASGI app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)
