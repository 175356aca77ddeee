"""Builders shared by the replay tests: small markets and configs.

A uniquely named module (not ``conftest``) so tests import it without clashing with other
areas' conftest files.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from liquidation.simulate import MarketPaths, ReplayConfig

HOUR = 3_600_000


def flat_market(n_assets: int = 2, n_bars: int = 200, price: float = 100.0) -> MarketPaths:
    """A market whose price never moves (zero volatility)."""
    shape = (n_assets, n_bars)
    level = np.full(shape, price)
    return MarketPaths(
        assets=tuple(f"A{i}USDT" for i in range(n_assets)),
        ts_ms=np.arange(n_bars, dtype=np.int64) * HOUR,
        interval_ms=HOUR,
        open=level,
        high=level.copy(),
        low=level.copy(),
        close=level.copy(),
        quote_volume=np.full(shape, 1e8),
        funding_rate=np.zeros(shape),
    )


def random_walk_market(seed: int, n_assets: int = 2, n_bars: int = 600) -> MarketPaths:
    """A volatile random walk with wicks and a crash, for behaviour tests."""
    rng = np.random.default_rng(seed)
    shape = (n_assets, n_bars)
    returns = rng.standard_t(3, size=shape) * 0.01
    returns[:, n_bars // 2] = -0.12  # a crash bar
    close = 100 * np.exp(np.cumsum(returns, axis=1))
    open_ = np.concatenate([np.full((n_assets, 1), 100.0), close[:, :-1]], axis=1)
    wick = np.abs(rng.normal(0, 0.006, size=shape))
    return MarketPaths(
        assets=tuple(f"A{i}USDT" for i in range(n_assets)),
        ts_ms=np.arange(n_bars, dtype=np.int64) * HOUR,
        interval_ms=HOUR,
        open=open_,
        high=np.maximum(open_, close) * (1 + wick),
        low=np.minimum(open_, close) * (1 - wick),
        close=close,
        quote_volume=np.full(shape, 5e7),
        funding_rate=np.where(np.arange(n_bars) % 8 == 0, 1e-4, 0.0)[None, :].repeat(n_assets, 0),
    )


def small_config(n_traders: int = 3_000) -> ReplayConfig:
    base = ReplayConfig()
    return replace(base, book=replace(base.book, n_traders=n_traders))
