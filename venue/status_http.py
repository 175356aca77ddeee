"""The venue's read-only HTTP endpoint: ``/status`` (JSON), ``/metrics``, ``/healthz``.

Standard library only, in a daemon thread. It serves the venue's last published status dict
and the metrics registry; it never touches the engine, and any method but GET/HEAD is 405.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST


class StatusServer:
    """Serve ``status()`` and ``metrics()`` on ``host:port`` (port 0: any free port).

    Parameters
    ----------
    status
        Returns the JSON-able status (called per request; must not block).
    metrics
        Returns the Prometheus text exposition.
    """

    def __init__(
        self,
        status: Callable[[], dict[str, Any]],
        metrics: Callable[[], bytes],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        routes: dict[str, Callable[[], tuple[bytes, str]]] = {
            "/status": lambda: (
                json.dumps(status(), indent=1, sort_keys=True).encode(),
                "application/json",
            ),
            "/metrics": lambda: (metrics(), CONTENT_TYPE_LATEST),
            "/healthz": lambda: (b'{"status":"ok"}', "application/json"),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(with_body=True)

            def do_HEAD(self) -> None:
                self._answer(with_body=False)

            def _refuse(self) -> None:
                self.send_response(405)
                self.send_header("Allow", "GET, HEAD")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

            def _answer(self, with_body: bool) -> None:
                route = routes.get(self.path.split("?", 1)[0])
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
