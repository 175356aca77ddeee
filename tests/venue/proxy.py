"""A loopback HTTP proxy in front of a real ``dynamargin serve`` that can misbehave.

``mode`` decides what ``GET /v1/risk`` returns: the upstream body (``pass``), that body with
one byte changed inside a signed value (``tamper``), a 503 (``fail``), or a fixed body
(``body``). Every other path is forwarded as is.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


def tamper(body: bytes) -> bytes:
    """Change one digit of every snapshot's ``sigma``: valid JSON, broken signatures."""
    out = bytearray(body)
    start = 0
    while (found := body.find(b'"sigma":', start)) >= 0:
        at = found + len(b'"sigma":') + 3
        assert out[at : at + 1].isdigit(), body[found : found + 20]
        out[at] = ord("1") if out[at] != ord("1") else ord("2")
        start = at
    return bytes(out)


class MisbehavingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self.body = b""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/v1/risk") and self.path.split("?")[0] == "/v1/risk":
                    if proxy.mode == "fail":
                        return self._send(503, b'{"title":"injected"}', {})
                    if proxy.mode == "body":
                        return self._send(200, proxy.body, {"ETag": f'"{hash(proxy.body)}"'})
                upstream = httpx.get(proxy.upstream + self.path, headers={
                    k: v for k, v in self.headers.items() if k.lower() == "if-none-match"
                })  # fmt: skip
                body = upstream.content
                if (
                    proxy.mode == "tamper"
                    and self.path == "/v1/risk"
                    and upstream.status_code == 200
                ):
                    body = tamper(body)
                headers = {"ETag": upstream.headers["etag"]} if "etag" in upstream.headers else {}
                self._send(upstream.status_code, body, headers)

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> MisbehavingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
