"""Run the emulator's app under uvicorn in a background thread, on a free port by default.

The same runner serves ``dynamargin emulate`` (whose main thread waits for SIGTERM) and the
tests (which talk to it over real HTTP). In a thread, uvicorn installs no signal handlers,
so the command's own lifecycle decides when to stop.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from features.emulator.app import build_app
from features.emulator.context import EmulatorContext


class EmulatorServer:
    """The emulator on ``http://host:port``.

    Parameters
    ----------
    context
        Market, clock and faults to serve.
    host
        Interface to bind (loopback by default).
    port
        TCP port; 0 picks a free one (see :attr:`url` once started).
    log_level
        uvicorn's log level.

    Examples
    --------
    >>> with EmulatorServer(context) as server:  # doctest: +SKIP
    ...     httpx.get(server.url + "/api/v3/time").json()
    {'serverTime': 1621296000000}
    """

    def __init__(
        self,
        context: EmulatorContext,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
    ) -> None:
        self.context = context
        self.host = host
        self.port = port
        self.log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start()")
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> EmulatorServer:
        """Bind the socket, start serving in a thread, and wait until it accepts requests.

        Raises
        ------
        OSError
            If the port cannot be bound.
        RuntimeError
            If the server did not start within ``timeout`` seconds.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            build_app(self.context),
            log_level=self.log_level,
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name="dynamargin-emulator",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the emulator did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to finish and wait for the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = None
        self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["EmulatorServer"]
