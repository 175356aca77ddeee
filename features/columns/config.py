"""The windows and parameters of the feature set (:class:`FeatureConfig`), validated."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from features.errors import MarketDataError

__all__ = ["FeatureConfig", "FeatureConfigError"]


class FeatureConfigError(MarketDataError, ValueError):
    """A :class:`FeatureConfig` that cannot describe a feature set (bad window, fraction)."""


@dataclass(frozen=True)
class FeatureConfig:
    """Windows and parameters of the feature set; part of the feature-set hash.

    Windows are in hours and must be whole multiples of the bar interval; lags and EWMA
    warm-up are in bars.

    Attributes
    ----------
    rv_windows_hours
        Realized-variance windows (``rv_<h>h``).
    har_windows_hours
        Daily, weekly and monthly HAR windows; ``har_*`` is the window's RV divided by its
        number of days-of-``har_windows_hours[0]`` (``har_w = RV_168h / 7``).
    range_windows_hours
        Windows of the Parkinson, Garman-Klass, Rogers-Satchell and Yang-Zhang variances.
    jump_window_hours
        Window of bipower variation, jump variation, semivariances and quarticity.
    ewma_lambda, ewma_min_bars
        RiskMetrics decay; the number of returns seen before ``ewma_var`` is reported, and
        the longest run of missing returns it is held over.
    flow_window_hours
        Short order-flow window (imbalance, CVD, Amihud, trade size, Corwin-Schultz, VPIN).
    flow_long_window_hours
        Long order-flow window (Kyle's lambda, Roll, trade-count baseline, VPIN sigma,
        CVD normaliser).
    cross_window_hours
        Window of betas and correlations to BTC and to the market index.
    spillover_lags_bars
        Lags of BTC and ETH log RV offered to every asset.
    min_valid_fraction
        A window needs at least ``ceil(fraction * n)`` valid observations, else NaN.
    min_dispersion_assets
        Cross-sectional dispersion needs at least this many assets at the bar.
    funding_max_age_hours
        A funding event older than this at the bar close is stale: NaN, not carried on.
    btc_asset, eth_asset
        Reference assets for beta/correlation and spillover (``"BTC"`` matches
        ``"BTCUSDT"``); absent ones give NaN columns.
    flow_scale
        Quote-currency unit of flow features (1e6: millions).
    """

    rv_windows_hours: tuple[int, ...] = (24, 168, 720)
    har_windows_hours: tuple[int, int, int] = (24, 168, 720)
    range_windows_hours: tuple[int, ...] = (24, 168)
    jump_window_hours: int = 24
    ewma_lambda: float = 0.94
    ewma_min_bars: int = 24
    flow_window_hours: int = 24
    flow_long_window_hours: int = 168
    cross_window_hours: int = 168
    spillover_lags_bars: tuple[int, ...] = (1, 24)
    min_valid_fraction: float = 0.8
    min_dispersion_assets: int = 3
    funding_max_age_hours: int = 24
    btc_asset: str = "BTCUSDT"
    eth_asset: str = "ETHUSDT"
    flow_scale: float = 1e6

    def __post_init__(self) -> None:
        windows = {
            "rv_windows_hours": self.rv_windows_hours,
            "har_windows_hours": self.har_windows_hours,
            "range_windows_hours": self.range_windows_hours,
            "jump_window_hours": (self.jump_window_hours,),
            "flow_window_hours": (self.flow_window_hours,),
            "flow_long_window_hours": (self.flow_long_window_hours,),
            "cross_window_hours": (self.cross_window_hours,),
            "funding_max_age_hours": (self.funding_max_age_hours,),
        }
        for name, values in windows.items():
            if not values or any(int(v) != v or v <= 0 for v in values):
                raise FeatureConfigError(f"{name} must be positive whole hours, got {values}")
        if len(self.har_windows_hours) != 3 or list(self.har_windows_hours) != sorted(
            set(self.har_windows_hours)
        ):
            raise FeatureConfigError(
                f"har_windows_hours must be three increasing windows (day, week, month), "
                f"got {self.har_windows_hours}"
            )
        if any(int(lag) != lag or lag < 1 for lag in self.spillover_lags_bars):
            raise FeatureConfigError(
                f"spillover_lags_bars must be whole bars >= 1, got {self.spillover_lags_bars}"
            )
        if not 0.0 < self.min_valid_fraction <= 1.0:
            raise FeatureConfigError(
                f"min_valid_fraction must be in (0, 1], got {self.min_valid_fraction}"
            )
        if not 0.0 < self.ewma_lambda < 1.0:
            raise FeatureConfigError(f"ewma_lambda must be in (0, 1), got {self.ewma_lambda}")
        if self.ewma_min_bars < 1 or self.min_dispersion_assets < 2 or self.flow_scale <= 0:
            raise FeatureConfigError(
                "ewma_min_bars must be >= 1, min_dispersion_assets >= 2 and flow_scale > 0"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples as lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
