"""Request body size limit as a pure ASGI middleware answering RFC 9457 413 problems.

The API reads at most a short JSON admin body; anything larger is refused before it is
buffered, whether the client declares its size (``Content-Length``) or streams it.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.problems import problem_response

DEFAULT_MAX_BODY_BYTES = 16 * 1024


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
