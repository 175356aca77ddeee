"""The HTTP server ``dynamargin serve`` runs: uvicorn, with deadlines and a connection cap.

uvicorn closes a connection that sits idle between two requests (keep-alive), but not one
that trickles a request's headers or body forever: hundreds of such connections hold
file descriptors until a low ``ulimit -n`` locks every new client out. The protocol here
(:class:`GuardedHttpProtocol`, uvicorn's httptools protocol with three additions) closes

* a connection whose request **headers** are not complete ``header_timeout_seconds``
  after it opened or after its previous response (plus the keep-alive time);
* a connection whose request **body** is not complete ``body_timeout_seconds`` after its
  headers (the app then sees a disconnect);
* any connection beyond ``max_connections`` open ones, at once.

The app itself answers 503 beyond ``max_in_flight`` requests in flight
(:mod:`serving.request_limits`). The limits come from :class:`serving.api_config.ApiConfig`
(command-line options or ``DYNAMARGIN_API_*`` variables), read once per worker process.

Not covered here, and the job of a reverse proxy in front: TLS, per-client rate limits and
connection quotas (all limits here are per worker, shared by every client), request
smuggling normalisation, and slow *readers* of responses (responses are small and
bounded, so they only hold a connection until the keep-alive deadline).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from serving.api_config import ApiConfig

logger = logging.getLogger(__name__)

APP_FACTORY: Final[str] = "serving.api:app_from_env"
_LOG_EVERY_S: Final[float] = 10.0


@dataclass(frozen=True)
class ServerLimits:
    """Deadlines and caps of one worker (see the module docstring)."""

    header_timeout_seconds: float
    body_timeout_seconds: float
    keep_alive_seconds: float
    max_connections: int

    @classmethod
    def from_config(cls, config: ApiConfig) -> ServerLimits:
        return cls(
            config.header_timeout_seconds,
            config.body_timeout_seconds,
            config.keep_alive_seconds,
            config.max_connections,
        )


@cache
def worker_limits() -> ServerLimits:
    """This process's limits, from the environment ``dynamargin serve`` wrote."""
    return ServerLimits.from_config(ApiConfig.from_env())


class _Closures:
    """Counts connections closed by a limit and logs them at most every 10 s."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.last_log = 0.0

    def record(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = time.monotonic()
        if now - self.last_log >= _LOG_EVERY_S:
            summary = ", ".join(f"{n} {why}" for why, n in sorted(self.counts.items()))
            logger.warning("closed connections in the last %.0f s: %s", _LOG_EVERY_S, summary)
            self.counts.clear()
            self.last_log = now


_closures = _Closures()


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines and a connection cap."""

    limits: Callable[[], ServerLimits] = staticmethod(worker_limits)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        limits = self.limits()
        if len(self.connections) >= limits.max_connections:
            self._refused = True
            _closures.record("over the connection cap")
            transport.abort()
            return
        super().connection_made(transport)
        self._arm(limits.header_timeout_seconds, "slow headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if not self._refused:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.more_body:
            self._arm(self.limits().body_timeout_seconds, "slow body")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport is not None and not self.transport.is_closing():
            limits = self.limits()
            # Idle for the keep-alive time, then the next request's headers in time.
            self._arm(limits.keep_alive_seconds + limits.header_timeout_seconds, "slow headers")

    def _arm(self, seconds: float, reason: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire, reason)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, reason: str) -> None:
        self._deadline = None
        if self.transport is not None and not self.transport.is_closing():
            _closures.record(reason)
            self.transport.close()


WORKER_HEALTHCHECK_SECONDS = 60
"""Seconds a worker may take to answer the supervisor's health check."""


def run_server(
    config: ApiConfig,
    *,
    host: str,
    port: int,
    workers: int,
    log_level: str,
    access_log: bool,
    on_started: Callable[[Callable[[], None]], None] | None = None,
) -> None:
    """Serve the app from the environment (:func:`serving.api.app_from_env`) with limits.

    Parameters
    ----------
    config
        The settings; written to the environment first by the caller, so every worker
        rebuilds the same config.
    host, port, workers, log_level, access_log
        uvicorn's options.
    on_started
        Receives a callable that asks the server to stop (for a signal handler).
    """
    server_config = uvicorn.Config(
        APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=f"{__name__}:GuardedHttpProtocol",
        timeout_keep_alive=max(1, round(config.keep_alive_seconds)),
        # uvicorn's 5 s default kills a worker that is still importing on a busy machine and
        # then restarts it forever ("Child process died"); a slow start is not a dead worker.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        log_level=log_level,
        access_log=access_log,
        proxy_headers=False,
        server_header=False,
    )
    if workers > 1:
        supervisor = Multiprocess(server_config, sockets=[server_config.bind_socket()])
        if on_started is not None:
            on_started(supervisor.should_exit.set)
        supervisor.run()
        return
    server_config.load_app()
    server = uvicorn.Server(server_config)
    if on_started is not None:
        on_started(lambda: setattr(server, "should_exit", True))
    server.run()
