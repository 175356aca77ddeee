"""Seeded synthetic crypto market: spot bars, perpetual bars and funding in the Bars contract.

The generator is the embedded default for ``make demo`` and for fast tests. It reproduces the
stylised facts that the volatility models and order-flow features are meant to exploit, so a
pipeline that works here has a fair chance on the real data:

* **multi-asset correlation** through a Cholesky factor of the correlation matrix applied to
  multivariate Student-t innovations (one common chi-square mixing variable per bar, which
  also gives tail dependence: crashes are joint);
* **volatility clustering**: a GARCH(1,1)-like variance recursion per asset;
* **regime switches**: a market-wide two-state Markov chain whose high state multiplies every
  asset's volatility;
* **jumps**: market-wide Poisson jump arrivals with correlated normal sizes;
* **fat tails**: Student-t innovations on top of the above;
* **order flow that leads volatility**: the taker buy/sell imbalance of bar ``t`` feeds the
  variance of bar ``t + 1``, so ``|imbalance_t|`` predicts ``|r_{t+1}|`` beyond the GARCH
  channel;
* **trade counts**: negative binomial counts whose mean scales with quote volume;
* **intrabar paths**: OHLC from a Brownian bridge between open and close with exact bridge
  extremes inside each sub-step, so wicks (and range-based estimators) behave as in theory;
* **perpetuals and funding**: the spot path plus a small mean-reverting basis, Binance-style
  8-hourly funding computed from that basis, and a mean-reverting open interest.
* **information that arrives ahead** (the channels real margin must anticipate):

  - *crowding*: a slow per-asset leverage state (partly common to the market) lifts the
    perpetual premium, hence funding and basis, and builds open interest; six hours later it
    lifts volatility. Funding stress and open-interest growth therefore lead volatility.
  - *scheduled events*: a seeded macro calendar (FOMC-, CPI- and payroll-like releases, a
    few unscheduled) whose releases multiply every asset's variance, decaying over hours;
    a scheduled release is known long before it happens, so its volatility is forecastable.
  - *positioning*: daily open interest (the first two assets, as in the real data) and
    daily long/short liquidations (the first four), which follow large adverse moves.

Model (per asset ``i`` and bar ``t``; ``sigma_i`` is the long-run per-bar volatility)::

    g_t   = omega + alpha * g_{t-1} * z_{t-1}^2 + beta * g_{t-1} + lead * f_{t-1}^2
    r_t   = sigma_i * c * m(s_t) * d(h_t) * e(t) * k_i(t) * sqrt(g_t) * z_t  +  jumps J_{t,i}
    z_t   = (L e_t) * sqrt((nu - 2) / W_t),   e_t ~ N(0, I),  W_t ~ chi2(nu),  L L' = R
    f_t   = kappa * z_t + sqrt(1 - kappa^2) * u_t,            imbalance_t = q * tanh(f_t)

with ``omega = 1 - alpha - beta - lead`` (so ``E[g] = 1``), ``m(s)`` the regime multiplier,
``d(h)`` the intraday (hour-of-day) volatility profile, ``e(t)^2 = 1 + sum_releases
A exp(-(t - release) / tau)`` the event multiplier, ``k_i(t)^2 = exp(gamma C_i(t - 6h) -
gamma^2 / 2)`` the crowding multiplier (``C_i`` a unit-variance AR(1)),
``N_t ~ Poisson(lambda)`` common jump
arrivals with correlated normal sizes ``J_{t,i}``, and ``c`` chosen so that the long-run
variance of ``r`` equals ``sigma_i^2``.
Log prices are driftless.
"""

from __future__ import annotations

import math
import zlib
from datetime import UTC, datetime
from typing import Final

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.timestamps import utc_datetime
from features.bars import REQUIRED_COLUMNS, interval_to_timedelta
from features.market import FUNDING_COLUMNS, MarketData

__all__ = ["DEFAULT_ASSETS", "SyntheticMarketConfig", "correlation_matrix", "generate_market"]

DEFAULT_ASSETS: Final[tuple[str, ...]] = (
    "BTCUSDT",
    "ETHUSDT",
    "BNBUSDT",
    "SOLUSDT",
    "XRPUSDT",
    "ADAUSDT",
    "DOGEUSDT",
    "AVAXUSDT",
    "LINKUSDT",
    "DOTUSDT",
)
"""The ten assets of the real data; more synthetic assets cycle these names with a suffix."""

# Rough mid-2024 levels: price (USDT), annualised volatility, daily spot quote volume (USDT).
_DEFAULT_PRICE: Final[tuple[float, ...]] = (
    60_000.0,
    3_000.0,
    550.0,
    150.0,
    0.55,
    0.45,
    0.12,
    30.0,
    14.0,
    6.5,
)
_DEFAULT_ANNUAL_VOL: Final[tuple[float, ...]] = (
    0.55,
    0.70,
    0.60,
    0.90,
    0.80,
    0.85,
    0.95,
    0.95,
    0.90,
    0.85,
)
_DEFAULT_DAILY_QUOTE_VOLUME: Final[tuple[float, ...]] = (
    1.5e9,
    7.0e8,
    1.5e8,
    3.0e8,
    1.5e8,
    6.0e7,
    1.5e8,
    5.0e7,
    5.0e7,
    3.0e7,
)

_YEAR: Final[pd.Timedelta] = pd.Timedelta(days=365)
_DAY: Final[pd.Timedelta] = pd.Timedelta(days=1)
# Binance USDT-M clamps (interest - premium) to +-0.05% in its funding formula.
_FUNDING_CLAMP: Final[float] = 0.0005

PerAsset = float | tuple[float, ...] | None


