"""What the column builders read: one asset's raw inputs and the cross-sectional context."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from features.market import empty_events, empty_positioning

__all__ = ["AssetInputs", "MarketContext"]


@dataclass(frozen=True)
class AssetInputs:
    """Everything stage 1 needs about one asset (a unit of parallel work).

    ``positioning`` holds the asset's rows of :attr:`features.market.MarketData.positioning`
    and ``events`` the market-wide macro calendar; both are empty when the source has none.
    """

    asset: str
    bars: pd.DataFrame
    funding: pd.DataFrame
    perp: pd.DataFrame
    positioning: pd.DataFrame = field(default_factory=empty_positioning)
    events: pd.DataFrame = field(default_factory=empty_events)


@dataclass(frozen=True)
class MarketContext:
    """Cross-sectional inputs shared by every asset in stage 3.

    Attributes
    ----------
    ret
        Wide bar returns, index ``ts`` (union of the asset grids), one column per asset.
    log_rv
        Wide log daily realized variance (``log(rv_<d>h)``), same layout.
    market_ret, market_log_rv
        Equal-weight mean across assets of ``ret`` and of ``log_rv`` at each time.
    ret_dispersion, log_rv_dispersion
        Cross-sectional standard deviations (NaN below ``min_dispersion_assets``).
    vol_rank
        Each asset's rank of ``log_rv`` at each time, scaled to [0, 1].
    btc_asset, eth_asset
        Resolved reference asset names, or ``None`` when absent from the market.
    """

    ret: pd.DataFrame
    log_rv: pd.DataFrame
    market_ret: pd.Series
    market_log_rv: pd.Series
    ret_dispersion: pd.Series
    log_rv_dispersion: pd.Series
    vol_rank: pd.DataFrame
    btc_asset: str | None
    eth_asset: str | None
