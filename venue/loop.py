"""The venue's main loop: poll, tick, wait; until the clock ends or a stop is asked."""

from __future__ import annotations

import threading
from collections.abc import Callable

from venue.clock import VenueClock
from venue.service import TickOutcome, Venue


def run_venue(
    venue: Venue,
    clock: VenueClock,
    stop: threading.Event,
    *,
    pause_s: float = 0.0,
    poll: bool = True,
    max_ticks: int | None = None,
    on_tick: Callable[[TickOutcome], None] | None = None,
) -> int:
    """Run ticks until ``clock`` ends, ``max_ticks`` ran or ``stop`` is set.

    Parameters
    ----------
    venue
        The venue to drive.
    clock
        Gives each tick's time (:mod:`venue.clock`).
    stop
        Set from a signal handler to finish after the current tick (never inside one).
    pause_s
        Wait between ticks (the poll interval of a live venue).
    poll
        Poll the risk API before each tick.
    max_ticks
        Stop after this many ticks.
    on_tick
        Called with each tick's outcome (e.g. to print it).

    Returns
    -------
    int
        Ticks run.
    """
    ticks = 0
    while not stop.is_set() and (max_ticks is None or ticks < max_ticks):
        now = clock.next_tick()
        if now is None:
            break
        if poll and venue.client is not None:
            venue.poll(now)
        outcome = venue.tick(now)
        ticks += 1
        if on_tick is not None:
            on_tick(outcome)
        if pause_s > 0 and stop.wait(pause_s):
            break
    return ticks