class SyntheticMarketConfig(BaseModel):
    """Every knob of the synthetic market; frozen, validated, fully describing a run.

    Per-asset fields (``base_prices``, ``annual_vol``, ``daily_quote_volume``) take ``None``
    (defaults of the matching real ticker, cycled past ten assets), one float for every asset,
    or a tuple with exactly one value per asset.

    Parameters
    ----------
    n_assets
        Number of assets, 1..500.
    days
        Length of the sample in days; the number of bars is ``days * 1d / interval``.
    seed
        Seed of every random draw; the same config always gives identical frames, and a
        shorter sample is exactly the prefix of a longer one with the same seed.
    interval
        Bar length, e.g. ``"1h"``. It must divide the funding interval (8h by default).
    start
        UTC open of the first bar (tz-aware, or naive meaning UTC); aligned to ``interval``.
    assets
        Asset names; default the ten real tickers (``BTCUSDT`` ... ``DOTUSDT``), cycled as
        ``BTCUSDT_2``, ``ETHUSDT_2``, ... past ten.
    base_prices
        Price of each asset at ``start`` (quote currency).
    annual_vol
        Long-run annualised volatility of each asset's log returns (365-day year).
    daily_quote_volume
        Mean spot quote volume per day (USDT), spread over bars with the intraday profile.
    rho
        Correlation of the innovations: one float (equicorrelation, must keep the matrix
        positive definite: ``-1/(n-1) < rho < 1``) or a full ``n x n`` matrix (symmetric, unit
        diagonal, positive definite). This is the correlation of the innovations and jump
        sizes; the sample correlation of returns comes out a few percent lower (e.g. ~0.57
        for 0.6) because each asset follows its own GARCH variance path.
    garch_alpha, garch_beta
        ARCH and GARCH coefficients of the unit-mean variance recursion ``g_t``.
    flow_lead
        Weight of the previous bar's squared order-flow shock ``f_{t-1}^2`` in ``g_t``: the
        strength with which taker imbalance leads volatility. ``0`` switches the lead off.
        ``garch_alpha + garch_beta + flow_lead < 1`` (stationarity).
    regime_p_enter_high
        Per-bar probability of switching from the calm to the high-volatility regime (the
        high regime holds ~9% of the bars by default; it was 17% before the channels that
        arrive ahead were added: an unforecastable regime that frequent drowns them in a
        240-day demo).
    regime_p_exit_high
        Per-bar probability of switching from the high-volatility back to the calm regime.
    high_vol_multiplier
        Volatility multiplier of the high regime relative to the calm one (>= 1).
    jump_intensity_per_day
        Expected number of market-wide jump events per day (Poisson).
    jump_size
        Standard deviation of a jump, in units of the asset's long-run *daily* volatility
        (so the jumps' share of variance, ``jump_intensity_per_day * jump_size^2``, does not
        depend on the interval). Jump sizes across assets are correlated like the
        innovations. Jumps may carry at most half of the long-run variance.
    student_t_df
        Degrees of freedom of the multivariate Student-t innovations (> 2; smaller = fatter
        tails).
    flow_return_corr
        Correlation of the order-flow shock ``f_t`` with the same bar's return innovation:
        buying pressure moves the price up.
    imbalance_scale
        Maximum absolute taker imbalance ``q`` in ``imbalance = q * tanh(f)``; the taker buy
        share of volume is ``(1 + imbalance) / 2``.
    intraday_amplitude
        Amplitude ``A`` of the hour-of-day variance profile ``1 + A cos(2 pi (h - 15.5)/24)``
        (peak around the US open); volume follows the same profile. ``0`` disables it.
    volume_noise_sd
        Standard deviation of the log-normal noise of volume.
    volume_vol_elasticity
        Elasticity of expected volume to the bar's conditional volatility.
    intrabar_steps
        Sub-steps of the intrabar path; extremes inside each sub-step are drawn exactly
        from the Brownian-bridge law, so a handful is enough.
    mean_trade_quote
        Mean trade size in quote currency: expected trades = quote volume / this.
    trade_count_dispersion
        Shape ``k`` of the negative binomial trade count (variance ``mu + mu^2 / k``);
        large values approach Poisson.
    funding_interval_hours
        Hours between funding settlements (aligned to 00:00 UTC).
    funding_interest
        Interest component of the funding formula per interval (Binance: 0.01%).
    funding_cap
        Absolute cap of the funding rate per interval.
    basis_mean
        Long-run mean of the perpetual premium ``(perp - spot) / spot``.
    basis_sd
        Stationary standard deviation of the premium.
    basis_half_life_hours
        Half-life of the premium's mean reversion.
    basis_return_beta
        Premium change per unit log return of the bar (perps overshoot in trends).
    perp_volume_ratio
        Perpetual volume relative to spot volume.
    open_interest_ratio
        Long-run open-interest notional relative to the perpetual's daily quote volume.
    open_interest_sd
        Per-bar standard deviation of log open-interest innovations.
    open_interest_half_life_days
        Half-life of log open interest's mean reversion.
    open_interest_vol_sensitivity
        Fall of log open interest per unit of ``|r_t| / sigma`` (deleveraging in big moves).
    crowding_half_life_hours
        Half-life of the per-asset crowding state ``C_i`` (unit variance AR(1)).
    crowding_common_share
        Share of the crowding variance that is common to every asset.
    crowding_vol
        ``gamma``: log-variance loading on crowding six hours earlier (0 switches it off).
    crowding_basis
        Premium ``(perp - spot) / spot`` added per unit of crowding (funding follows).
    crowding_open_interest
        Log open interest added per unit of crowding (leverage builds).
    event_rate_per_day
        Expected macro releases per day in the seeded calendar (the real US calendar has
        about 0.1; the default is denser so a 240-day demo holds enough releases to learn).
    event_variance_boost
        ``A``: variance multiplier minus one in the release bar (FOMC-like releases 1.5 A).
    event_decay_hours
        ``tau``: e-folding time of the release's variance boost.
    event_unscheduled_share
        Share of releases that were not scheduled (known only from their release).
    positioning_oi_assets, positioning_liquidation_assets
        The first this-many assets carry daily open interest / liquidations (the real data
        has open interest for 2 of 10 assets and liquidations for 4).
    liquidation_rate
        Liquidated notional per bar, as a share of open interest notional, per unit of
        adverse standardised move beyond one sigma.

    Examples
    --------
    >>> market = generate_market(SyntheticMarketConfig(n_assets=2, days=3, seed=1))
    >>> market.bars.shape
    (144, 11)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_assets: int = Field(10, ge=1, le=500)
    days: int = Field(365, ge=1, le=36_500)
    seed: int = Field(7, ge=0)
    interval: str = "1h"
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    assets: tuple[str, ...] | None = None
    base_prices: PerAsset = None
    annual_vol: PerAsset = None
    daily_quote_volume: PerAsset = None
    rho: float | tuple[tuple[float, ...], ...] = 0.6
    garch_alpha: float = Field(0.05, ge=0.0, lt=1.0)
    garch_beta: float = Field(0.85, ge=0.0, lt=1.0)
    flow_lead: float = Field(0.09, ge=0.0, lt=1.0)
    regime_p_enter_high: float = Field(0.001, ge=0.0, le=1.0)
    regime_p_exit_high: float = Field(0.01, gt=0.0, le=1.0)
    high_vol_multiplier: float = Field(2.5, ge=1.0, le=20.0)
    jump_intensity_per_day: float = Field(0.1, ge=0.0)
    jump_size: float = Field(1.25, ge=0.0)
    student_t_df: float = Field(5.0, gt=2.0)
    flow_return_corr: float = Field(0.5, ge=-1.0, le=1.0)
    imbalance_scale: float = Field(0.15, ge=0.0, lt=1.0)
    intraday_amplitude: float = Field(0.4, ge=0.0, lt=1.0)
    volume_noise_sd: float = Field(0.35, ge=0.0, le=3.0)
    volume_vol_elasticity: float = Field(1.0, ge=0.0, le=5.0)
    intrabar_steps: int = Field(8, ge=1, le=256)
    mean_trade_quote: float = Field(500.0, gt=0.0)
    trade_count_dispersion: float = Field(25.0, gt=0.0)
    funding_interval_hours: int = Field(8, ge=1, le=24)
    funding_interest: float = Field(0.0001, ge=-0.01, le=0.01)
    funding_cap: float = Field(0.003, gt=0.0, le=0.1)
    basis_mean: float = Field(0.0002, ge=-0.05, le=0.05)
    basis_sd: float = Field(0.0004, ge=0.0, le=0.05)
    basis_half_life_hours: float = Field(12.0, gt=0.0)
    basis_return_beta: float = Field(0.02, ge=-1.0, le=1.0)
    perp_volume_ratio: float = Field(3.0, gt=0.0)
    open_interest_ratio: float = Field(1.0, gt=0.0)
    open_interest_sd: float = Field(0.01, ge=0.0, le=1.0)
    open_interest_half_life_days: float = Field(7.0, gt=0.0)
    open_interest_vol_sensitivity: float = Field(0.003, ge=0.0, le=1.0)
    crowding_half_life_hours: float = Field(24.0, gt=0.0)
    crowding_common_share: float = Field(0.5, ge=0.0, le=1.0)
    crowding_vol: float = Field(0.8, ge=0.0, le=2.0)
    crowding_basis: float = Field(0.0006, ge=0.0, le=0.05)
    crowding_open_interest: float = Field(0.05, ge=0.0, le=1.0)
    event_rate_per_day: float = Field(0.3, ge=0.0, le=3.0)
    event_variance_boost: float = Field(5.0, ge=0.0, le=100.0)
    event_decay_hours: float = Field(6.0, gt=0.0, le=168.0)
    event_unscheduled_share: float = Field(0.05, ge=0.0, le=1.0)
    positioning_oi_assets: int = Field(2, ge=0)
    positioning_liquidation_assets: int = Field(4, ge=0)
    liquidation_rate: float = Field(0.002, ge=0.0, le=1.0)

    @field_validator("interval")
    @classmethod
    def _interval_is_binance_style(cls, value: str) -> str:
        interval_to_timedelta(value)  # raises a ValueError naming the bad interval
        return value

    @field_validator("start")
    @classmethod
    def _start_is_utc(cls, value: datetime) -> datetime:
        return utc_datetime(value)

    @field_validator("base_prices", "annual_vol", "daily_quote_volume")
    @classmethod
    def _positive_per_asset(cls, value: PerAsset) -> PerAsset:
        values = [value] if isinstance(value, float | int) else list(value or ())
        bad = [v for v in values if not (math.isfinite(v) and v > 0)]
        if bad:
            raise ValueError(f"per-asset values must be finite and > 0, got {bad}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SyntheticMarketConfig:
        step = interval_to_timedelta(self.interval)
        funding = pd.Timedelta(hours=self.funding_interval_hours)
        if funding % step != pd.Timedelta(0) or _DAY % funding != pd.Timedelta(0):
            raise ValueError(
                f"interval {self.interval!r} must divide the funding interval "
                f"({self.funding_interval_hours}h), which must divide 24h; use e.g. '1h'"
            )
        start = pd.Timestamp(self.start)
        if (start - pd.Timestamp(0, tz="UTC")) % step != pd.Timedelta(0):
            raise ValueError(
                f"start {start.isoformat()} is not aligned to the {self.interval} bar grid; "
                f"use a bar open such as {start.floor(step).isoformat()}"
            )
        if self.assets is not None:
            if len(self.assets) != self.n_assets:
                raise ValueError(
                    f"assets has {len(self.assets)} names but n_assets is {self.n_assets}; "
                    "give one name per asset"
                )
            if len(set(self.assets)) != len(self.assets) or not all(self.assets):
                raise ValueError(f"asset names must be unique and non-empty: {self.assets}")
        for name in ("base_prices", "annual_vol", "daily_quote_volume"):
            value = getattr(self, name)
            if isinstance(value, tuple) and len(value) != self.n_assets:
                raise ValueError(
                    f"{name} has {len(value)} values but n_assets is {self.n_assets}; give "
                    "one float for all assets or exactly one value per asset"
                )
        persistence = self.garch_alpha + self.garch_beta + self.flow_lead
        if persistence >= 1.0:
            raise ValueError(
                f"garch_alpha + garch_beta + flow_lead = {persistence:.4f} must be < 1 for a "
                "stationary variance; lower one of them"
            )
        if self.jump_variance_share > 0.5:
            raise ValueError(
                f"jumps would carry {self.jump_variance_share:.0%} of the variance "
                "(jump_intensity_per_day * jump_size^2 must be <= 0.5); lower "
                "jump_intensity_per_day or jump_size"
            )
        correlation_matrix(self)  # raises if rho is not a valid correlation
        return self

    @property
    def bar(self) -> pd.Timedelta:
        """Bar length as a Timedelta."""
        return interval_to_timedelta(self.interval)

    @property
    def bars_per_day(self) -> int:
        """Bars in one day."""
        return int(_DAY / self.bar)

    @property
    def n_bars(self) -> int:
        """Bars per asset in the sample."""
        return self.days * self.bars_per_day

    @property
    def jump_variance_share(self) -> float:
        """Share of the long-run variance carried by jumps."""
        return self.jump_intensity_per_day * self.jump_size**2

    def asset_names(self) -> list[str]:
        """Asset names: explicit ones, or the real tickers cycled with a ``_k`` suffix."""
        if self.assets is not None:
            return list(self.assets)
        names = []
        for i in range(self.n_assets):
            cycle, base = divmod(i, len(DEFAULT_ASSETS))
            names.append(DEFAULT_ASSETS[base] + (f"_{cycle + 1}" if cycle else ""))
        return names


def generate_market(config: SyntheticMarketConfig) -> MarketData:
    """Simulate spot bars, perpetual bars and funding for ``config``.

    Parameters
    ----------
    config
        The full description of the run (see :class:`SyntheticMarketConfig`).

    Returns
    -------
    MarketData
        ``bars``: spot bars in the Bars contract, sorted by ``asset, ts``.
        ``perp``: perpetual bars (Bars columns plus ``funding_rate``, set on the bar opening at
        a funding settlement and NaN elsewhere, and ``open_interest`` in base units at the bar
        close). ``funding``: one row per asset and settlement time, the rate computed from
        the premium over the preceding funding interval. ``source`` is
        ``"synthetic(seed=S)"``.

    Examples
    --------
    >>> cfg = SyntheticMarketConfig(n_assets=3, days=30, seed=11, rho=0.5)
    >>> market = generate_market(cfg)
    >>> market.assets
    ['BNBUSDT', 'BTCUSDT', 'ETHUSDT']
    """
    n_bars, n_assets = config.n_bars, config.n_assets
    sigma = _per_asset(config.annual_vol, _DEFAULT_ANNUAL_VOL, n_assets) * math.sqrt(
        config.bar / _YEAR
    )
    price0 = _per_asset(config.base_prices, _DEFAULT_PRICE, n_assets)
    daily_quote = _per_asset(config.daily_quote_volume, _DEFAULT_DAILY_QUOTE_VOLUME, n_assets)
    chol = np.linalg.cholesky(correlation_matrix(config))
    ts = pd.date_range(pd.Timestamp(config.start), periods=n_bars, freq=config.bar)

    regime_mult = _regime_path(config, n_bars)
    z = _student_t_innovations(config, chol, n_bars)
    flow = _flow_shocks(config, z)
    g = _variance_path(config, z, flow)
    profile = _intraday_profile(config, ts)
    jumps = _jumps(config, chol, sigma, n_bars)
    calendar = _event_calendar(config)
    event_mult = _event_multiplier(config, ts, calendar)
    crowding = _crowding(config, n_bars)
    crowd_mult = _crowding_multiplier(config, crowding)

    # c normalises the diffusive part so that the long-run variance per bar is sigma^2.
    p_high = _stationary_high_share(config)
    mean_sq_mult = 1.0 - p_high + p_high * config.high_vol_multiplier**2
    mean_sq_mult *= _mean_event_multiplier(config)
    scale = math.sqrt((1.0 - config.jump_variance_share) / mean_sq_mult)
    cond_sd = (
        sigma
        * scale
        * (regime_mult * np.sqrt(event_mult) * profile)[:, None]
        * np.sqrt(g * crowd_mult)
    )
    log_open, offsets = _intrabar(cond_sd, z, jumps, config, np.log(price0))
    open_, high, low, close = (np.exp(log_open + o) for o in offsets)

    imbalance = config.imbalance_scale * np.tanh(flow)
    long_run_sd = sigma * math.sqrt(1.0 - config.jump_variance_share)
    quote_volume = _quote_volume(config, daily_quote, cond_sd / long_run_sd, z, profile)
    typical = (open_ + high + low + close) / 4.0  # inside [low, high] by construction
    bars = _bars_frame(
        ts,
        config.asset_names(),
        (open_, high, low, close),
        quote_volume,
        typical,
        imbalance,
        _trade_counts(config, quote_volume, "spot-trades"),
    )
    returns = offsets[3]
    perp, funding = _perpetual(
        config,
        ts,
        (open_, high, low, close),
        returns / sigma,
        quote_volume,
        imbalance,
        (price0, daily_quote),
        crowding,
    )
    return MarketData(
        bars=bars,
        funding=funding,
        perp=perp,
        positioning=_positioning(config, ts, perp, returns / sigma),
        events=calendar,
        interval=config.interval,
        source=f"synthetic(seed={config.seed})",
    )


def correlation_matrix(config: SyntheticMarketConfig) -> np.ndarray:
    """Return the ``n_assets x n_assets`` innovation correlation matrix of ``config``.

    Raises
    ------
    ValueError
        If ``rho`` does not define a valid (symmetric, unit-diagonal, positive definite)
        correlation matrix of the right size.
    """
    n = config.n_assets
    if isinstance(config.rho, float | int):
        rho = float(config.rho)
        lower = -1.0 / (n - 1) if n > 1 else -1.0
        if not lower < rho < 1.0:
            raise ValueError(
                f"rho={rho} gives no positive definite correlation matrix for {n} assets; "
                f"use {lower:.4f} < rho < 1"
            )
        return np.full((n, n), rho) + (1.0 - rho) * np.eye(n)
    matrix = np.asarray(config.rho, dtype=float)
    if matrix.shape != (n, n):
        raise ValueError(f"rho matrix has shape {matrix.shape}, expected ({n}, {n})")
    if not np.allclose(matrix, matrix.T) or not np.allclose(np.diag(matrix), 1.0):
        raise ValueError("rho matrix must be symmetric with a unit diagonal")
    if np.any(np.abs(matrix) > 1.0) or np.linalg.eigvalsh(matrix).min() <= 1e-10:
        raise ValueError("rho matrix must be positive definite with entries in [-1, 1]")
    return matrix


def _per_asset(value: PerAsset, defaults: tuple[float, ...], n_assets: int) -> np.ndarray:
    if value is None:
        return np.array([defaults[i % len(defaults)] for i in range(n_assets)])
    if isinstance(value, float | int):
        return np.full(n_assets, float(value))
    return np.asarray(value, dtype=float)


def _stationary_high_share(config: SyntheticMarketConfig) -> float:
    enter, leave = config.regime_p_enter_high, config.regime_p_exit_high
    return enter / (enter + leave)


def _rng(config: SyntheticMarketConfig, draw: str) -> np.random.Generator:
    """The random stream of one named draw.

    Every draw has its own stream, keyed by the seed and the draw's name, and fills its
    arrays bar by bar. So changing one component's parameters never reshuffles another's
    draws, and a shorter sample is exactly the prefix of a longer one with the same seed.
    """
    key = zlib.crc32(draw.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(key,)))


def _regime_path(config: SyntheticMarketConfig, n_bars: int) -> np.ndarray:
    """Volatility multiplier of the market-wide two-state Markov chain, per bar."""
    uniforms = _rng(config, "regime").random(n_bars)
    high = uniforms[0] < _stationary_high_share(config)  # start from the stationary law
    states = np.empty(n_bars, dtype=bool)
    enter, leave = config.regime_p_enter_high, config.regime_p_exit_high
    # The chain is inherently sequential; a scalar loop over bars is a few ms per year.
    for t in range(n_bars):
        if t:
            high = (uniforms[t] >= leave) if high else (uniforms[t] < enter)
        states[t] = high
    return np.where(states, config.high_vol_multiplier, 1.0)


def _student_t_innovations(
    config: SyntheticMarketConfig, chol: np.ndarray, n_bars: int
) -> np.ndarray:
    """Unit-variance multivariate Student-t draws with correlation ``chol @ chol.T``."""
    gauss = _rng(config, "innovations").standard_normal((n_bars, config.n_assets)) @ chol.T
    nu = config.student_t_df
    mixing = np.sqrt((nu - 2.0) / _rng(config, "t-mixing").chisquare(nu, size=n_bars))
    return gauss * mixing[:, None]


def _flow_shocks(config: SyntheticMarketConfig, z: np.ndarray) -> np.ndarray:
    """Order-flow shocks: unit variance, correlated with the same bar's innovation."""
    kappa = config.flow_return_corr
    return kappa * z + math.sqrt(1.0 - kappa**2) * _rng(config, "flow").standard_normal(z.shape)


