"""Tests of the synthetic market: the Bars contract, determinism and the stylised facts."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from features.bars import FLOAT_COLUMNS, REQUIRED_COLUMNS
from features.market import FUNDING_COLUMNS, MarketData
from features.synthetic import DEFAULT_ASSETS, SyntheticMarketConfig, generate_market

# One year of hourly bars for three assets: long enough for the statistics below to be
# several standard errors away from their thresholds, and ~0.1 s to generate.
LONG = SyntheticMarketConfig(n_assets=3, days=365, seed=11)


@pytest.fixture(scope="module")
def market() -> MarketData:
    return generate_market(LONG)


def _log_returns(bars: pd.DataFrame) -> pd.DataFrame:
    """Close-to-close log returns, one column per asset."""
    wide = bars.pivot(index="ts", columns="asset", values="close")
    return np.log(wide).diff().iloc[1:]


def _imbalance(bars: pd.DataFrame) -> pd.DataFrame:
    frame = bars.assign(imb=2.0 * bars["taker_buy_volume"] / bars["volume"] - 1.0)
    return frame.pivot(index="ts", columns="asset", values="imb")


def assert_bars_contract(bars: pd.DataFrame, optional: tuple[str, ...] = ()) -> None:
    """Columns, dtypes, ordering, uniqueness and OHLC/volume consistency of a Bars frame."""
    assert list(bars.columns) == [*REQUIRED_COLUMNS, *optional]
    assert str(bars["ts"].dtype) == "datetime64[ns, UTC]"
    assert bars["asset"].dtype == "string"
    assert bars["trades"].dtype == np.int64
    for column in FLOAT_COLUMNS:
        assert bars[column].dtype == np.float64, column
        assert np.isfinite(bars[column]).all(), column
    assert not bars.duplicated(["ts", "asset"]).any()
    ordered = bars.sort_values(["asset", "ts"], kind="stable")
    assert ordered.index.equals(bars.index)
    assert (bars["low"] > 0).all()
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert (bars["volume"] > 0).all()
    assert (bars["taker_buy_volume"] <= bars["volume"]).all()
    assert (bars["taker_buy_quote_volume"] <= bars["quote_volume"]).all()
    assert (bars["trades"] >= 1).all()
    # The volume-weighted price of a bar lies within its range.
    vwap = bars["quote_volume"] / bars["volume"]
    assert (vwap <= bars["high"] * (1 + 1e-12)).all()
    assert (vwap >= bars["low"] * (1 - 1e-12)).all()


def test_spot_bars_follow_the_bars_contract(market: MarketData) -> None:
    bars = market.bars
    assert_bars_contract(bars)
    assert len(bars) == 3 * 365 * 24
    assert market.assets == sorted(DEFAULT_ASSETS[:3])
    assert market.interval == "1h"
    assert market.source == "synthetic(seed=11)"
    first = bars.groupby("asset")["ts"].min()
    assert (first == pd.Timestamp("2024-01-01", tz="UTC")).all()
    steps = bars.groupby("asset")["ts"].diff().dropna()
    assert (steps == pd.Timedelta(hours=1)).all()


def test_next_open_is_previous_close(market: MarketData) -> None:
    for _, group in market.bars.groupby("asset"):
        np.testing.assert_allclose(group["open"].iloc[1:], group["close"].iloc[:-1], rtol=1e-12)


def test_perp_bars_and_funding_follow_their_contracts(market: MarketData) -> None:
    perp, funding = market.perp, market.funding
    assert_bars_contract(perp, optional=("funding_rate", "open_interest"))
    assert list(funding.columns) == list(FUNDING_COLUMNS)
    assert str(funding["ts"].dtype) == "datetime64[ns, UTC]"
    assert funding["asset"].dtype == "string"
    assert (funding["ts"].dt.hour % 8 == 0).all() and (funding["ts"].dt.minute == 0).all()
    assert funding["funding_rate"].abs().max() <= LONG.funding_cap
    assert len(funding) == 3 * (365 * 3 - 1)  # every 8h, after a first full interval
    assert (perp["open_interest"] > 0).all()
    # The perp's funding_rate column carries the settled rate on settlement bars only.
    on_bars = perp.dropna(subset=["funding_rate"])[list(FUNDING_COLUMNS)]
    pd.testing.assert_frame_equal(on_bars.reset_index(drop=True), funding)
    # The perp is the spot path plus a small premium.
    basis = np.log(perp["close"].to_numpy() / market.bars["close"].to_numpy())
    assert np.abs(basis).max() < 0.02
    assert abs(np.median(basis) - LONG.basis_mean) < 5e-4


def test_same_config_gives_identical_frames() -> None:
    config = SyntheticMarketConfig(n_assets=4, days=20, seed=5)
    first, second = generate_market(config), generate_market(config.model_copy())
    pd.testing.assert_frame_equal(first.bars, second.bars)
    pd.testing.assert_frame_equal(first.perp, second.perp)
    pd.testing.assert_frame_equal(first.funding, second.funding)
    pd.testing.assert_frame_equal(first.positioning, second.positioning)
    pd.testing.assert_frame_equal(first.events, second.events)
    other = generate_market(config.model_copy(update={"seed": 6}))
    assert not np.allclose(other.bars["close"], first.bars["close"])


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32), days=st.integers(1, 4), extra=st.integers(1, 4))
def test_a_shorter_sample_is_a_prefix_of_a_longer_one(seed: int, days: int, extra: int) -> None:
    """Each draw fills bar by bar from its own stream, so history never depends on the future."""
    short = generate_market(SyntheticMarketConfig(n_assets=3, days=days, seed=seed))
    long = generate_market(SyntheticMarketConfig(n_assets=3, days=days + extra, seed=seed))
    end = short.bars["ts"].max()
    for name in ("bars", "perp", "funding"):
        expected = getattr(long, name)
        expected = expected[expected["ts"] <= end].reset_index(drop=True)
        pd.testing.assert_frame_equal(getattr(short, name), expected, check_exact=True)
    # Daily positioning of the complete days, and the calendar up to the short one's horizon.
    known = long.positioning[long.positioning["ts"] <= end + pd.Timedelta(hours=1)]
    pd.testing.assert_frame_equal(short.positioning, known.reset_index(drop=True))
    horizon = short.events["release_utc"].max() if len(short.events) else end
    calendar = long.events[long.events["release_utc"] <= horizon].reset_index(drop=True)
    pd.testing.assert_frame_equal(short.events, calendar)


def test_scheduled_releases_lift_volatility_in_the_hours_after_them(market: MarketData) -> None:
    calendar = market.events
    assert calendar["scheduled"].mean() > 0.8 and (~calendar["scheduled"]).any()
    unscheduled = calendar[~calendar["scheduled"]]
    assert (unscheduled["known_from"] == unscheduled["release_utc"]).all()
    returns = _log_returns(market.bars)
    squared = (returns**2).mean(axis=1)
    releases = set(calendar["release_utc"])
    after = squared.index.isin(list(releases))
    ratio = squared[after].mean() / squared[~after].mean()
    assert ratio > 3.0, f"release-bar variance only {ratio:.2f}x the rest"


def test_funding_stress_leads_volatility(market: MarketData) -> None:
    """High funding now predicts higher realized variance over the next day."""
    returns = _log_returns(market.bars)
    funding = market.funding.pivot(index="ts", columns="asset", values="funding_rate")
    ahead = (returns**2)[::-1].rolling(24, min_periods=20).sum()[::-1].shift(-1)
    ratios = []
    for asset in funding.columns:
        f = funding[asset].dropna()
        rv = ahead[asset].reindex(f.index)
        high, low = rv[f >= f.quantile(0.8)].mean(), rv[f <= f.quantile(0.2)].mean()
        ratios.append(high / low)
    assert min(ratios) > 1.2 and np.mean(ratios) > 2.0, ratios


def test_positioning_mirrors_the_real_coverage_and_is_stamped_at_the_days_close(
    market: MarketData,
) -> None:
    positioning = market.positioning
    assert (positioning["ts"].dt.hour == 0).all()
    assert positioning["ts"].min() == market.bars["ts"].min() + pd.Timedelta(days=1)
    names = LONG.asset_names()
    with_oi = positioning.dropna(subset=["open_interest"])["asset"].unique()
    assert sorted(with_oi) == sorted(names[: LONG.positioning_oi_assets])
    liquidations = positioning.groupby("asset")["long_liquidations_usd"].sum()
    assert (liquidations > 0).all()


def test_absolute_returns_cluster_over_lags_1_to_24(market: MarketData) -> None:
    absolute = _log_returns(market.bars).abs()
    for lag in range(1, 25):
        acf = float(np.mean([absolute[c].autocorr(lag) for c in absolute]))
        assert acf > 0.03, f"mean |r| autocorrelation at lag {lag} is {acf:.3f}"


def test_returns_have_fat_tails(market: MarketData) -> None:
    kurtosis = _log_returns(market.bars).kurt()
    assert (kurtosis > 1.0).all(), kurtosis.to_dict()


def test_long_run_volatility_matches_config() -> None:
    config = SyntheticMarketConfig(n_assets=3, days=730, seed=2, annual_vol=(0.4, 0.8, 1.2))
    bars = generate_market(config).bars
    returns = _log_returns(bars)[config.asset_names()]
    realised = returns.std() * np.sqrt(365 * 24)
    np.testing.assert_allclose(realised, [0.4, 0.8, 1.2], rtol=0.25)


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.6, 0.85])
def test_configured_equicorrelation_is_recovered(rho: float) -> None:
    bars = generate_market(SyntheticMarketConfig(n_assets=4, days=365, seed=3, rho=rho)).bars
    corr = _log_returns(bars).corr().to_numpy()
    off_diagonal = corr[~np.eye(4, dtype=bool)]
    assert np.all(np.abs(off_diagonal - rho) < 0.1), off_diagonal


def test_configured_correlation_matrix_is_recovered() -> None:
    target = ((1.0, 0.8, -0.3), (0.8, 1.0, -0.1), (-0.3, -0.1, 1.0))
    config = SyntheticMarketConfig(n_assets=3, days=365, seed=4, rho=target)
    corr = _log_returns(generate_market(config).bars)[config.asset_names()].corr()
    np.testing.assert_allclose(corr.to_numpy(), np.array(target), atol=0.1)


def _lead_correlation(config: SyntheticMarketConfig) -> float:
    bars = generate_market(config).bars
    returns, imbalance = _log_returns(bars), _imbalance(bars).iloc[1:]
    next_abs = returns.abs().shift(-1)
    pooled = pd.DataFrame({"imb": imbalance.abs().stack(), "next": next_abs.stack()}).dropna()
    return float(pooled["imb"].corr(pooled["next"], method="spearman"))


def test_order_flow_imbalance_leads_absolute_returns() -> None:
    with_lead = _lead_correlation(SyntheticMarketConfig(n_assets=4, days=365, seed=8))
    without = _lead_correlation(
        SyntheticMarketConfig(n_assets=4, days=365, seed=8, flow_lead=0.0, garch_beta=0.94)
    )
    # ~35k pairs: the standard error of a rank correlation is ~0.005.
    assert with_lead > 0.03
    assert with_lead - without > 0.025, (with_lead, without)


def test_trade_counts_scale_with_volume(market: MarketData) -> None:
    bars = market.bars
    expected = bars["quote_volume"] / LONG.mean_trade_quote
    assert np.corrcoef(np.log(bars["trades"]), np.log(expected))[0, 1] > 0.8
    assert bars["trades"].sum() / expected.sum() == pytest.approx(1.0, rel=0.02)


def test_volume_and_volatility_follow_the_intraday_profile(market: MarketData) -> None:
    bars = market.bars.assign(absret=np.log(market.bars["close"] / market.bars["open"]).abs())
    by_hour = bars.groupby(bars["ts"].dt.hour)[["absret", "quote_volume"]].mean()
    assert by_hour.loc[15, "absret"] > 1.3 * by_hour.loc[3, "absret"]
    assert by_hour.loc[15, "quote_volume"] > 1.5 * by_hour.loc[3, "quote_volume"]


def test_wicks_make_parkinson_unbiased_without_jumps() -> None:
    config = SyntheticMarketConfig(n_assets=3, days=365, seed=1, jump_intensity_per_day=0.0)
    bars = generate_market(config).bars
    parkinson = np.mean(np.log(bars["high"] / bars["low"]) ** 2) / (4 * np.log(2))
    close_to_close = np.mean(np.log(bars["close"] / bars["open"]) ** 2)
    assert parkinson / close_to_close == pytest.approx(1.0, abs=0.1)


def test_more_than_ten_assets_get_unique_cycled_names() -> None:
    config = SyntheticMarketConfig(n_assets=12, days=1, seed=0)
    names = config.asset_names()
    assert names[:10] == list(DEFAULT_ASSETS)
    assert names[10:] == ["BTCUSDT_2", "ETHUSDT_2"]
    assert sorted(generate_market(config).assets) == sorted(names)


def test_naive_start_means_utc_and_other_intervals_work() -> None:
    config = SyntheticMarketConfig(
        n_assets=2, days=2, seed=0, interval="4h", start=datetime(2023, 5, 1, 8)
    )
    market = generate_market(config)
    assert_bars_contract(market.bars)
    assert market.bars["ts"].iloc[0] == pd.Timestamp("2023-05-01 08:00", tz="UTC")
    assert len(market.bars) == 2 * 2 * 6


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"rho": -0.5, "n_assets": 4}, "no positive definite correlation"),
        ({"rho": ((1.0, 0.9), (0.9, 1.0)), "n_assets": 3}, "shape"),
        ({"rho": ((1.0, 0.5), (0.4, 1.0)), "n_assets": 2}, "symmetric"),
        (
            {"rho": ((1.0, 0.9, 0.9), (0.9, 1.0, -0.9), (0.9, -0.9, 1.0)), "n_assets": 3},
            "positive definite",
        ),
        ({"garch_alpha": 0.1, "garch_beta": 0.85, "flow_lead": 0.1}, "stationary"),
        ({"assets": ("A", "B"), "n_assets": 3}, "one name per asset"),
        ({"assets": ("A", "A"), "n_assets": 2}, "unique"),
        ({"annual_vol": (0.5, 0.6), "n_assets": 3}, "exactly one value per asset"),
        ({"base_prices": -1.0}, "finite and > 0"),
        ({"interval": "7x"}, "not of the form"),
        ({"interval": "3h"}, "must divide the funding interval"),
        ({"start": datetime(2024, 1, 1, 0, 30, tzinfo=UTC)}, "not aligned"),
        ({"jump_intensity_per_day": 1.0, "jump_size": 1.0}, "jumps would carry"),
        ({"student_t_df": 2.0}, "greater than 2"),
        ({"n_asets": 3}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_configs_fail_with_a_clear_message(overrides: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SyntheticMarketConfig(**overrides)


def test_config_is_frozen() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        LONG.seed = 3  # type: ignore[misc]


@settings(max_examples=25, deadline=None)
@given(
    n_assets=st.integers(1, 4),
    days=st.integers(1, 4),
    seed=st.integers(0, 2**32),
    rho=st.floats(-0.3, 0.95),
    df=st.floats(2.5, 30.0),
    steps=st.integers(1, 16),
    jumps=st.floats(0.0, 0.3),
)
def test_contract_holds_for_any_valid_config(
    n_assets: int, days: int, seed: int, rho: float, df: float, steps: int, jumps: float
) -> None:
    config = SyntheticMarketConfig(
        n_assets=n_assets,
        days=days,
        seed=seed,
        rho=max(rho, -0.9 / max(n_assets - 1, 1)),
        student_t_df=df,
        intrabar_steps=steps,
        jump_intensity_per_day=jumps,
    )
    market = generate_market(config)
    assert_bars_contract(market.bars)
    assert_bars_contract(market.perp, optional=("funding_rate", "open_interest"))
    assert len(market.bars) == n_assets * days * 24
    assert (market.funding["funding_rate"].abs() <= config.funding_cap).all()
