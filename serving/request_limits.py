"""Per-request limits as pure ASGI middleware answering RFC 9457 problems.

* **Body size.** The API reads at most a short JSON admin body; anything larger is refused
  (413) before it is buffered, whether the client declares its size (``Content-Length``)
  or streams it.
* **Requests in flight.** One worker handles at most ``max_in_flight`` requests at once;
  the next one is answered 503 ``overloaded`` with ``Retry-After`` at once instead of
  queueing behind the others (``/healthz`` is exempt, so liveness stays truthful).

Slow clients and idle connections are the server's business (:mod:`serving.http_server`):
an ASGI app only sees a request once its headers have arrived.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.problems import problem_response

DEFAULT_MAX_BODY_BYTES = 16 * 1024
EXEMPT_FROM_IN_FLIGHT = frozenset({"/healthz"})


class InFlightLimitMiddleware:
    """Answer 503 ``overloaded`` once ``max_in_flight`` requests are being handled.

    Parameters
    ----------
    app
        The wrapped ASGI app.
    max_in_flight
        Requests handled at once by this process.
    """

    def __init__(self, app: ASGIApp, max_in_flight: int) -> None:
        if max_in_flight <= 0:
            raise ValueError(f"max_in_flight must be positive, got {max_in_flight}")
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in EXEMPT_FROM_IN_FLIGHT:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            response = problem_response(
                503,
                "overloaded",
                f"This worker is already handling {self.max_in_flight} requests; retry in a "
                "moment.",
                instance=scope.get("path"),
                headers={"Retry-After": "1"},
            )
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class BodySizeLimitMiddleware:
    """Refuse request bodies larger than ``max_body_bytes`` with a 413 problem.

    Parameters
    ----------
    app
        The wrapped ASGI app.
    max_body_bytes
        Largest accepted body, in bytes.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        if max_body_bytes <= 0:
            raise ValueError(f"max_body_bytes must be positive, got {max_body_bytes}")
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            response = problem_response(
                413, "content-too-large", self._detail(declared), instance=scope.get("path")
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # Raised inside the app's body read. An HTTPException, because FastAPI
                    # re-raises those from body parsing (anything else becomes a 400); the
                    # problem handler then answers 413.
                    raise HTTPException(413, detail=self._detail(received))
            return message

        await self.app(scope, limited_receive, send)

    def _detail(self, size: int) -> str:
        return (
            f"The request body ({size} bytes or more) exceeds the limit of "
            f"{self.max_body_bytes} bytes; admin bodies are a short JSON object."
        )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
