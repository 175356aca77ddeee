"""Circuit breakers: per-asset price bands and a volatility halt, as engine events.

The breaker lives inside the engine (``EngineConfig.breaker``; off when ``None``): every
decision is an event of the engine's event-sourced log, folded by :data:`BREAKER_HANDLERS`,
so a restart replays a halt to the identical state, and the engine itself refuses new risk
and liquidations during one.

**Price band.** The oracle guard judges the print first (is it genuine?); an accepted print
more than ``band`` (relative) away from the asset's previous accepted print is then clamped
to the band's edge, which becomes the oracle price (limit up / limit down; the band moves one
print at a time toward a real new level), and a ``breaker_band`` event records the print, the
edge and the reference. After a feed gap longer than the window there is no reference, and
the next print sets one.

**Volatility halt.** The move of an asset within a rolling ``window_ms`` is
``max(ln(p / min), ln(max / p))`` over the guard-accepted prints in the window (a print the
guard refused cannot halt the market). When it exceeds ``k_sigma`` forecast sigmas of that
window, ``sigma_window = sigma * sqrt(window / horizon)`` with ``sigma`` the published
forecast over ``horizon_hours`` of the snapshot in force (``AssetConfig.fallback_sigma`` over
``fallback_horizon_hours`` without a usable one), the asset **halts** for ``cool_off_ms``
(``breaker_halt``): no new risk (:class:`HaltedError`; a trade that only reduces the taker's
position passes) and no liquidation of a bucket holding the asset, perpetual or option
underlying. The first command at or after the end of the cool-off records the resumption
(``breaker_resume``, stamped with the instant it ended). Then a **rate-limited catch-up**:
for ``catch_up_ms`` at most ``catch_up_per_minute`` liquidations a minute of buckets holding
the asset (:class:`CatchUpLimitError`, a :class:`~liquidation.errors.RateLimitedError`), each
counted by a ``breaker_catch_up`` event, so a backlog of underwater accounts is not dumped on
the book in one instant. The window restarts at the halt (the move is not counted twice).

Defaults (:class:`CircuitBreakerConfig`): ``k_sigma = 6``, ``window_ms = 1 h``,
``cool_off_ms = 1 h``, ``band = 0.15``, catch-up 20 liquidations a minute for 30 minutes.
Settlement of expiring options is not gated (it is contractual, at the mark), nor are
deposits and withdrawals (the margin rules already bound them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from liquidation.errors import ConfigError, LiquidationCoreError, RateLimitedError

if TYPE_CHECKING:  # the planning helpers take a Transaction; importing it here would cycle
    from liquidation.transaction import Transaction

MINUTE_MS = 60_000


class HaltedError(LiquidationCoreError):
    """New risk or a liquidation refused on an asset during its volatility halt."""


class CatchUpLimitError(RateLimitedError):
    """A liquidation beyond the catch-up budget of the minute after a halt; retry later."""


@dataclass(frozen=True)
class CircuitBreakerConfig:
    """Parameters of the price band and the volatility halt (defaults in the module doc)."""

    k_sigma: float = 6.0
    window_ms: int = 3_600_000
    cool_off_ms: int = 3_600_000
    band: float = 0.15
    catch_up_per_minute: int = 20
    catch_up_ms: int = 30 * MINUTE_MS
    fallback_horizon_hours: float = 24.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.k_sigma) and self.k_sigma > 0):
            raise ConfigError("CircuitBreakerConfig.k_sigma must be finite and > 0")
        if self.window_ms <= 0 or self.cool_off_ms <= 0 or self.catch_up_ms < 0:
            raise ConfigError("CircuitBreakerConfig: window and cool-off must be > 0")
        if not 0 < self.band < 1:
            raise ConfigError("CircuitBreakerConfig.band must be in (0, 1)")
        if self.catch_up_per_minute < 1:
            raise ConfigError("CircuitBreakerConfig.catch_up_per_minute must be >= 1")
        if not (math.isfinite(self.fallback_horizon_hours) and self.fallback_horizon_hours > 0):
            raise ConfigError("CircuitBreakerConfig.fallback_horizon_hours must be > 0")

    def to_dict(self) -> dict[str, Any]:
        """The parameters as plain JSON values (a venue records them with its rules)."""
        return dict(vars(self))


@dataclass(frozen=True)
class BreakerState:
    """The breaker's state of one asset (immutable; the fold replaces it)."""

    window: tuple[tuple[int, int], ...] = ()
    last: int | None = None
    last_ts: int | None = None
    halted_until: int | None = None
    resumed_at: int | None = None
    catch_up_minute: int | None = None
    catch_up_used: int = 0

    def halted(self, ts: int) -> bool:
        """True while the asset is in its cool-off at ``ts``."""
        return self.halted_until is not None and ts < self.halted_until

    def budget(self, ts: int, config: CircuitBreakerConfig) -> float:
        """Liquidations still allowed in the minute of ``ts`` (0 halted, inf outside limits)."""
        if self.halted(ts):
            return 0
        start = self.halted_until if self.halted_until is not None else self.resumed_at
        if start is None or ts >= start + config.catch_up_ms:
            return math.inf
        used = self.catch_up_used if self.catch_up_minute == ts // MINUTE_MS else 0
        return config.catch_up_per_minute - used

    def to_list(self) -> list[Any]:
        """Canonical form for the state digest."""
        return [
            [list(p) for p in self.window], self.last, self.last_ts, self.halted_until,
            self.resumed_at, self.catch_up_minute, self.catch_up_used,
        ]  # fmt: skip


