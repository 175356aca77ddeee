"""Venue clocks: the wall clock (live), or a stepped clock over stored bars (a rehearsal)."""

from __future__ import annotations

import time
from typing import Protocol


class VenueClock(Protocol):
    """Gives the time of the next tick, epoch ms, or None when there is no next tick."""

    def next_tick(self) -> int | None: ...


class WallClock:
    """Now, every tick (a live venue)."""

    def next_tick(self) -> int | None:
        return int(time.time() * 1000)


class SteppedClock:
    """``start, start + step, ...`` up to ``end`` inclusive (``None``: no end).

    A restarted venue continues where its log ends: ``resume_from`` skips the ticks before
    the engine clock, and the tick at the engine clock itself runs again (its finished
    commands are skipped by their keys; an interrupted one completes).
    """

    def __init__(self, start_ms: int, step_ms: int, end_ms: int | None = None,
                 resume_from: int | None = None) -> None:  # fmt: skip
        if step_ms <= 0:
            raise ValueError(f"step must be positive, got {step_ms} ms")
        self.step_ms = step_ms
        self.end_ms = end_ms
        k = 0
        if resume_from is not None and resume_from > start_ms:
            k = (resume_from - start_ms) // step_ms
        self._next = start_ms + k * step_ms

    def next_tick(self) -> int | None:
        now = self._next
        if self.end_ms is not None and now > self.end_ms:
            return None
        self._next += self.step_ms
        return now
