"""Parameters of option portfolio margin and Greek limits, validated, with their defaults."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from liquidation.errors import ConfigError


@dataclass(frozen=True)
class OptionsMarginConfig:
    """Option portfolio margin: a joint price x implied-vol grid plus a short-option minimum.

    Parameters
    ----------
    price_levels : tuple of float
        Price moves in units of each underlying's horizon sigma (the published sigma times
        the margin multiplier, floored by the stress sigma) along each joint direction of the
        correlation matrix (as perpetual portfolio margin, :mod:`liquidation.portfolio`).
        The default adds +/-5 sigma "extreme" moves (SPAN's extreme scenarios) because short
        options lose convexly in the tails.
    vol_levels : tuple of float
        Implied-vol shocks in units of ``vol_shock_scale * sigma_annual``, where
        ``sigma_annual`` is the published forecast annualised: the forecast now drives vega
        risk as well as delta and gamma risk.
    vol_shock_scale : float
        Vol shock per unit level as a fraction of the annualised forecast (0.25: a 60%
        forecast gives +/-15 vol points).
    min_vol : float
        Floor of a shocked implied vol (0.01).
    short_option_minimum : float
        Deribit/SPAN short-option minimum: maintenance is at least this fraction of the
        underlying notional of every short option (0.01), so deep out-of-the-money shorts,
        whose grid loss is near zero, still carry margin.
    option_vol_spread : float
        Close-out cost of an option per unit of vega (0.005, half a vol point); its delta is
        charged the underlying's liquidity cost from the snapshot, like a perpetual.
    initial_factor : float
        Initial margin = ``initial_factor`` x maintenance (1.3, as Deribit portfolio margin).
    """

    price_levels: tuple[float, ...] = (-5.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 5.0)
    vol_levels: tuple[float, ...] = (-1.0, 0.0, 1.0)
    vol_shock_scale: float = 0.25
    min_vol: float = 0.01
    short_option_minimum: float = 0.01
    option_vol_spread: float = 0.005
    initial_factor: float = 1.3

    def __post_init__(self) -> None:
        values = (*self.price_levels, *self.vol_levels, self.vol_shock_scale, self.min_vol)
        _check(all(math.isfinite(v) for v in values), "OptionsMarginConfig: values finite")
        # The unmoved scenario keeps every position's own worst loss >= its close-out cost,
        # which the scan's sum-of-parts bound relies on.
        _check(0.0 in self.price_levels, "OptionsMarginConfig.price_levels must include 0")
        _check(0.0 in self.vol_levels, "OptionsMarginConfig.vol_levels must include 0")
        _check(self.vol_shock_scale >= 0, "OptionsMarginConfig.vol_shock_scale must be >= 0")
        _check(0 < self.min_vol < 1, "OptionsMarginConfig.min_vol in (0, 1)")
        _check(0 <= self.short_option_minimum < 1, "short_option_minimum in [0, 1)")
        _check(0 <= self.option_vol_spread < 1, "option_vol_spread in [0, 1)")
        _check(self.initial_factor >= 1, "OptionsMarginConfig.initial_factor must be >= 1")


@dataclass(frozen=True)
class GreekLimits:
    """Limits on an account's net Greeks per underlying (USD); ``inf`` disables one.

    Parameters
    ----------
    delta_usd : float
        ``|sum q * delta * F|`` plus the perpetual notional (5 000 000 USD).
    gamma_usd : float
        Dollar gamma per 1% move, ``|sum q * gamma * F^2 / 100|`` (250 000 USD).
    vega_usd : float
        ``|sum q * vega / 100|`` per vol point (100 000 USD).
    step_fraction : float
        Largest fraction of one position closed by one step of a Greek-limit deleveraging
        (0.2, the waterfall's partial step).
    """

    delta_usd: float = 5e6
    gamma_usd: float = 2.5e5
    vega_usd: float = 1e5
    step_fraction: float = 0.2

    def __post_init__(self) -> None:
        _check(
            self.delta_usd > 0 and self.gamma_usd > 0 and self.vega_usd > 0,
            "GreekLimits must be > 0 (use math.inf to disable one)",
        )
        _check(0 < self.step_fraction <= 1, "GreekLimits.step_fraction in (0, 1]")


@dataclass(frozen=True)
class OptionsConfig:
    """Everything the options ledger needs besides the engine's own configuration."""

    margin: OptionsMarginConfig = field(default_factory=OptionsMarginConfig)
    limits: GreekLimits = field(default_factory=GreekLimits)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
