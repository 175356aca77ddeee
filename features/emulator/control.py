"""A client for the emulator's control endpoints (clock and faults), over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pandas as pd

from features.emulator.app import CONTROL_PREFIX


class EmulatorControl:
    """Move the emulator's clock and inject faults.

    Parameters
    ----------
    url
        The emulator's base URL.

    Examples
    --------
    >>> control = EmulatorControl("http://127.0.0.1:8900")  # doctest: +SKIP
    >>> control.inject("server_error", asset="BTCUSDT", times=2)  # doctest: +SKIP
    1
    >>> control.advance("1h")  # doctest: +SKIP
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/") + CONTROL_PREFIX
        self.timeout = timeout

    def state(self) -> dict[str, Any]:
        """Clock, market, active faults and answers served."""
        return self._call("GET", "/state")

    def now(self) -> pd.Timestamp:
        """The emulator's simulated time."""
        return pd.Timestamp(self.state()["clock"]["now"])

    def set_clock(
        self,
        moment: pd.Timestamp | str | None = None,
        *,
        speed: float | None = None,
        paused: bool | None = None,
    ) -> dict[str, Any]:
        """Jump, change speed, pause or resume."""
        body: dict[str, Any] = {}
        if moment is not None:
            body["set"] = pd.Timestamp(moment).isoformat()
        if speed is not None:
            body["speed"] = speed
        if paused is not None:
            body["paused"] = paused
        return self._call("POST", "/clock", body)

    def advance(self, delta: pd.Timedelta | str) -> dict[str, Any]:
        """Move the clock forward."""
        return self._call("POST", "/clock", {"advance": pd.Timedelta(delta).total_seconds()})

    def inject(self, kind: str, **fields: Any) -> int:
        """Inject a fault (fields of :class:`~features.emulator.faults.Fault`); returns its id."""
        body = {"kind": kind, **{k: _jsonable(v) for k, v in fields.items() if v is not None}}
        return int(self._call("POST", "/faults", body)["id"])

    def remove(self, fault_id: int) -> None:
        """Deactivate one fault."""
        self._call("DELETE", f"/faults/{fault_id}")

    def clear(self) -> int:
        """Deactivate every fault; returns how many were active."""
        return int(self._call("DELETE", "/faults")["cleared"])

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = httpx.request(method, self.url + path, json=body, timeout=self.timeout)
        if response.status_code >= 400:
            raise ValueError(
                f"emulator {method} {path}: HTTP {response.status_code} {response.text}"
            )
        return response.json()


def _jsonable(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


__all__ = ["EmulatorControl"]
