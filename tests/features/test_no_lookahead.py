"""No look-ahead, proven by truncation: every feature row is a function of the past only.

For a cut time ``c`` the information set is every bar that has closed by ``c``
(``ts + interval <= c``), every funding event stamped at or before ``c``, every perp bar
closed by ``c``, every positioning row known by ``c`` (stamped at its day's close) and every
calendar row known by ``c`` (a scheduled release long before it happens, an unscheduled one
from its release; a withdrawal only once it is known). Rebuilding all features on that
information alone must reproduce every row of the full build at or before the cut, within
1e-12 (relative, NaN positions equal).
The markets are hand-built with gaps, staggered listings, assets without funding or perp,
and a funding event stamped exactly on a bar close.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build import FeatureConfig, build_features
from features.market import EVENT_COLUMNS, POSITIONING_COLUMNS, MarketData

STEP = pd.Timedelta("1h")
START = pd.Timestamp("2024-03-01", tz="UTC")
ASSETS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")

# Short windows so that every column has values within a few hundred bars.
SMALL = FeatureConfig(
    rv_windows_hours=(4, 12, 24),
    har_windows_hours=(4, 12, 24),
    range_windows_hours=(4, 12),
    jump_window_hours=6,
    ewma_min_bars=4,
    flow_window_hours=4,
    flow_long_window_hours=12,
    cross_window_hours=12,
    spillover_lags_bars=(1, 3),
    funding_max_age_hours=16,
    min_dispersion_assets=2,
)


def random_market(seed: int, n_bars: int, n_assets: int = 4) -> MarketData:
    """Random-walk bars with gaps; funding for BTC and ETH only, a perp for BTC only."""
    rng = np.random.default_rng(seed)
    bars, funding, perp = [], [], []
    for i, asset in enumerate(ASSETS[:n_assets]):
        offset = 7 * i  # staggered listings
        n = n_bars - offset
        ts = START + STEP * (offset + np.arange(n))
        sigma = 0.01 * np.exp(0.3 * rng.standard_normal(n))
        log_close = np.log(100.0 * (i + 1)) + np.cumsum(sigma * rng.standard_normal(n))
        close = np.exp(log_close)
        open_ = np.concatenate([[close[0]], close[:-1]]) * np.exp(1e-4 * rng.standard_normal(n))
        high = np.maximum(open_, close) * np.exp(np.abs(sigma * rng.standard_normal(n)))
        low = np.minimum(open_, close) * np.exp(-np.abs(sigma * rng.standard_normal(n)))
        volume = rng.lognormal(3.0, 0.5, n)
        taker = volume * rng.uniform(0.2, 0.8, n)
        frame = pd.DataFrame(
            {
                "ts": ts,
                "asset": asset,
                "open": open_,
                "high": high,
                "low": low,
                "close": close,
                "volume": volume,
                "quote_volume": volume * close,
                "trades": rng.poisson(200, n).astype("int64"),
                "taker_buy_volume": taker,
                "taker_buy_quote_volume": taker * close,
            }
        )
        keep = rng.random(n) > 0.04
        keep[n // 3 : n // 3 + 9] = False  # one long outage
        bars.append(frame[keep])
        if asset in ("BTCUSDT", "ETHUSDT"):
            # 8-hourly events; one stamped 1 ms late, so it belongs to the next bar.
            times = pd.date_range(START, ts[-1] + 8 * STEP, freq="8h").to_series()
            times.iloc[len(times) // 2] += pd.Timedelta("1ms")
            funding.append(
                pd.DataFrame(
                    {
                        "ts": times.to_numpy(),
                        "asset": asset,
                        "funding_rate": rng.normal(1e-4, 2e-4, len(times)),
                    }
                )
            )
        if asset == "BTCUSDT":
            p = frame.assign(close=close * np.exp(rng.normal(3e-4, 2e-4, n)))
            perp.append(p[rng.random(n) > 0.05])
    bars_frame = pd.concat(bars, ignore_index=True)
    bars_frame["asset"] = bars_frame["asset"].astype("string")
    end = bars_frame["ts"].max() + STEP
    funding_frame = pd.concat(funding, ignore_index=True)
    funding_frame["ts"] = pd.to_datetime(funding_frame["ts"], utc=True)
    funding_frame["asset"] = funding_frame["asset"].astype("string")
    return MarketData(
        bars=bars_frame,
        funding=funding_frame,
        perp=pd.concat(perp, ignore_index=True),
        positioning=random_positioning(rng, end),
        events=random_calendar(rng, end),
        interval="1h",
        source=f"test(seed={seed})",
    )


def random_positioning(rng: np.random.Generator, end: pd.Timestamp) -> pd.DataFrame:
    """Daily rows stamped at each day's close from 40 days before START: liquidations for
    BTC and ETH, open interest for BTC only, one BTC day missing."""
    days = pd.date_range(START - pd.Timedelta(days=40), end, freq="1D") + pd.Timedelta(days=1)
    frames = []
    for asset in ("BTCUSDT", "ETHUSDT"):
        n = len(days)
        oi = np.exp(10 + np.cumsum(rng.normal(0, 0.03, n))) if asset == "BTCUSDT" else np.nan
        frame = pd.DataFrame(
            {
                "ts": days,
                "asset": asset,
                "open_interest": oi,
                "long_liquidations_usd": rng.lognormal(16, 1, n),
                "short_liquidations_usd": rng.lognormal(16, 1, n),
            }
        )
        frames.append(frame.drop(index=n // 2) if asset == "BTCUSDT" else frame)
    out = pd.concat(frames, ignore_index=True)
    out["asset"] = out["asset"].astype("string")
    return out[list(POSITIONING_COLUMNS)]


def random_calendar(rng: np.random.Generator, end: pd.Timestamp) -> pd.DataFrame:
    """Releases every 1-3 days from before START to beyond the data: mostly scheduled (known
    30 days ahead), some unscheduled (known at release), one cancelled two days ahead."""
    release = START - pd.Timedelta(days=3)
    rows = []
    while release < end + pd.Timedelta(days=10):
        release += pd.Timedelta(hours=int(rng.integers(20, 72)), minutes=int(rng.choice([0, 30])))
        scheduled = bool(rng.random() > 0.2)
        known_from = release - pd.Timedelta(days=30) if scheduled else release
        rows.append(
            ("fomc" if rng.random() < 0.3 else "cpi", release, scheduled, known_from, pd.NaT)
        )
    cancelled = rows[len(rows) // 3][1] + pd.Timedelta(hours=5)
    rows.append(
        (
            "nfp",
            cancelled,
            True,
            cancelled - pd.Timedelta(days=30),
            cancelled - pd.Timedelta(days=2),
        )
    )
    frame = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
    for column in ("release_utc", "known_from", "known_until"):
        frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[ns, UTC]")
    frame["event"] = frame["event"].astype("string")
    return frame.sort_values("release_utc").reset_index(drop=True)


def calendar_at(events: pd.DataFrame, cut: pd.Timestamp) -> pd.DataFrame:
    """The calendar as known at ``cut``: rows known by then; a withdrawal not yet known is
    not in it."""
    known = events.loc[events["known_from"] <= cut].copy()
    known.loc[known["known_until"] > cut, "known_until"] = pd.NaT
    return known.reset_index(drop=True)


def information_at(market: MarketData, cut: pd.Timestamp) -> MarketData:
    """Everything known at time ``cut``: closed bars and funding events stamped by then."""
    return MarketData(
        bars=market.bars[market.bars["ts"] + STEP <= cut].reset_index(drop=True),
        funding=market.funding[market.funding["ts"] <= cut].reset_index(drop=True),
        perp=market.perp[market.perp["ts"] + STEP <= cut].reset_index(drop=True),
        positioning=market.positioning[market.positioning["ts"] <= cut].reset_index(drop=True),
        events=calendar_at(market.events, cut),
        interval=market.interval,
        source=market.source,
    )


def assert_prefix_unchanged(full: pd.DataFrame, truncated: pd.DataFrame, cut: pd.Timestamp) -> None:
    assert len(truncated) > 0
    assert (truncated["ts"] + STEP <= cut).all()
    merged = truncated.merge(
        full, on=["ts", "asset"], how="left", suffixes=("_cut", ""), indicator=True
    )
    assert (merged["_merge"] == "both").all(), "truncated build has rows the full build lacks"
    features = [c for c in truncated.columns if c not in ("ts", "asset")]
    for name in features:
        past = merged[f"{name}_cut"].to_numpy(dtype="float64")
        now = merged[name].to_numpy(dtype="float64")
        same_nan = np.isnan(past) == np.isnan(now)
        assert same_nan.all(), f"{name}: NaN pattern changed at {merged['ts'][~same_nan].iloc[0]}"
        ok = ~np.isnan(now)
        gap = np.abs(past[ok] - now[ok])
        bound = 1e-12 * np.maximum(1.0, np.abs(now[ok]))
        assert (gap <= bound).all(), f"{name}: changed by {gap.max():.3g} after truncation"


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    seed=st.integers(0, 2**16),
    cut_bars=st.integers(10, 299),
    cut_minutes=st.sampled_from([0, 0, 1, 30, 59]),
)
def test_every_feature_is_unchanged_by_truncating_the_future(
    seed: int, cut_bars: int, cut_minutes: int
) -> None:
    market = random_market(seed, n_bars=300)
    full = build_features(market, SMALL).frame
    cut = START + STEP * cut_bars + pd.Timedelta(minutes=cut_minutes)
    truncated = build_features(information_at(market, cut), SMALL).frame
    assert_prefix_unchanged(full, truncated, cut)
    # Rows at the cut itself exist for every asset listed by then (nothing is dropped).
    assert set(truncated["asset"].astype(str)) == {
        a for i, a in enumerate(ASSETS) if 7 * i < cut_bars
    }


def test_default_windows_are_unchanged_by_truncation() -> None:
    market = random_market(11, n_bars=1000, n_assets=3)
    full = build_features(market).frame
    for cut_bars in (760, 853, 999):
        cut = START + STEP * cut_bars
        truncated = build_features(information_at(market, cut)).frame
        assert_prefix_unchanged(full, truncated, cut)
    # The long windows really were exercised: the prefix rows carry monthly HAR values.
    assert full["har_m"].notna().sum() > 100
    assert full["funding_rate"].notna().sum() > 100


def test_synthetic_market_is_unchanged_by_truncation() -> None:
    from features.synthetic import SyntheticMarketConfig, generate_market

    market = generate_market(SyntheticMarketConfig(n_assets=3, days=12, seed=3))
    full = build_features(market, SMALL).frame
    cut = market.bars["ts"].min() + STEP * 200
    truncated = build_features(information_at(market, cut), SMALL).frame
    assert_prefix_unchanged(full, truncated, cut)


def test_the_truncation_markets_exercise_every_column() -> None:
    """Guard against a vacuous pass: every column has values in the markets used above."""
    for market, config in (
        (random_market(0, n_bars=300), SMALL),
        (random_market(11, 1000, 3), None),
    ):
        frame = build_features(market, config).frame
        empty = [c for c in frame.columns if frame[c].isna().all()]
        assert empty == []
        no_funding = frame[frame["asset"] == "SOLUSDT"]
        assert no_funding["funding_rate"].isna().all()
        # Missing stays missing: ETH has liquidations but no open interest, SOL neither.
        eth = frame[frame["asset"] == "ETHUSDT"]
        assert eth["oi_growth_1d"].isna().all() and eth["liq_log_1d"].notna().any()
        absent = [c for c in frame.columns if c.startswith(("liq_", "basis_chg_", "funding_z_"))]
        assert len(absent) == 5 and no_funding[absent].isna().all().all()
