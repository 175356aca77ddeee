"""The emulator's clock: simulated venue time that can start anywhere, run fast, pause, jump.

``now = start + speed * (monotonic - started)`` while running. ``speed`` is simulated seconds
per real second: 1 is real time, 3600 is an hour per second. A paused clock stands still,
so a test can move it by exactly one bar with :meth:`SimulatedClock.advance`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from contracts.timestamps import optional_utc_timestamp


class SimulatedClock:
    """A thread-safe simulated clock.

    Parameters
    ----------
    start
        Simulated time at creation (tz-aware, or naive meaning UTC).
    speed
        Simulated seconds per real second (> 0).
    paused
        Start paused.
    monotonic
        Real monotonic clock (injectable for tests).

    Examples
    --------
    >>> clock = SimulatedClock("2021-05-18", paused=True)
    >>> clock.advance(pd.Timedelta("90min"))
    >>> clock.now()
    Timestamp('2021-05-18 01:30:00+0000', tz='UTC')
    """

    def __init__(
        self,
        start: pd.Timestamp | str,
        speed: float = 1.0,
        *,
        paused: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_speed(speed)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._anchor = optional_utc_timestamp(start)
        self._anchor_real = monotonic()
        self._speed = float(speed)
        self._paused = paused

    def now(self) -> pd.Timestamp:
        """The simulated time now (millisecond resolution, like a venue's)."""
        with self._lock:
            return self._now_locked().floor("ms")

    def now_ms(self) -> int:
        """The simulated time now in epoch milliseconds."""
        return int(self.now().value // 1_000_000)

    @property
    def speed(self) -> float:
        """Simulated seconds per real second."""
        return self._speed

    @property
    def paused(self) -> bool:
        """True while the clock stands still."""
        return self._paused

    def set(
        self,
        moment: pd.Timestamp | str | None = None,
        *,
        speed: float | None = None,
        paused: bool | None = None,
    ) -> None:
        """Jump to ``moment``, change the speed, pause or resume (any combination)."""
        with self._lock:
            current = optional_utc_timestamp(moment) if moment is not None else self._now_locked()
            if speed is not None:
                _check_speed(speed)
                self._speed = float(speed)
            if paused is not None:
                self._paused = paused
            self._anchor, self._anchor_real = current, self._monotonic()

    def advance(self, delta: pd.Timedelta | str) -> None:
        """Move the clock forward by ``delta`` (running or paused)."""
        delta = pd.Timedelta(delta)
        if delta < pd.Timedelta(0):
            raise ValueError(f"the clock only moves forward; got {delta}")
        with self._lock:
            self._anchor, self._anchor_real = self._now_locked() + delta, self._monotonic()

    def state(self) -> dict[str, Any]:
        """JSON-ready state: ``now``, ``speed``, ``paused``."""
        return {"now": self.now().isoformat(), "speed": self._speed, "paused": self._paused}

    def _now_locked(self) -> pd.Timestamp:
        if self._paused:
            return self._anchor
        elapsed = self._monotonic() - self._anchor_real
        return self._anchor + pd.Timedelta(seconds=elapsed * self._speed)


def _check_speed(speed: float) -> None:
    if not speed > 0:
        raise ValueError(f"speed must be > 0 simulated seconds per real second, got {speed}")


__all__ = ["SimulatedClock"]
