"""The venue's HTTP endpoint: ``/status`` (JSON), ``/metrics``, ``/healthz``, and
``POST /v1/liquidation-price`` (:mod:`venue.liquidation_http`, its OpenAPI at
``/v1/openapi.json``).

Standard library only, in a daemon thread. It serves the venue's last published status dict
and the metrics registry; it never touches the engine (the liquidation-price endpoint replays
the posted account into an engine of its own), and any other method is 405.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from liquidation.account_spec import InForce
from venue import liquidation_http


class StatusServer:
    """Serve ``status()`` and ``metrics()`` on ``host:port`` (port 0: any free port).

    Parameters
    ----------
    status
        Returns the JSON-able status (called per request; must not block).
    metrics
        Returns the Prometheus text exposition.
    in_force
        Returns the venue's parameters in force (its configuration and snapshots), for
        liquidation prices against them (:mod:`venue.liquidation_http`, mode (b)); None
        serves only mode (a).
    """

    def __init__(
        self,
        status: Callable[[], dict[str, Any]],
        metrics: Callable[[], bytes],
        host: str = "127.0.0.1",
        port: int = 0,
        in_force: Callable[[], InForce] | None = None,
    ) -> None:
        routes: dict[str, Callable[[], tuple[bytes, str]]] = {
            "/status": lambda: (
                json.dumps(status(), indent=1, sort_keys=True).encode(),
                "application/json",
            ),
            "/metrics": lambda: (metrics(), CONTENT_TYPE_LATEST),
            "/healthz": lambda: (b'{"status":"ok"}', "application/json"),
            liquidation_http.OPENAPI_PATH: lambda: (
                json.dumps(liquidation_http.OPENAPI).encode(),
                "application/json",
            ),
        }

        class Handler(BaseHTTPRequestHandler):
            timeout = 30  # a client that stalls mid-body frees its thread

            def do_GET(self) -> None:
                self._answer(with_body=True)

            def do_HEAD(self) -> None:
                self._answer(with_body=False)

            def _refuse(self) -> None:
                if self.path.split("?", 1)[0] == liquidation_http.PATH:
                    self._send(
                        *liquidation_http.problem(405, "method-not-allowed", "POST the account"),
                        with_body=self.command != "HEAD",
                        allow="POST",
                    )
                    return
                self.send_response(405)
                self.send_header("Allow", "GET, HEAD")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = _refuse

            def __getattr__(self, name: str) -> Any:
                # Any other method (QUERY, PROPFIND, ...) is 405 too, not the base class's 501.
                if name.startswith("do_"):
                    return self._refuse
                raise AttributeError(name)

            def do_POST(self) -> None:
                if self.path.split("?", 1)[0] != liquidation_http.PATH:
                    self._refuse()
                    return
                try:
                    length = liquidation_http.content_length(self.headers.get("Content-Length"))
                except liquidation_http.Problem as exc:
                    self.close_connection = True  # the unread body must not pass for a request
                    self._send(*exc.answer(), with_body=True)
                    return
                body = self.rfile.read(length)
                self._send(
                    *liquidation_http.answer(body, self.headers.get("Content-Type"), in_force),
                    with_body=True,
                )

            def _send(
                self, code: int, body: bytes, media: str, with_body: bool, allow: str = ""
            ) -> None:
                self.send_response(code)
                if allow:
                    self.send_header("Allow", allow)
                self.send_header("Content-Type", media)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def _answer(self, with_body: bool) -> None:
                path = self.path.split("?", 1)[0]
                if path == liquidation_http.PATH:
                    self._refuse()
                    return
                route = routes.get(path)
                if route is None:
                    body, media = b'{"error":"not found"}', "application/json"
                    self.send_response(404)
                else:
                    body, media = route()
                    self.send_response(200)
                self.send_header("Content-Type", media)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # scrapes every few seconds would drown the venue's own log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="venue-status", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StatusServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
