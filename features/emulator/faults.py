"""Fault injection: what can go wrong with a venue, per endpoint and asset.

A :class:`Fault` names its kind, where it applies and for how long:

================  ===========================================================================
kind              effect on a matching request
================  ===========================================================================
``rate_limit``    HTTP 429 with ``Retry-After`` (Binance, dump) or Bybit's ``retCode`` 10006
                  with ``X-Bapi-Limit-Reset-Timestamp``
``server_error``  HTTP ``status`` (503 by default) with the venue's error body
``timeout``       the answer is held ``delay`` real seconds (past a client's timeout)
``late_bar``      bars closing after the injection appear ``delay`` simulated seconds after
                  their close instead of at it
``missing_bar``   the bar opening at ``bar`` (default: the one forming at injection) is left
                  out of every answer
``bad_price``     that bar's close is multiplied by ``factor`` (default -1: a negative price)
``stale``         the feed freezes at ``since`` (default: injection time): nothing newer is
                  served, while the venue's clock runs on
================  ===========================================================================

``endpoint`` is a path prefix (``/api/v3/klines``, ``/fapi``, ``/bybit``, ``/dump``); ``None``
matches every venue endpoint, the time endpoints included (a full outage). ``asset`` limits it
to one symbol; ``times`` to that many affected answers (``None``: until cleared).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from contracts.timestamps import optional_utc_timestamp

FaultKind = Literal[
    "rate_limit", "server_error", "timeout", "late_bar", "missing_bar", "bad_price", "stale"
]
REQUEST_FAULTS: frozenset[str] = frozenset({"rate_limit", "server_error", "timeout"})
"""Faults that replace or delay the whole answer."""


class Fault(BaseModel):
    """One injected fault (see the module docstring for the kinds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: FaultKind
    endpoint: str | None = Field(None, description="Path prefix; None: every venue endpoint.")
    asset: str | None = Field(None, description="Symbol, e.g. BTCUSDT; None: every symbol.")
    times: int | None = Field(None, ge=1, description="Answers affected; None: until cleared.")
    retry_after: float = Field(1.0, ge=0, description="rate_limit: seconds in Retry-After.")
    status: int = Field(503, ge=500, le=599, description="server_error: the HTTP status.")
    delay: float = Field(
        5.0, ge=0, description="timeout: real seconds; late_bar: simulated seconds."
    )
    bar: datetime | None = Field(None, description="missing_bar/bad_price: the bar's open.")
    since: datetime | None = Field(None, description="stale: frozen as of this time.")
    factor: float = Field(-1.0, description="bad_price: multiplier of the close.")

    def matches(self, path: str, asset: str | None) -> bool:
        """True when a request for ``path`` (and ``asset``) is subject to this fault."""
        if self.endpoint is not None and not path.startswith(self.endpoint):
            return False
        return self.asset is None or (asset is not None and asset.upper() == self.asset.upper())


@dataclass
class ActiveFault:
    """A fault as the emulator holds it: resolved times, remaining uses, hits so far."""

    id: int
    fault: Fault
    injected_at: pd.Timestamp
    bar: pd.Timestamp | None
    since: pd.Timestamp | None
    remaining: int | None
    hits: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the control API."""
        return {
            "id": self.id,
            **self.fault.model_dump(mode="json"),
            "injected_at": self.injected_at.isoformat(),
            "bar": None if self.bar is None else self.bar.isoformat(),
            "since": None if self.since is None else self.since.isoformat(),
            "remaining": self.remaining,
            "hits": self.hits,
        }


@dataclass(frozen=True)
class DataFaults:
    """The data faults that apply to one request, and the book that counts their use."""

    book: FaultBook
    items: tuple[ActiveFault, ...]

    def applied(self, item: ActiveFault) -> None:
        """Record that ``item`` changed this answer."""
        self.book.applied(item)


class FaultBook:
    """The active faults of one emulator, safe to use from the server's and a test's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[int, ActiveFault] = {}
        self._ids = itertools.count(1)

    def add(self, fault: Fault, now: pd.Timestamp, step: pd.Timedelta) -> ActiveFault:
        """Activate ``fault`` at simulated time ``now``; ``step`` is the bar interval."""
        bar = optional_utc_timestamp(fault.bar) if fault.bar is not None else now.floor(step)
        since = optional_utc_timestamp(fault.since) if fault.since is not None else now
        with self._lock:
            active = ActiveFault(next(self._ids), fault, now, bar, since, fault.times)
            self._faults[active.id] = active
        return active

    def remove(self, fault_id: int) -> bool:
        """Deactivate one fault; False when there is no such fault."""
        with self._lock:
            return self._faults.pop(fault_id, None) is not None

    def clear(self) -> int:
        """Deactivate every fault; returns how many there were."""
        with self._lock:
            count = len(self._faults)
            self._faults.clear()
            return count

    def active(self) -> list[ActiveFault]:
        """The active faults, oldest first."""
        with self._lock:
            return list(self._faults.values())

    def take_request_fault(self, path: str, asset: str | None) -> ActiveFault | None:
        """The first request fault matching the request, consuming one of its uses."""
        with self._lock:
            for item in self._faults.values():
                if item.fault.kind in REQUEST_FAULTS and item.fault.matches(path, asset):
                    self._use(item)
                    return item
        return None

    def data_faults(self, path: str, asset: str | None) -> DataFaults:
        """The data faults matching the request (the caller reports which ones it applied)."""
        with self._lock:
            items = [
                f
                for f in self._faults.values()
                if f.fault.kind not in REQUEST_FAULTS and f.fault.matches(path, asset)
            ]
        return DataFaults(self, tuple(items))

    def applied(self, item: ActiveFault) -> None:
        """Record that a data fault changed an answer (consumes one of its uses)."""
        with self._lock:
            if item.id in self._faults:
                self._use(item)

    def _use(self, item: ActiveFault) -> None:
        item.hits += 1
        if item.remaining is not None:
            item.remaining -= 1
            if item.remaining <= 0:
                self._faults.pop(item.id, None)


__all__ = ["REQUEST_FAULTS", "ActiveFault", "DataFaults", "Fault", "FaultBook", "FaultKind"]
