"""What every emulator route shares: the market, the clock, the faults and the counters."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd
from starlette.requests import Request
from starlette.responses import Response

from features.emulator.clock import SimulatedClock
from features.emulator.data import EmulatorMarket
from features.emulator.faults import FaultBook

logger = logging.getLogger("dynamargin.emulator")


class VenueErrors(Protocol):
    """How a venue formats an injected rate limit and server error."""

    def rate_limited(self, retry_after: float) -> Response: ...

    def server_error(self, status: int) -> Response: ...


@dataclass
class EmulatorContext:
    """Everything the routes share: the market, the clock, the faults, the counters.

    Attributes
    ----------
    market
        The data served.
    clock
        Simulated time.
    faults
        Active faults.
    dump_publish_delay
        How long after a day ends its daily dump file appears (simulated time).
    served
        Answers by ``(path, status)``.
    """

    market: EmulatorMarket
    clock: SimulatedClock
    faults: FaultBook = field(default_factory=FaultBook)
    dump_publish_delay: pd.Timedelta = field(default_factory=lambda: pd.Timedelta(hours=1))
    served: Counter[tuple[str, int]] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def guard(
        self, request: Request, asset: str | None, errors: VenueErrors
    ) -> Response | None:
        """Apply a request fault to this request: an error answer, or a delay, or nothing."""
        item = self.faults.take_request_fault(request.url.path, asset)
        if item is None:
            return None
        fault = item.fault
        where = f"{request.method} {request.url.path}" + (f" {asset}" if asset else "")
        left = "until cleared" if item.remaining is None else f"{item.remaining} left"
        logger.warning("emulator: fault #%d %s on %s (%s)", item.id, fault.kind, where, left)
        if fault.kind == "rate_limit":
            return errors.rate_limited(fault.retry_after)
        if fault.kind == "server_error":
            return errors.server_error(fault.status)
        await asyncio.sleep(fault.delay)  # timeout: answer normally, too late for the client
        return None


__all__ = ["EmulatorContext", "VenueErrors"]
