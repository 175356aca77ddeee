"""Circuit breakers: per-asset price bands and a volatility halt, with auditable events.

**Price band.** A print more than ``band`` (relative) away from the asset's last observed
price is clamped to the band's edge for trading and liquidation (limit up / limit down; the
band moves with the market, one observation at a time), and a ``band`` event records the
print, the edge and the reference. After a feed gap longer than the window there is no
reference, and the next print sets one.

**Volatility halt.** The move of an asset within a rolling ``window_ms`` is
``max(ln(p / min), ln(max / p))`` over the observations in the window. When it exceeds
``k_sigma`` forecast sigmas of that window, ``sigma_window = sigma * sqrt(window / horizon)``
with ``sigma`` the published forecast over ``horizon_hours`` (the RiskSnapshot's sigma), the
asset **halts** for ``cool_off_ms``: no new risk and no liquidation. When the cool-off ends it
resumes with a **rate-limited catch-up**: for ``catch_up_ms`` at most
``catch_up_per_minute`` liquidations per minute on that asset, so a backlog of underwater
accounts is not dumped on the book in one instant. The window restarts at the resumption
(the pre-halt move is not counted twice). Every halt and resumption is a ``halt`` /
``resume`` event with the move, the sigma, ``k`` and the window.

Defaults (:class:`CircuitBreakerConfig`): ``k_sigma = 6``, ``window_ms = 1 h``,
``cool_off_ms = 1 h``, ``band = 0.15``, catch-up 20 liquidations a minute for 30 minutes.
The breaker is deterministic: the same observations give the same events. The engine stays
unchanged; :func:`gated_liquidations` and :func:`gated_trade` put the breaker in front of it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from liquidation import inputs
from liquidation.errors import (
    ConfigError,
    InputError,
    LiquidationCoreError,
    NotLiquidatableError,
    RateLimitedError,
)

MINUTE_MS = 60_000


class HaltedError(LiquidationCoreError):
    """New risk on an asset refused during its volatility halt."""


@dataclass(frozen=True)
class CircuitBreakerConfig:
    """Parameters of the price band and the volatility halt (defaults in the module doc)."""

    k_sigma: float = 6.0
    window_ms: int = 3_600_000
    cool_off_ms: int = 3_600_000
    band: float = 0.15
    catch_up_per_minute: int = 20
    catch_up_ms: int = 30 * MINUTE_MS

    def __post_init__(self) -> None:
        if not (math.isfinite(self.k_sigma) and self.k_sigma > 0):
            raise ConfigError("CircuitBreakerConfig.k_sigma must be finite and > 0")
        if self.window_ms <= 0 or self.cool_off_ms <= 0 or self.catch_up_ms < 0:
            raise ConfigError("CircuitBreakerConfig: window and cool-off must be > 0")
        if not 0 < self.band < 1:
            raise ConfigError("CircuitBreakerConfig.band must be in (0, 1)")
        if self.catch_up_per_minute < 1:
            raise ConfigError("CircuitBreakerConfig.catch_up_per_minute must be >= 1")


@dataclass(frozen=True)
class BreakerEvent:
    """An auditable breaker event: ``band``, ``halt`` or ``resume``."""

    ts_ms: int
    asset: str
    kind: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Observation:
    """What the breaker says about one print: the price to use and whether it halted."""

    price: int
    halted: bool
    events: tuple[BreakerEvent, ...]


@dataclass
class _AssetBreaker:
    window: deque[tuple[int, int]] = field(default_factory=deque)
    last: int | None = None
    last_ts: int | None = None
    halted_until: int | None = None
    resumed_at: int | None = None
    catch_up: dict[int, int] = field(default_factory=dict)  # minute -> liquidations


class CircuitBreaker:
    """Per-asset bands and volatility halts over a stream of prints."""

    def __init__(self, config: CircuitBreakerConfig | None = None) -> None:
        self.config = config or CircuitBreakerConfig()
        self.events: list[BreakerEvent] = []
        self._assets: dict[str, _AssetBreaker] = {}

    # -- observations ----------------------------------------------------------------------
    def observe(
        self, asset: str, price: int, *, ts: int, sigma: float, horizon_hours: float
    ) -> Observation:
        """Record a print of ``asset`` and return the (banded) price and the halt state.

        Parameters
        ----------
        asset : str
        price : int
            The print, micro-USD.
        ts : int
            Its time, epoch ms, not before the asset's previous print.
        sigma, horizon_hours : float
            The published forecast in force (RiskSnapshot ``sigma`` over ``horizon_hours``).
        """
        inputs.price(price, f"{asset} print")
        ts = inputs.timestamp(ts)
        if not (math.isfinite(sigma) and sigma > 0 and horizon_hours > 0):
            raise ConfigError(f"{asset}: the forecast sigma and horizon must be > 0")
        state = self._assets.setdefault(asset, _AssetBreaker())
        if state.last_ts is not None and ts < state.last_ts:
            raise InputError(f"{asset} print at {ts} is before the previous one")
        emitted: list[BreakerEvent] = []
        self._resume_if_due(asset, state, ts, emitted)
        used = price
        if state.last_ts is not None and ts - state.last_ts > self.config.window_ms:
            # A feed gap longer than the window: the old price is no reference any more.
            state.last = None
            state.window.clear()
        if state.last is not None:
            low = math.ceil(state.last * (1 - self.config.band))
            high = math.floor(state.last * (1 + self.config.band))
            if not low <= price <= high:
                used = min(high, max(low, price))
                emitted.append(
                    self._event(ts, asset, "band", {"print": price, "price": used,
                                                    "reference": state.last,
                                                    "band": self.config.band})
                )  # fmt: skip
        state.last, state.last_ts = used, ts
        if state.halted_until is None:
            window = state.window
            window.append((ts, used))
            while window and window[0][0] < ts - self.config.window_ms:
                window.popleft()
            lo = min(p for _, p in window)
            hi = max(p for _, p in window)
            move = max(math.log(used / lo), math.log(hi / used))
            sigma_window = sigma * math.sqrt(self.config.window_ms / (horizon_hours * 3_600_000))
            if move > self.config.k_sigma * sigma_window:
                state.halted_until = ts + self.config.cool_off_ms
                state.window.clear()
                emitted.append(
                    self._event(ts, asset, "halt", {
                        "move": move, "sigma_window": sigma_window, "k_sigma": self.config.k_sigma,
                        "window_ms": self.config.window_ms, "until": state.halted_until,
                        "price": used,
                    })
                )  # fmt: skip
        return Observation(used, self.is_halted(asset, ts), tuple(emitted))

    def tick(self, ts: int) -> list[BreakerEvent]:
        """Advance the clock: resume every asset whose cool-off has ended by ``ts``."""
        emitted: list[BreakerEvent] = []
        for asset, state in sorted(self._assets.items()):
            self._resume_if_due(asset, state, ts, emitted)
        return emitted

    # -- gates -------------------------------------------------------------------------------
    def is_halted(self, asset: str, ts: int) -> bool:
        """True while ``asset`` is in its cool-off at ``ts``."""
        state = self._assets.get(asset)
        return state is not None and state.halted_until is not None and ts < state.halted_until

    def liquidation_budget(self, asset: str, ts: int) -> float:
        """Liquidations still allowed on ``asset`` in the minute of ``ts`` (inf outside limits)."""
        if self.is_halted(asset, ts):
            return 0
        state = self._assets.get(asset)
        if state is None or state.resumed_at is None:
            return math.inf
        if ts >= state.resumed_at + self.config.catch_up_ms:
            return math.inf
        used = state.catch_up.get(ts // MINUTE_MS, 0)
        return self.config.catch_up_per_minute - used

    def record_liquidation(self, asset: str, ts: int) -> None:
        """Count one liquidation against the catch-up budget of ``asset``."""
        state = self._assets.get(asset)
        if state is not None and state.resumed_at is not None:
            minute = ts // MINUTE_MS
            state.catch_up[minute] = state.catch_up.get(minute, 0) + 1

    def halts(self) -> list[BreakerEvent]:
        """Every ``halt`` event so far."""
        return [e for e in self.events if e.kind == "halt"]

    # -- internals ---------------------------------------------------------------------------
    def _resume_if_due(
        self, asset: str, state: _AssetBreaker, ts: int, emitted: list[BreakerEvent]
    ) -> None:
        if state.halted_until is not None and ts >= state.halted_until:
            at = state.halted_until
            state.halted_until = None
            state.resumed_at = at
            state.catch_up = {}
            emitted.append(
                self._event(at, asset, "resume", {"catch_up_until": at + self.config.catch_up_ms})
            )

    def _event(self, ts: int, asset: str, kind: str, data: dict[str, Any]) -> BreakerEvent:
        event = BreakerEvent(ts, asset, kind, data)
        self.events.append(event)
        return event


def gated_liquidations(engine: Any, breaker: CircuitBreaker, *, keeper: str, ts: int) -> list[Any]:
    """Run the engine's liquidations at ``ts`` through the breaker.

    Buckets holding a halted asset wait; after a cool-off each asset's catch-up budget caps
    how many buckets holding it are liquidated per minute (most at risk first, the engine's
    order). Returns the engine's :class:`~liquidation.waterfall.LiquidationReport` list.
    """
    breaker.tick(ts)
    engine.tick(ts)
    reports = []
    for bid in engine.liquidatable(ts):
        bucket = engine.state.buckets.get(bid)
        if bucket is None or not bucket.positions or bucket.account == keeper:
            continue
        assets = sorted(bucket.positions)
        if any(breaker.liquidation_budget(a, ts) < 1 for a in assets):
            continue
        try:
            reports.append(engine.liquidate(bid, keeper=keeper, ts=ts))
        except (NotLiquidatableError, RateLimitedError):
            continue
        for a in assets:
            breaker.record_liquidation(a, ts)
    return reports


def gated_trade(
    engine: Any, breaker: CircuitBreaker, account: str, asset: str, dq: int, *, ts: int,
    **kwargs: Any,
) -> None:  # fmt: skip
    """``engine.trade`` unless it adds risk on a halted asset (then :class:`HaltedError`).

    A trade that only reduces the account's position is allowed during a halt.
    """
    breaker.tick(ts)
    if breaker.is_halted(asset, ts):
        bucket = engine.state.buckets.get(account)
        held = bucket.positions[asset].lots if bucket and asset in bucket.positions else 0
        reduces = held != 0 and (held > 0) != (dq > 0) and abs(dq) <= abs(held)
        if not reduces:
            raise HaltedError(
                f"{asset} is halted by its volatility breaker at ts={ts}; new risk is refused "
                "until the cool-off ends (reducing trades are allowed)"
            )
    engine.trade(account, asset, dq, ts=ts, **kwargs)
