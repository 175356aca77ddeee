"""Small synthetic panels shared by the forecasting tests (built once per session)."""

from __future__ import annotations

import pandas as pd
import pytest

from features.build import build_features
from features.market import MarketData
from features.synthetic import SyntheticMarketConfig, generate_market


@pytest.fixture(scope="session")
def synthetic_market() -> MarketData:
    """Two assets, 240 days of hourly bars from 2024-01-01 (GARCH-like, regime switching)."""
    return generate_market(SyntheticMarketConfig(n_assets=2, days=240, seed=3))


@pytest.fixture(scope="session")
def synthetic_features(synthetic_market: MarketData) -> pd.DataFrame:
    """The feature frame of :func:`synthetic_market`."""
    return build_features(synthetic_market).frame
