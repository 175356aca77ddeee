"""A seeded synthetic book of perpetual traders for the historical replay.

Each trader opens one isolated position: an asset, a side, a collateral deposit, a *target*
leverage and a holding period, arriving at a random bar. The book is drawn once per seed and
is the same for every margin policy; what a policy changes is the leverage a trader is
*allowed*: at open the notional is capped so that equity covers the initial margin at the
multiplier in force (``leverage <= 1 / (imf + fee)``). Tight margin therefore shrinks the
positions of the most aggressive traders, which is the channel through which dynamic margin
lowers liquidations and bad debt, and also why it costs capital efficiency.

Distributions (all parameters in :class:`BookConfig`):

* arrival bar: uniform over the replay's bars (a Poisson stream conditioned on its count);
* asset: uniform, or proportional to each asset's mean quote volume;
* side: long with probability ``long_fraction``;
* collateral: log-normal, ``median * exp(sigma * Z)``;
* target leverage: Pareto type I, ``leverage_min * U ** (-1 / leverage_tail)``, capped at
  ``leverage_max`` (the venue's largest leverage); heavy-tailed like real retail leverage;
* holding period: log-normal in hours, at least one bar, at most ``hold_max_hours``;
* a ``topup_fraction`` of traders defends the position: when health at a bar close falls below
  ``topup_trigger_health`` they deposit enough to restore the initial margin, at most
  ``topup_max_count`` times and at most ``topup_max_fraction`` of the first deposit each time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from liquidation.errors import ConfigError


@dataclass(frozen=True)
class BookConfig:
    """Parameters of the synthetic trader book (defaults: a retail-heavy perp venue).

    Parameters
    ----------
    n_traders : int
        Positions opened over the whole replay (100 000).
    long_fraction : float
        Probability that a trader goes long (0.5).
    collateral_median_usd, collateral_sigma : float
        Log-normal deposit: median 2 000 USD, log-sd 1.2 (mean about 4 100 USD).
    leverage_min, leverage_tail, leverage_max : float
        Pareto target leverage: scale 4x, tail index 1.2 (median about 7x, 15% above 20x),
        capped at 100x.
    hold_median_hours, hold_sigma, hold_max_hours : float
        Log-normal holding period: median 24 h, log-sd 1.0, at most 30 days.
    topup_fraction : float
        Share of traders who add margin near maintenance (0.3).
    topup_trigger_health : float
        ``equity / MM`` at a bar close below which they add margin (1.25).
    topup_max_count : int
        Most top-ups per position (2).
    topup_max_fraction : float
        Largest single top-up as a fraction of the first deposit (1.0).
    volume_weighted_assets : bool
        Draw the asset in proportion to its mean quote volume instead of uniformly (False).
    """

    n_traders: int = 100_000
    long_fraction: float = 0.5
    collateral_median_usd: float = 2_000.0
    collateral_sigma: float = 1.2
    leverage_min: float = 4.0
    leverage_tail: float = 1.2
    leverage_max: float = 100.0
    hold_median_hours: float = 24.0
    hold_sigma: float = 1.0
    hold_max_hours: float = 24.0 * 30
    topup_fraction: float = 0.3
    topup_trigger_health: float = 1.25
    topup_max_count: int = 2
    topup_max_fraction: float = 1.0
    volume_weighted_assets: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.n_traders >= 0, "n_traders must be >= 0"),
            (0 <= self.long_fraction <= 1, "long_fraction must be in [0, 1]"),
            (self.collateral_median_usd > 0, "collateral_median_usd must be > 0"),
            (self.collateral_sigma >= 0, "collateral_sigma must be >= 0"),
            (self.leverage_min >= 1, "leverage_min must be >= 1"),
            (self.leverage_tail > 0, "leverage_tail must be > 0"),
            (self.leverage_max >= self.leverage_min, "leverage_max must be >= leverage_min"),
            (self.hold_median_hours > 0, "hold_median_hours must be > 0"),
            (self.hold_sigma >= 0, "hold_sigma must be >= 0"),
            (self.hold_max_hours >= self.hold_median_hours, "hold_max_hours < hold_median"),
            (0 <= self.topup_fraction <= 1, "topup_fraction must be in [0, 1]"),
            (self.topup_trigger_health > 1, "topup_trigger_health must be > 1"),
            (self.topup_max_count >= 0, "topup_max_count must be >= 0"),
            (self.topup_max_fraction >= 0, "topup_max_fraction must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"BookConfig: {message}")

    def describe(self) -> dict[str, Any]:
        """JSON-able form (for reports and run tracking)."""
        return asdict(self)


@dataclass(frozen=True)
class TraderBook:
    """Drawn traders as structure-of-arrays, sorted by arrival bar (then draw order).

    Attributes
    ----------
    arrival : int64 array
        Bar index at whose open the position is opened.
    asset : int64 array
        Asset index into the replay's asset order.
    side : int8 array
        +1 long, -1 short.
    collateral : float64 array
        First deposit, USD.
    leverage : float64 array
        Target leverage before the margin cap.
    hold_bars : int64 array
        Planned holding period in bars (closed at the close of bar ``arrival + hold - 1``).
    topup : bool array
        Whether the trader defends the position with top-ups.
    """

    arrival: NDArray[np.int64]
    asset: NDArray[np.int64]
    side: NDArray[np.int8]
    collateral: NDArray[np.float64]
    leverage: NDArray[np.float64]
    hold_bars: NDArray[np.int64]
    topup: NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.arrival)


def draw_book(
    config: BookConfig,
    n_bars: int,
    n_assets: int,
    seed: int,
    bar_hours: float = 1.0,
    asset_weights: NDArray[np.float64] | None = None,
) -> TraderBook:
    """Draw the trader book of one seed.

    Parameters
    ----------
    config : BookConfig
        Distribution parameters.
    n_bars, n_assets : int
        Size of the replay grid.
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives the same book.
    bar_hours : float
        Bar length in hours (converts holding periods to bars).
    asset_weights : array, optional
        Relative asset weights (e.g. mean quote volume), used when
        ``config.volume_weighted_assets``.

    Returns
    -------
    TraderBook
    """
    if n_bars < 1 or n_assets < 1:
        raise ConfigError(f"draw_book needs at least one bar and one asset ({n_bars}, {n_assets})")
    rng = np.random.default_rng(seed)
    n = config.n_traders
    arrival = np.sort(rng.integers(0, n_bars, size=n))
    if config.volume_weighted_assets and asset_weights is not None:
        weights = np.asarray(asset_weights, dtype=np.float64)
        weights = np.where(np.isfinite(weights) & (weights > 0), weights, 0.0)
        p = weights / weights.sum() if weights.sum() > 0 else None
        asset = rng.choice(n_assets, size=n, p=p)
    else:
        asset = rng.integers(0, n_assets, size=n)
    side = np.where(rng.random(n) < config.long_fraction, 1, -1).astype(np.int8)
    collateral = config.collateral_median_usd * np.exp(
        config.collateral_sigma * rng.standard_normal(n)
    )
    # 1 - U lies in (0, 1], so the Pareto draw is finite.
    leverage = config.leverage_min * (1.0 - rng.random(n)) ** (-1.0 / config.leverage_tail)
    leverage = np.minimum(leverage, config.leverage_max)
    hours = config.hold_median_hours * np.exp(config.hold_sigma * rng.standard_normal(n))
    hours = np.minimum(hours, config.hold_max_hours)
    hold_bars = np.maximum(1, np.round(hours / bar_hours)).astype(np.int64)
    topup = rng.random(n) < config.topup_fraction
    return TraderBook(
        arrival=arrival.astype(np.int64),
        asset=np.asarray(asset, dtype=np.int64),
        side=side,
        collateral=collateral,
        leverage=leverage,
        hold_bars=hold_bars,
        topup=topup,
    )
