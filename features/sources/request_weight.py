"""A venue's request-weight budget: wait before a request would exceed it.

Binance meters every IP in *request weight* per fixed one-minute window (6000 on spot, 2400
on USDT-M futures; each endpoint has a weight) and answers 429, then 418 (a ban), to a
client that goes over. The limiter spends the budget locally before each request, syncs with
the weight the venue reports having counted (``X-MBX-USED-WEIGHT-1M``), and, after a 429 or
418, holds every request until the venue's ``Retry-After`` has passed.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class RequestWeightLimiter:
    """Fixed-window request-weight budget.

    Parameters
    ----------
    limit
        Weight allowed per window.
    window
        Window length in seconds; windows start on multiples of it in wall-clock time, like
        the venue's (a minute starts at :00).
    headroom
        Fraction of ``limit`` the client allows itself, leaving room for other clients of the
        same IP and for weight counted before this process started.
    wallclock, sleep
        Wall-clock time and waiting (injectable for tests).

    Examples
    --------
    >>> now = [0.0]
    >>> def wait(seconds):
    ...     now[0] += seconds
    >>> limiter = RequestWeightLimiter(10, wallclock=lambda: now[0], sleep=wait)
    >>> limiter.acquire(9)
    0.0
    >>> limiter.acquire(5)  # would exceed 10 * 0.9: waits for the next window
    60.0
    """

    def __init__(
        self,
        limit: int,
        window: float = 60.0,
        headroom: float = 0.9,
        *,
        wallclock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if limit <= 0 or window <= 0:
            raise ValueError(f"limit and window must be positive, got {limit} and {window}")
        if not 0 < headroom <= 1:
            raise ValueError(f"headroom must lie in (0, 1], got {headroom}")
        self.limit = limit
        self.window = window
        self.headroom = headroom
        self._wallclock = wallclock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._window_id = -1
        self._used = 0
        self._blocked_until = 0.0

    @property
    def budget(self) -> int:
        """Weight this client spends per window."""
        return max(1, math.floor(self.limit * self.headroom))

    def set_limit(self, limit: int) -> None:
        """Adopt the limit the venue publishes (e.g. from ``exchangeInfo.rateLimits``)."""
        if limit > 0:
            with self._lock:
                self.limit = limit

    def acquire(self, weight: int) -> float:
        """Spend ``weight``, first waiting as long as the budget or a ban requires.

        Returns
        -------
        float
            Seconds waited (0 when the request could go at once).
        """
        waited = 0.0
        while True:
            with self._lock:
                now = self._wallclock()
                pause = self._blocked_until - now
                if pause <= 0:
                    self._roll(now)
                    if self._used + weight <= self.budget or self._used == 0:
                        self._used += weight
                        return waited
                    pause = (self._window_id + 1) * self.window - now
            pause = max(pause, 1e-3)
            self._sleep(pause)
            waited += pause

    def observe_used(self, used: int) -> None:
        """Adopt the venue's own count of the weight used in the current window."""
        with self._lock:
            self._roll(self._wallclock())
            self._used = max(self._used, used)

    def block_for(self, seconds: float) -> None:
        """Hold every request for ``seconds`` (after the venue answered 429 or 418)."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._wallclock() + seconds)

    def _roll(self, now: float) -> None:
        window_id = math.floor(now / self.window)
        if window_id != self._window_id:
            self._window_id = window_id
            self._used = 0


__all__ = ["RequestWeightLimiter"]