def _variance_path(config: SyntheticMarketConfig, z: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Unit-mean GARCH-like variance ``g_t`` driven by past innovations and past order flow."""
    alpha, beta, lead = config.garch_alpha, config.garch_beta, config.flow_lead
    omega = 1.0 - alpha - beta - lead
    # g_t = a_t + b_t * g_{t-1}: precompute the coefficients, then one fused loop over bars.
    intercept = omega + lead * flow[:-1] ** 2
    slope = alpha * z[:-1] ** 2 + beta
    g = np.empty_like(z)
    g[0] = 1.0
    for t in range(1, len(g)):
        g[t] = intercept[t - 1] + slope[t - 1] * g[t - 1]
    return g


def _intraday_profile(config: SyntheticMarketConfig, ts: pd.DatetimeIndex) -> np.ndarray:
    """Volatility multiplier by time of day; its square averages to 1 over a day."""
    if config.bar >= _DAY:
        return np.ones(len(ts))
    mid_hour = ts.hour + ts.minute / 60.0 + config.bar / pd.Timedelta(hours=1) / 2.0
    phase = 2.0 * np.pi * (np.asarray(mid_hour) - 15.5) / 24.0
    return np.sqrt(1.0 + config.intraday_amplitude * np.cos(phase))


def _jumps(
    config: SyntheticMarketConfig,
    chol: np.ndarray,
    sigma: np.ndarray,
    n_bars: int,
) -> np.ndarray:
    """Market-wide Poisson jump arrivals with correlated normal sizes, in log-return units."""
    lam = config.jump_intensity_per_day / config.bars_per_day
    counts = _rng(config, "jump-arrivals").poisson(lam, size=n_bars)
    sizes = _rng(config, "jump-sizes").standard_normal((n_bars, config.n_assets)) @ chol.T
    daily_sigma = sigma * math.sqrt(config.bars_per_day)
    return sizes * np.sqrt(counts)[:, None] * config.jump_size * daily_sigma


def _intrabar(
    cond_sd: np.ndarray,
    z: np.ndarray,
    jumps: np.ndarray,
    config: SyntheticMarketConfig,
    log_price0: np.ndarray,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Log open per bar and the (open, high, low, close) offsets from it.

    The diffusive part of each bar is a Brownian bridge from 0 to ``cond_sd * z`` sampled at
    ``intrabar_steps`` points; a jump lands at a random sub-step. The extremes inside every
    sub-step come from the exact law of a Brownian bridge's maximum and minimum, so the bar
    range is not biased low by the discretisation.
    """
    n_bars, n_assets = z.shape
    k = config.intrabar_steps
    diffusive = cond_sd * z
    sub_sd = cond_sd / math.sqrt(k)
    steps = _rng(config, "bridge-steps").standard_normal((n_bars, n_assets, k))
    walk = np.cumsum(steps, axis=2) * sub_sd[..., None]
    frac = np.arange(1, k + 1) / k
    path = walk - walk[..., -1:] * frac + diffusive[..., None] * frac
    jump_at = _rng(config, "jump-position").integers(0, k, size=(n_bars, n_assets, 1))
    path = path + jumps[..., None] * (np.arange(k) >= jump_at)
    # Sub-step j runs from start[j] (previous point, plus the jump if it lands here) to path[j].
    previous = np.concatenate([np.zeros((n_bars, n_assets, 1)), path[..., :-1]], axis=2)
    start = previous + jumps[..., None] * (np.arange(k) == jump_at)
    drift = path - start
    var = (sub_sd**2)[..., None]
    # Inverse-CDF draws of a bridge's extremes: P(max > m) = exp(-2 m (m - d) / var).
    u_max = _rng(config, "bridge-max").random((n_bars, n_assets, k))
    u_min = _rng(config, "bridge-min").random((n_bars, n_assets, k))
    spread_max = np.sqrt(drift**2 - 2.0 * var * np.log1p(-u_max))
    spread_min = np.sqrt(drift**2 - 2.0 * var * np.log1p(-u_min))
    high = np.maximum((start + (drift + spread_max) / 2.0).max(axis=2), previous.max(axis=2))
    low = np.minimum((start + (drift - spread_min) / 2.0).min(axis=2), previous.min(axis=2))
    close = path[..., -1]
    log_open = log_price0 + np.vstack([np.zeros((1, n_assets)), np.cumsum(close, axis=0)[:-1]])
    return log_open, (np.zeros_like(close), high, low, close)


def _quote_volume(
    config: SyntheticMarketConfig,
    daily_quote: np.ndarray,
    vol_ratio: np.ndarray,
    z: np.ndarray,
    profile: np.ndarray,
) -> np.ndarray:
    """Quote volume: rises with conditional volatility, the bar's own move and the clock."""
    noise_sd = config.volume_noise_sd
    gauss = _rng(config, "volume").standard_normal(z.shape)
    noise = np.exp(noise_sd * gauss - 0.5 * noise_sd**2)
    own_move = 0.5 + 0.5 * np.abs(z) / _mean_abs_student_t(config.student_t_df)
    per_bar = daily_quote / config.bars_per_day
    return (
        per_bar * profile[:, None] ** 2 * vol_ratio**config.volume_vol_elasticity * own_move * noise
    )


def _trade_counts(config: SyntheticMarketConfig, quote_volume: np.ndarray, draw: str) -> np.ndarray:
    """Negative binomial trade counts with mean ``quote_volume / mean_trade_quote``, >= 1."""
    mean = quote_volume / config.mean_trade_quote
    k = config.trade_count_dispersion
    counts = _rng(config, draw).negative_binomial(k, k / (k + mean))
    return np.maximum(counts, 1).astype(np.int64)


def _bars_frame(
    ts: pd.DatetimeIndex,
    assets: list[str],
    ohlc: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    quote_volume: np.ndarray,
    typical_price: np.ndarray,
    imbalance: np.ndarray,
    trades: np.ndarray,
    extra: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Long Bars frame (plus ``extra`` columns) sorted by ``asset, ts`` from per-bar arrays.

    Every array has shape ``(n_bars, n_assets)``.
    """
    n_bars, n_assets = quote_volume.shape
    buy_share = (1.0 + imbalance) / 2.0
    volume = quote_volume / typical_price
    columns = {
        "ts": np.tile(ts.values, n_assets),
        "asset": np.repeat(np.asarray(assets, dtype=object), n_bars),
        "open": ohlc[0],
        "high": ohlc[1],
        "low": ohlc[2],
        "close": ohlc[3],
        "volume": volume,
        "quote_volume": quote_volume,
        "trades": trades,
        "taker_buy_volume": volume * buy_share,
        "taker_buy_quote_volume": quote_volume * buy_share,
        **(extra or {}),
    }
    # Column-major ravel turns (bar, asset) arrays into the asset-then-time long order.
    frame = pd.DataFrame(
        {k: v if k in ("ts", "asset") else np.ravel(v, order="F") for k, v in columns.items()}
    )
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[ns, UTC]")
    frame["asset"] = frame["asset"].astype("string")
    frame["trades"] = frame["trades"].astype("int64")
    return _sorted(frame[[*REQUIRED_COLUMNS, *(extra or {})]])


def _perpetual(
    config: SyntheticMarketConfig,
    ts: pd.DatetimeIndex,
    spot_ohlc: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    standardised_returns: np.ndarray,
    spot_quote_volume: np.ndarray,
    spot_imbalance: np.ndarray,
    levels: tuple[np.ndarray, np.ndarray],
    crowding: np.ndarray,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Perpetual bars (spot path times exp(premium)) and the funding they imply.

    Crowding lifts the premium (so funding) and builds open interest.
    """
    n_bars, n_assets = spot_quote_volume.shape
    hours_per_bar = config.bar / pd.Timedelta(hours=1)
    phi = 0.5 ** (hours_per_bar / config.basis_half_life_hours)
    shocks = _rng(config, "basis").standard_normal((n_bars, n_assets))
    innovation = config.basis_sd * math.sqrt(1.0 - phi**2) * shocks
    innovation += config.basis_return_beta * np.log(spot_ohlc[3] / spot_ohlc[0])
    premium = _ar1(innovation, phi, config.basis_mean, config.basis_mean)
    premium = premium + config.crowding_basis * crowding
    premium_open = np.vstack([np.full((1, n_assets), config.basis_mean), premium[:-1]])
    open_ = spot_ohlc[0] * np.exp(premium_open)
    close = spot_ohlc[3] * np.exp(premium)
    high = spot_ohlc[1] * np.exp(np.maximum(premium_open, premium))
    low = spot_ohlc[2] * np.exp(np.minimum(premium_open, premium))

    ratio = config.perp_volume_ratio
    quote_volume = (
        spot_quote_volume
        * ratio
        * np.exp(0.2 * _rng(config, "perp-volume").standard_normal((n_bars, n_assets)) - 0.02)
    )
    imbalance = np.clip(
        spot_imbalance + 0.03 * _rng(config, "perp-flow").standard_normal((n_bars, n_assets)),
        -0.99,
        0.99,
    )
    trades = _trade_counts(config, quote_volume, "perp-trades")
    funding_ts, funding_rate, settle_rows = _funding(config, ts, premium)
    rate_on_bars = np.full((n_bars, n_assets), np.nan)
    rate_on_bars[settle_rows] = funding_rate
    price0, daily_quote = levels
    open_interest = _open_interest(config, price0, daily_quote, standardised_returns)
    open_interest = open_interest * np.exp(config.crowding_open_interest * crowding)
    perp = _bars_frame(
        ts,
        config.asset_names(),
        (open_, high, low, close),
        quote_volume,
        (open_ + high + low + close) / 4.0,
        imbalance,
        trades,
        extra={"funding_rate": rate_on_bars, "open_interest": open_interest},
    )
    funding = pd.DataFrame(
        {
            "ts": np.tile(funding_ts.values, n_assets),
            "asset": np.repeat(np.asarray(config.asset_names(), dtype=object), len(funding_ts)),
            "funding_rate": np.ravel(funding_rate, order="F"),
        }
    )
    funding["ts"] = pd.to_datetime(funding["ts"], utc=True).astype("datetime64[ns, UTC]")
    funding["asset"] = funding["asset"].astype("string")
    return perp, _sorted(funding[list(FUNDING_COLUMNS)])


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in the ``asset, ts`` order that :class:`MarketData` promises."""
    return frame.sort_values(["asset", "ts"], kind="stable").reset_index(drop=True)


def _funding(
    config: SyntheticMarketConfig, ts: pd.DatetimeIndex, premium: np.ndarray
) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """Binance-style funding at each settlement from the premium of the preceding interval.

    ``rate = clip(P + clamp(interest - P, +-0.05%), +-cap)`` with ``P`` the mean premium at the
    closes of the bars opening in ``[T - interval, T)``: known at ``T``, never before.
    """
    per_interval = int(pd.Timedelta(hours=config.funding_interval_hours) / config.bar)
    funding_step = pd.Timedelta(hours=config.funding_interval_hours)
    is_settlement = ((ts - pd.Timestamp(0, tz="UTC")) % funding_step) == pd.Timedelta(0)
    rows = np.flatnonzero(np.asarray(is_settlement) & (np.arange(len(ts)) >= per_interval))
    csum = np.vstack([np.zeros((1, premium.shape[1])), np.cumsum(premium, axis=0)])
    mean_premium = (csum[rows] - csum[rows - per_interval]) / per_interval
    clamp = np.clip(config.funding_interest - mean_premium, -_FUNDING_CLAMP, _FUNDING_CLAMP)
    rate = np.clip(mean_premium + clamp, -config.funding_cap, config.funding_cap)
    return ts[rows], rate, rows


def _open_interest(
    config: SyntheticMarketConfig,
    price0: np.ndarray,
    spot_daily_quote: np.ndarray,
    standardised_returns: np.ndarray,
) -> np.ndarray:
    """Open interest (base units) at each bar close: mean-reverting, shrinking in big moves.

    The long-run level is ``open_interest_ratio`` times the perpetual's mean daily quote
    volume, in base units at the starting price.
    """
    n_bars, n_assets = standardised_returns.shape
    perp_daily_quote = spot_daily_quote * config.perp_volume_ratio
    level = np.log(config.open_interest_ratio * perp_daily_quote / price0)
    phi = 0.5 ** (1.0 / (config.open_interest_half_life_days * config.bars_per_day))
    gauss = _rng(config, "open-interest").standard_normal((n_bars, n_assets))
    shocks = config.open_interest_sd * gauss
    shocks -= config.open_interest_vol_sensitivity * np.abs(standardised_returns)
    return np.exp(_ar1(shocks, phi, level, level))


def _mean_abs_student_t(nu: float) -> float:
    """``E|z|`` of a unit-variance Student-t with ``nu`` degrees of freedom."""
    log_ratio = math.lgamma((nu - 1.0) / 2.0) - math.lgamma(nu / 2.0)
    return math.sqrt((nu - 2.0) / math.pi) * math.exp(log_ratio)


def _ar1(
    innovation: np.ndarray, phi: float, mean: np.ndarray | float, x0: np.ndarray | float
) -> np.ndarray:
    """``x_t = mean + phi (x_{t-1} - mean) + innovation_t`` along axis 0, from ``x0``."""
    dev = np.empty_like(innovation)
    previous = np.broadcast_to(np.asarray(x0, dtype=float) - mean, innovation.shape[1:])
    # Sequential by nature; one vector step per bar is a few ms for a year of hourly bars.
    for t in range(len(innovation)):
        previous = phi * previous + innovation[t]
        dev[t] = previous
    return dev + mean


_EVENT_KINDS: Final[tuple[tuple[str, float, int], ...]] = (
    ("fomc", 1.5, 18),
    ("cpi", 1.0, 12),
    ("nfp", 1.0, 12),
)
"""Synthetic release kinds: name, boost relative to ``event_variance_boost``, UTC hour."""
_CALENDAR_AHEAD_DAYS: Final[int] = 35
_SCHEDULE_LEAD: Final[pd.Timedelta] = pd.Timedelta(days=180)
_CROWDING_LAG_HOURS: Final[int] = 6


def _event_calendar(config: SyntheticMarketConfig) -> pd.DataFrame:
    """The seeded macro calendar (:data:`features.market.EVENT_COLUMNS`).

    Each day draws whether a release happens, its kind, and whether it was scheduled; the
    calendar runs a month past the sample, since scheduled releases are known ahead. Drawn
    day by day, so a shorter sample's calendar is a prefix of a longer one's.
    """
    days = config.days + _CALENDAR_AHEAD_DAYS
    draws = _rng(config, "event-calendar").random((days, 3))
    happens = draws[:, 0] < config.event_rate_per_day
    kind = np.minimum((draws[:, 1] * len(_EVENT_KINDS)).astype(int), len(_EVENT_KINDS) - 1)
    scheduled = draws[:, 2] >= config.event_unscheduled_share
    first_day = pd.Timestamp(config.start).floor("D")
    rows = []
    for day in np.flatnonzero(happens):
        name, _boost, hour = _EVENT_KINDS[kind[day]]
        release = first_day + pd.Timedelta(days=int(day), hours=hour)
        known = release - _SCHEDULE_LEAD if scheduled[day] else release
        rows.append((name, release, bool(scheduled[day]), known, pd.NaT))
    frame = pd.DataFrame(
        rows, columns=["event", "release_utc", "scheduled", "known_from", "known_until"]
    )
    for column in ("release_utc", "known_from", "known_until"):
        frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[ns, UTC]")
    frame["event"] = frame["event"].astype("string")
    frame["scheduled"] = frame["scheduled"].astype(bool)
    return frame


def _event_multiplier(
    config: SyntheticMarketConfig, ts: pd.DatetimeIndex, calendar: pd.DataFrame
) -> np.ndarray:
    """Variance multiplier per bar: ``1 + sum A exp(-(bar open - release) / tau)``."""
    out = np.ones(len(ts))
    if not len(calendar) or config.event_variance_boost == 0:
        return out
    hours = (ts - ts[0]) / pd.Timedelta(hours=1)
    boosts = {name: boost for name, boost, _ in _EVENT_KINDS}
    for name, release in zip(calendar["event"], calendar["release_utc"], strict=True):
        since = np.asarray(hours) - (release - ts[0]) / pd.Timedelta(hours=1)
        after = since >= 0
        out[after] += (
            config.event_variance_boost
            * boosts[str(name)]
            * np.exp(-since[after] / config.event_decay_hours)
        )
    return out


def _mean_event_multiplier(config: SyntheticMarketConfig) -> float:
    """Long-run mean of the event multiplier, for the variance normalisation."""
    mean_boost = sum(b for _, b, _ in _EVENT_KINDS) / len(_EVENT_KINDS)
    per_bar = config.bar / pd.Timedelta(hours=1)
    decay = math.exp(-per_bar / config.event_decay_hours)
    events_per_bar = config.event_rate_per_day / config.bars_per_day
    return 1.0 + events_per_bar * config.event_variance_boost * mean_boost / (1.0 - decay)


def _crowding(config: SyntheticMarketConfig, n_bars: int) -> np.ndarray:
    """Unit-variance AR(1) crowding per asset, a share of it common to the market."""
    hours_per_bar = config.bar / pd.Timedelta(hours=1)
    phi = 0.5 ** (hours_per_bar / config.crowding_half_life_hours)
    gauss = _rng(config, "crowding").standard_normal((n_bars, config.n_assets + 1))
    share = config.crowding_common_share
    shocks = math.sqrt(share) * gauss[:, :1] + math.sqrt(1.0 - share) * gauss[:, 1:]
    return _ar1(math.sqrt(1.0 - phi**2) * shocks, phi, 0.0, 0.0)


def _crowding_multiplier(config: SyntheticMarketConfig, crowding: np.ndarray) -> np.ndarray:
    """``exp(gamma C(t - lag) - gamma^2 / 2)``: unit mean; crowding leads volatility."""
    lag = max(1, int(pd.Timedelta(hours=_CROWDING_LAG_HOURS) / config.bar))
    gamma = config.crowding_vol
    lagged = np.vstack([np.zeros((lag, crowding.shape[1])), crowding[:-lag]])[: len(crowding)]
    return np.exp(gamma * lagged - 0.5 * gamma**2)


def _positioning(
    config: SyntheticMarketConfig,
    ts: pd.DatetimeIndex,
    perp: pd.DataFrame,
    standardised_returns: np.ndarray,
) -> pd.DataFrame:
    """Daily open interest and liquidations, stamped at each day's close (when known).

    Liquidations follow adverse moves beyond one sigma, in proportion to open interest
    notional; longs on down moves, shorts on up moves. Only complete days are reported.
    """
    names = config.asset_names()
    n_bars, n_assets = standardised_returns.shape
    per_day = config.bars_per_day
    days = n_bars // per_day
    if days == 0:
        from features.market import empty_positioning

        return empty_positioning()
    close = perp.pivot(index="ts", columns="asset", values="close")[names].to_numpy()
    oi = perp.pivot(index="ts", columns="asset", values="open_interest")[names].to_numpy()
    notional = oi * close
    down = np.maximum(-standardised_returns - 1.0, 0.0)
    up = np.maximum(standardised_returns - 1.0, 0.0)
    noise = np.exp(0.3 * _rng(config, "liquidations").standard_normal((n_bars, n_assets, 2)))
    long_liq = config.liquidation_rate * notional * down * noise[..., 0]
    short_liq = config.liquidation_rate * notional * up * noise[..., 1]
    cut = days * per_day

    def daily(values: np.ndarray, how: str) -> np.ndarray:
        shaped = values[:cut].reshape(days, per_day, n_assets)
        return shaped.sum(axis=1) if how == "sum" else shaped[:, -1, :]

    known = ts[:cut:per_day] + pd.Timedelta(days=1)
    assets = np.arange(n_assets)
    frame = pd.DataFrame(
        {
            "ts": np.tile(known.values, n_assets),
            "asset": np.repeat(np.asarray(names, dtype=object), days),
            "open_interest": np.ravel(
                np.where(assets < config.positioning_oi_assets, daily(oi, "last"), np.nan),
                order="F",
            ),
            "long_liquidations_usd": np.ravel(
                np.where(
                    assets < config.positioning_liquidation_assets, daily(long_liq, "sum"), np.nan
                ),
                order="F",
            ),
            "short_liquidations_usd": np.ravel(
                np.where(
                    assets < config.positioning_liquidation_assets, daily(short_liq, "sum"), np.nan
                ),
                order="F",
            ),
        }
    )
    frame = frame.dropna(subset=["open_interest", "long_liquidations_usd"], how="all")
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[ns, UTC]")
    frame["asset"] = frame["asset"].astype("string")
    return _sorted(frame)
