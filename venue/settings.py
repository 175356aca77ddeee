"""What one venue is: its assets, state directory, keeper, thresholds and engine rules."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from contracts.files import atomic_write_text
from liquidation.circuit_breaker import CircuitBreakerConfig
from liquidation.config import AssetConfig, EngineConfig, OracleGuardConfig
from venue.errors import VenueConfigError


@dataclass(frozen=True)
class VenueSettings:
    """Settings of a venue; the engine rules derive from them, so keep them across restarts.

    Parameters
    ----------
    assets
        Perpetuals listed, as in the RiskSnapshot (``BTCUSDT``).
    state_dir
        Holds the event log (``events.db``) and the pinned key (``trusted-keys.json``).
    keeper
        Account credited with keeper penalties (never liquidated by itself).
    at_risk_health
        A bucket with positions and ``equity / MM`` below this is "at risk" (1.5).
    bar_ms
        Cadence of the price feed (1 h bars): a print is stale after two bars.
    fallback_multiplier
        Multiplier in force without a usable snapshot (2.0, the engine's default; see
        :func:`liquidation.snapshot.target_multiplier`).
    base_imf, maintenance_fraction
        The static fractions; a snapshot with other base fractions is refused.
    trusted_keys
        Ed25519 keys to trust; empty: pin the served key on first contact.
    recent_liquidations
        How many liquidations the status endpoint lists.
    max_steps_per_tick
        Bound of the waterfall steps one tick runs (the rest wait for the next tick).
    circuit_breaker
        The engine's price bands and volatility halts (:mod:`liquidation.circuit_breaker`,
        its documented defaults); ``None`` turns them off.
    """

    assets: tuple[str, ...]
    state_dir: Path
    keeper: str = "keeper"
    at_risk_health: float = 1.5
    bar_ms: int = 3_600_000
    fallback_multiplier: float = 2.0
    base_imf: float = 0.05
    maintenance_fraction: float = 0.6
    trusted_keys: tuple[str, ...] = field(default_factory=tuple)
    recent_liquidations: int = 20
    max_steps_per_tick: int = 10_000
    circuit_breaker: CircuitBreakerConfig | None = field(default_factory=CircuitBreakerConfig)

    def __post_init__(self) -> None:
        if not self.assets:
            raise VenueConfigError("a venue lists at least one asset")
        if self.at_risk_health <= 1.0:
            raise VenueConfigError(
                f"at_risk_health must be above 1 (1 is liquidation), got {self.at_risk_health}"
            )
        if self.bar_ms <= 0 or self.max_steps_per_tick < 1 or self.recent_liquidations < 0:
            raise VenueConfigError("bar_ms and max_steps_per_tick must be positive")

    @property
    def log_path(self) -> Path:
        return Path(self.state_dir) / "events.db"

    @property
    def rules_path(self) -> Path:
        return Path(self.state_dir) / "venue-rules.json"

    def rules(self) -> dict[str, object]:
        """What the engine's rules derive from (the log replays only under the same)."""
        return {
            "assets": list(self.assets),
            "bar_ms": self.bar_ms,
            "fallback_multiplier": self.fallback_multiplier,
            "base_imf": self.base_imf,
            "maintenance_fraction": self.maintenance_fraction,
            "circuit_breaker": (
                None if self.circuit_breaker is None else self.circuit_breaker.to_dict()
            ),
        }

    def check_rules(self) -> None:
        """Record the rules on first start; refuse a restart under other rules.

        Raises
        ------
        VenueConfigError
            The state directory's log was written under other rules.
        """
        path = self.rules_path
        if not path.exists():
            atomic_write_text(path, json.dumps(self.rules(), indent=1, sort_keys=True) + "\n")
            return
        recorded = json.loads(path.read_text(encoding="utf-8"))
        if recorded != self.rules():
            raise VenueConfigError(
                f"{self.state_dir} holds a venue run under {recorded}, not {self.rules()}; "
                "restart with the same settings or use another --state-dir"
            )

    @property
    def pins_path(self) -> Path:
        return Path(self.state_dir) / "trusted-keys.json"

    def engine_config(self) -> EngineConfig:
        """The engine's rules: default margin and waterfall, oracle heartbeat of two bars,
        and the circuit breaker."""
        two_bars = 2 * self.bar_ms
        oracle = OracleGuardConfig(heartbeat_ms=two_bars, reference_heartbeat_ms=two_bars)
        assets = tuple(
            AssetConfig(
                symbol,
                base_imf=self.base_imf,
                maintenance_fraction=self.maintenance_fraction,
                fallback_multiplier=self.fallback_multiplier,
            )
            for symbol in self.assets
        )
        return EngineConfig(assets=assets, oracle=oracle, breaker=self.circuit_breaker)