#: Event kinds of the breaker and their required data fields (merged into the log's schema).
BREAKER_EVENT_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    "breaker_band": frozenset({"asset", "print", "price", "reference", "band"}),
    "breaker_print": frozenset({"asset", "price", "reset", "drop", "append"}),
    "breaker_halt": frozenset(
        {"asset", "move", "sigma_window", "k_sigma", "window_ms", "until", "price"}
    ),
    "breaker_resume": frozenset({"asset", "at", "catch_up_until"}),
    "breaker_catch_up": frozenset({"assets", "minute", "bucket"}),
}


# -- planning (called by the engine's commands on their Transaction) ----------------------------
def state_of(tx: Transaction, symbol: str) -> BreakerState:
    """The breaker state of ``symbol`` on the planned state (empty before its first print)."""
    return tx.state.breakers.get(symbol) or BreakerState()


def plan_resumes(tx: Transaction, symbols: Iterable[str] | None = None) -> None:
    """Record the resumption of every asset whose cool-off ended by the command's time."""
    cfg = tx.config.breaker
    if cfg is None:
        return
    for symbol in sorted(tx.state.breakers if symbols is None else set(symbols)):
        state = state_of(tx, symbol)
        if state.halted_until is not None and tx.ts >= state.halted_until:
            at = state.halted_until
            tx.emit(
                "breaker_resume",
                {"asset": symbol, "at": at, "catch_up_until": at + cfg.catch_up_ms},
            )


def plan_print(tx: Transaction, symbol: str, price: int) -> None:
    """Band and halt check of a print the oracle guard accepted.

    The price band clamps the accepted print to ``band`` around the previous one
    (``breaker_band``, which also sets the asset's oracle price to the edge); the banded
    price enters the halt window (``breaker_print``) and may halt the asset
    (``breaker_halt``). During a halt prints move the band's reference but not the window.
    """
    cfg = tx.config.breaker
    if cfg is None:
        return
    state = state_of(tx, symbol)
    reset = state.last_ts is not None and tx.ts - state.last_ts > cfg.window_ms
    used = price
    if state.last is not None and not reset:
        low = math.ceil(state.last * (1 - cfg.band))
        high = math.floor(state.last * (1 + cfg.band))
        if not low <= price <= high:
            used = min(high, max(low, price))
            tx.emit(
                "breaker_band",
                {"asset": symbol, "print": price, "price": used, "reference": state.last,
                 "band": cfg.band},
            )  # fmt: skip
    window = () if reset else state.window
    append = not state.halted(tx.ts)
    drop = 0
    if append:
        window = (*window, (tx.ts, used))
        while window[drop][0] < tx.ts - cfg.window_ms:
            drop += 1
    tx.emit(
        "breaker_print",
        {"asset": symbol, "price": used, "reset": reset, "drop": drop, "append": append},
    )
    if not append:
        return
    kept = [p for _, p in window[drop:]]
    move = max(math.log(used / min(kept)), math.log(max(kept) / used))
    sigma, horizon = forecast_sigma(tx, symbol)
    sigma_window = sigma * math.sqrt(cfg.window_ms / (horizon * 3_600_000))
    if move > cfg.k_sigma * sigma_window:
        tx.emit(
            "breaker_halt",
            {"asset": symbol, "move": move, "sigma_window": sigma_window,
             "k_sigma": cfg.k_sigma, "window_ms": cfg.window_ms,
             "until": tx.ts + cfg.cool_off_ms, "price": used},
        )  # fmt: skip


