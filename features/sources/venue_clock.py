"""A venue's clock as seen from here: offset and rate estimated from its time endpoint.

Whether a bar has closed is a question about the *venue's* clock, not ours. Local clocks
drift and may be wrong by minutes; the exchange emulator runs a simulated clock years in the
past and many times faster than real time. :class:`VenueClock` treats all of these alike: it
records ``(local monotonic time, venue time)`` pairs at each sync, taking the venue time at
the midpoint of the request's round trip, and estimates

    venue_now = venue_last + rate * (monotonic_now - monotonic_last)

where ``rate`` is venue seconds per local second, 1 for a real venue and the acceleration
factor for an accelerated emulator. It never decides closure on an extrapolated time
(:attr:`VenueClock.observed` is the last time the venue itself reported); extrapolation is
only used to schedule the next poll.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Final

import pandas as pd

_MIN_RATE_SPAN: Final[float] = 0.05
"""Local seconds two samples must lie apart before their slope is trusted as a rate."""


class VenueClock:
    """Offset and rate of a venue's clock against the local monotonic clock.

    Parameters
    ----------
    monotonic
        Local monotonic clock in seconds (injectable for tests).
    window
        Samples kept for the rate estimate; a few, so that a change of an emulator's speed
        is picked up within a few syncs.

    Examples
    --------
    >>> ticks = iter([0.0, 0.0, 10.0, 10.0])
    >>> clock = VenueClock(monotonic=lambda: next(ticks))
    >>> clock.observe(1_000_000, sent=0.0, received=0.0)
    >>> clock.observe(1_036_000, sent=10.0, received=10.0)  # 36 venue s in 10 local s
    >>> round(clock.rate, 6)
    3.6
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, window: int = 4) -> None:
        self._monotonic = monotonic
        self._samples: deque[tuple[float, float]] = deque(maxlen=max(2, window))
        self._lock = threading.Lock()

    def observe(self, venue_ms: int, sent: float, received: float) -> None:
        """Record a venue time answered between local monotonic times ``sent`` and ``received``."""
        midpoint = (sent + received) / 2.0
        with self._lock:
            self._samples.append((midpoint, venue_ms / 1000.0))

    @property
    def synced(self) -> bool:
        """True once the venue's time has been observed at least once."""
        return bool(self._samples)

    @property
    def rate(self) -> float:
        """Venue seconds per local second (1.0 until two samples lie far enough apart)."""
        with self._lock:
            if len(self._samples) < 2:
                return 1.0
            (m0, v0), (m1, v1) = self._samples[0], self._samples[-1]
        if m1 - m0 < _MIN_RATE_SPAN:
            return 1.0
        return max(0.0, (v1 - v0) / (m1 - m0))

    @property
    def observed(self) -> pd.Timestamp:
        """The last venue time the venue reported (no extrapolation).

        Raises
        ------
        RuntimeError
            Before the first sync.
        """
        with self._lock:
            if not self._samples:
                raise RuntimeError("the venue clock was never synced; call the source's sync_time")
            venue_s = self._samples[-1][1]
        return pd.Timestamp(round(venue_s * 1000), unit="ms", tz="UTC")

    def now(self) -> pd.Timestamp:
        """The venue's time now, extrapolated from the last sync with the estimated rate."""
        with self._lock:
            if not self._samples:
                raise RuntimeError("the venue clock was never synced; call the source's sync_time")
            local, venue_s = self._samples[-1]
        elapsed = max(0.0, self._monotonic() - local)
        return pd.Timestamp(round((venue_s + self.rate * elapsed) * 1000), unit="ms", tz="UTC")

    def local_seconds_until(self, moment: pd.Timestamp) -> float:
        """Local seconds until the venue clock reaches ``moment`` (``inf`` if it is stopped)."""
        gap = (pd.Timestamp(moment) - self.now()).total_seconds()
        if gap <= 0:
            return 0.0
        rate = self.rate
        return gap / rate if rate > 0 else float("inf")


__all__ = ["VenueClock"]
