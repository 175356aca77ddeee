"""How a long-running command stops: on SIGTERM or SIGINT, cleanly, children included.

A service command (``deploy``, ``serve``, ``ui mlflow``, ...) runs its main loop inside
:func:`service_lifecycle`. The first SIGTERM or SIGINT calls the command's ``stop`` callback
(which asks the main loop to finish), a second one raises :class:`KeyboardInterrupt` at once.
On the way out every process the command started is terminated (then killed after a grace
period), so no orphan keeps a port or a database open, and the command says what it did.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Final

import psutil

STOP_SIGNALS: Final[tuple[signal.Signals, ...]] = (signal.SIGTERM, signal.SIGINT)
"""Signals that stop a service."""

CHILD_GRACE_SECONDS: Final[float] = 10.0
"""How long children get to exit after SIGTERM before they are killed."""


def terminate_descendants(grace_seconds: float = CHILD_GRACE_SECONDS) -> list[int]:
    """Terminate every descendant of this process, then kill those still alive.

    Parameters
    ----------
    grace_seconds
        Time the descendants get to exit after SIGTERM before SIGKILL.

    Returns
    -------
    list of int
        The pids that were signalled (empty when there were none).
    """
    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(children, timeout=grace_seconds)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(alive, timeout=grace_seconds)
    return [child.pid for child in children]


@contextmanager
def service_lifecycle(
    name: str,
    stop: Callable[[], None],
    log: Callable[[str], None],
    *,
    grace_seconds: float = CHILD_GRACE_SECONDS,
) -> Iterator[list[signal.Signals]]:
    """Run a service's main loop with clean SIGTERM/SIGINT handling.

    Parameters
    ----------
    name
        The service's name, used in log lines.
    stop
        Called (from the signal handler, in the main thread) on the first stop signal; it
        must only ask the main loop to finish, never block.
    log
        Where the lifecycle lines go (one line per event).
    grace_seconds
        Grace period for child processes on the way out.

    Yields
    ------
    list of signal.Signals
        The stop signals received so far (empty when the loop ended on its own).
    """
    received: list[signal.Signals] = []

    def handle(signum: int, _frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        received.append(sig)
        if len(received) > 1:
            log(f"{name}: second {sig.name}; stopping now")
            raise KeyboardInterrupt
        log(f"{name}: {sig.name} received; shutting down")
        stop()

    previous = {sig: signal.signal(sig, handle) for sig in STOP_SIGNALS}
    try:
        yield received
    except KeyboardInterrupt:
        if not received:
            log(f"{name}: interrupted; shutting down")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stopped = terminate_descendants(grace_seconds)
        if stopped:
            log(f"{name}: stopped {len(stopped)} child process(es): {stopped}")
        log(f"{name}: stopped")
