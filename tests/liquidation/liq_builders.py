"""Builders shared by the liquidation tests: configs and RiskSnapshot v1 dicts.

A uniquely named module (not ``conftest``) so tests import it without clashing with other
areas' conftest files.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from liquidation.config import (
    AssetConfig,
    EngineConfig,
    FeeConfig,
    LiquidationConfig,
    OracleGuardConfig,
    PortfolioMarginConfig,
)

HOUR_MS = 3_600_000
VAULT_USD = 10_000_000


def iso(ms: int) -> str:
    """Epoch ms -> ISO-8601 UTC with Z."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def snapshot(
    asset: str,
    update_id: int,
    multiplier: float,
    *,
    as_of_ms: int = 0,
    valid_ms: int = 24 * HOUR_MS,
    status: str = "ok",
    sigma: float = 0.03,
    spread_bps: float = 2.0,
    slippage_bps: float = 8.0,
    previous: float = 1.0,
) -> dict[str, Any]:
    """A RiskSnapshot v1 dict (signature fields are not checked by the core)."""
    return {
        "schema": "dynamargin.risk/1",
        "asset": asset,
        "venue": "test",
        "update_id": update_id,
        "as_of": iso(as_of_ms),
        "published_at": iso(as_of_ms),
        "valid_until": iso(as_of_ms + valid_ms),
        "horizon_hours": 24,
        "sigma": sigma,
        "sigma_lower": sigma * 0.8,
        "sigma_upper": sigma * 1.3,
        "var_99": sigma * 2.33,
        "var_99_lower": sigma * 2.0,
        "var_99_upper": sigma * 3.0,
        "es_99": sigma * 2.67,
        "es_99_lower": sigma * 2.2,
        "es_99_upper": sigma * 3.4,
        "liquidity": {
            "amihud": 1e-10,
            "spread_bps": spread_bps,
            "slippage_bps": slippage_bps,
            "standard_size_usd": 1_000_000.0,
        },
        "margin": {
            "multiplier": multiplier,
            "previous_multiplier": previous,
            "base_imf": 0.05,
            "base_mmf": 0.03,
            "imf": 0.05 * multiplier,
            "mmf": 0.03 * multiplier,
        },
        "status": status,
        "provenance": {"model_name": "test", "model_version": "1", "reference_id": "x"},
        "signature": {},
    }


def simple_config(
    symbols: tuple[str, ...] = ("BTCUSDT",),
    *,
    correlation: tuple[tuple[float, ...], ...] | None = None,
    fee: float = 0.0,
    size_imf_factor: float = 0.0,
    heartbeat_ms: int = 2 * HOUR_MS,
    ramp_ms: int = 8 * HOUR_MS,
    **liquidation: Any,
) -> EngineConfig:
    """Config whose margin is exactly ``0.05 * m`` (no size or OI scaling within tests)."""
    return EngineConfig(
        assets=tuple(
            AssetConfig(
                s,
                size_imf_factor=size_imf_factor,
                oi_lower_usd=1e12,
                oi_upper_usd=2e12,
                default_spread_bps=2.0,
                default_slippage_bps=8.0,
            )
            for s in symbols
        ),
        oracle=OracleGuardConfig(heartbeat_ms=heartbeat_ms),
        fees=FeeConfig(taker_fee_rate=fee),
        liquidation=LiquidationConfig(**liquidation),
        portfolio=PortfolioMarginConfig(correlation=correlation),
        ramp_ms=ramp_ms,
    )


def fund_vault(engine: Any, ts: int = 0, usd_amount: int = VAULT_USD) -> None:
    """Deposit into the liquidity vault, the default counterparty of every trade."""
    engine.deposit(engine.config.vault, usd_amount * 1_000_000, ts=ts)