def forecast_sigma(tx: Transaction, symbol: str) -> tuple[float, float]:
    """The published sigma and its horizon in force (the asset's fallback without one)."""
    params = tx.state.assets[symbol].params
    if params is not None and params.is_usable(tx.ts):
        return params.sigma, params.horizon_hours
    cfg = tx.config.breaker
    assert cfg is not None
    return tx.config.asset(symbol).fallback_sigma, cfg.fallback_horizon_hours


def require_open(tx: Transaction, symbol: str, what: str) -> None:
    """Refuse ``what`` (new risk) on ``symbol`` during its halt."""
    if tx.config.breaker is None:
        return
    plan_resumes(tx, [symbol])
    state = state_of(tx, symbol)
    if state.halted(tx.ts):
        raise HaltedError(
            f"{what} refused at ts={tx.ts}: {symbol} is halted by its volatility breaker until "
            f"{state.halted_until}; new risk waits for the cool-off (reducing trades pass)"
        )


def require_liquidation_budget(tx: Transaction, bucket: str, assets: Iterable[str]) -> list[str]:
    """Refuse a liquidation of ``bucket`` (holding ``assets``) during a halt or beyond the
    catch-up budget; returns the assets whose catch-up the liquidation counts against."""
    cfg = tx.config.breaker
    if cfg is None:
        return []
    held = sorted(set(assets))
    plan_resumes(tx, held)
    counted = []
    for symbol in held:
        state = state_of(tx, symbol)
        if state.halted(tx.ts):
            raise HaltedError(
                f"liquidation of {bucket!r} refused at ts={tx.ts}: {symbol} is halted by its "
                f"volatility breaker until {state.halted_until}; it resumes after the cool-off"
            )
        budget = state.budget(tx.ts, cfg)
        if budget < 1:
            raise CatchUpLimitError(
                f"liquidation of {bucket!r} waits: the catch-up after {symbol}'s halt allows "
                f"{cfg.catch_up_per_minute} a minute and this minute's are used; retry in the "
                "next minute"
            )
        if math.isfinite(budget):
            counted.append(symbol)
    return counted


def plan_catch_up(tx: Transaction, bucket: str, counted: list[str]) -> None:
    """Count one liquidation of ``bucket`` against the catch-up budgets of ``counted``."""
    if counted:
        tx.emit(
            "breaker_catch_up",
            {"assets": counted, "minute": tx.ts // MINUTE_MS, "bucket": bucket},
        )


# -- fold (registered in liquidation.state) -------------------------------------------------------
def _get(state: Any, symbol: str) -> BreakerState:
    return state.breakers.get(symbol) or BreakerState()


def _on_band(state: Any, ts: int, data: dict[str, Any]) -> None:
    state.assets[data["asset"]].price = data["price"]  # the oracle price is the band's edge


def _on_print(state: Any, ts: int, data: dict[str, Any]) -> None:
    current = _get(state, data["asset"])
    window = () if data["reset"] else current.window
    if data["append"]:
        window = (*window, (ts, data["price"]))[data["drop"] :]
    state.breakers[data["asset"]] = replace(current, window=window, last=data["price"], last_ts=ts)


def _on_halt(state: Any, ts: int, data: dict[str, Any]) -> None:
    current = _get(state, data["asset"])
    state.breakers[data["asset"]] = replace(current, window=(), halted_until=data["until"])


def _on_resume(state: Any, ts: int, data: dict[str, Any]) -> None:
    current = _get(state, data["asset"])
    state.breakers[data["asset"]] = replace(
        current, halted_until=None, resumed_at=data["at"], catch_up_minute=None, catch_up_used=0
    )


def _on_catch_up(state: Any, ts: int, data: dict[str, Any]) -> None:
    minute = data["minute"]
    for symbol in data["assets"]:
        current = _get(state, symbol)
        used = current.catch_up_used + 1 if current.catch_up_minute == minute else 1
        state.breakers[symbol] = replace(current, catch_up_minute=minute, catch_up_used=used)


BREAKER_HANDLERS: Final[dict[str, Callable[[Any, int, dict[str, Any]], None]]] = {
    "breaker_band": _on_band,
    "breaker_print": _on_print,
    "breaker_halt": _on_halt,
    "breaker_resume": _on_resume,
    "breaker_catch_up": _on_catch_up,
}
