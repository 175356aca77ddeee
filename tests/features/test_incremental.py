"""Incremental features equal a full rebuild, bar after bar, late bars and backfills included.

The market arrives as the live ingest delivers it: hour by hour, with one asset's bar late
by an hour, a hole backfilled three hours later and a funding event that lands late. After
every update the kept matrix must equal ``build_features`` on everything delivered so far,
over the rows the update computed and every row before them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.build import FeatureConfig, build_features
from features.errors import FeatureInputError
from features.incremental import IncrementalFeatures, warmup_bars
from features.market import MarketData
from features.store import MarketStore
from features.synthetic import SyntheticMarketConfig, generate_market

H = pd.Timedelta(hours=1)
DAYS = 110


@pytest.fixture(scope="module")
def market() -> MarketData:
    return generate_market(SyntheticMarketConfig(n_assets=3, days=DAYS, seed=11))


def _delivered(
    market: MarketData, end: pd.Timestamp, withheld: set[tuple[str, pd.Timestamp]]
) -> MarketData:
    """What the store holds when bars up to ``end`` arrived, except ``withheld`` ones."""

    def cut(frame: pd.DataFrame, column: str = "ts") -> pd.DataFrame:
        if frame.empty:
            return frame
        keep = frame[column] < end
        if withheld:
            keys = list(zip(frame["asset"].astype(str), frame[column], strict=True))
            keep &= ~pd.Series([k in withheld for k in keys], index=frame.index)
        return frame[keep].reset_index(drop=True)

    funding = market.funding[market.funding["ts"] <= end - H].reset_index(drop=True)
    return MarketData(
        bars=cut(market.bars),
        funding=funding,
        perp=cut(market.perp),
        interval=market.interval,
        source=market.source,
    )


def _assert_same(incremental: pd.DataFrame, full: pd.DataFrame) -> None:
    """Same rows and NaN positions; values equal to 1e-12 of each column's scale."""
    columns = [c for c in full.columns if c not in ("ts", "asset")]
    left = incremental.sort_values(["asset", "ts"]).reset_index(drop=True)
    right = full.sort_values(["asset", "ts"]).reset_index(drop=True)
    assert len(left) == len(right)
    assert (left["ts"].to_numpy() == right["ts"].to_numpy()).all()
    assert (left["asset"].astype(str).to_numpy() == right["asset"].astype(str).to_numpy()).all()
    a = left[columns].to_numpy(dtype=float)
    b = right[columns].to_numpy(dtype=float)
    assert (np.isnan(a) == np.isnan(b)).all(), [
        c for i, c in enumerate(columns) if (np.isnan(a[:, i]) != np.isnan(b[:, i])).any()
    ]
    finite = ~np.isnan(b)
    scale = np.maximum(np.nanmax(np.abs(b), axis=0, initial=0.0), 1e-300)
    error = np.where(finite, np.abs(a - b) / scale, 0.0)
    worst = error.max(axis=0)
    off = {c: float(w) for c, w in zip(columns, worst, strict=True) if w > 1e-12}
    assert not off, off


def test_updates_equal_a_full_rebuild_with_late_bars_backfills_and_late_funding(
    market: MarketData,
) -> None:
    builder = IncrementalFeatures(keep=None)
    end = market.bars["ts"].max() + H
    start = end - 8 * H
    late_asset = str(market.assets[1])
    hole = (str(market.assets[2]), start + 2 * H)
    withheld: set[tuple[str, pd.Timestamp]] = {hole}
    first = builder.update(_delivered(market, start, withheld))
    assert first.full
    plan = []
    for hour in range(1, 9):
        now = start + hour * H
        held = set(withheld)
        if hour == 3:
            held.add((late_asset, now - H))  # this bar is late by one hour
        if hour >= 6:
            held.discard(hole)  # the hole is backfilled five hours later
        plan.append((now, held))
    recomputed = []
    for now, held in plan:
        delivered = _delivered(market, now, held)
        update = builder.update(delivered)
        recomputed.append(update.recomputed_from)
        assert not update.full
        full = build_features(delivered).frame
        kept = builder.feature_set
        assert kept is not None
        _assert_same(kept.frame, full)
        if update.recomputed_from is not None:
            # Only the rows from the oldest new observation were computed.
            assert update.new_rows["ts"].min() == update.recomputed_from
            assert len(update.new_rows) < len(full) / 50
    # Normal hours recompute the newest bar only; the late bar's arrival recomputes from it,
    # the backfilled hole from the hole.
    # (A funding event is known from the close of the bar before its stamp.)
    assert recomputed[1] == start + H
    assert recomputed[3] == start + 2 * H  # hour 4 delivers hour 3's late bar
    assert recomputed[5] == hole[1]
    assert builder.update(_delivered(market, plan[-1][0], set())).recomputed_from is None


def test_a_window_too_short_for_the_warm_up_is_refused_clearly(market: MarketData) -> None:
    builder = IncrementalFeatures()
    end = market.bars["ts"].max() + H
    builder.update(_delivered(market, end - H, set()))
    short = _delivered(market, end, set())
    short = MarketData(
        bars=short.bars[short.bars["ts"] >= end - 48 * H],
        funding=short.funding,
        perp=short.perp,
        interval=short.interval,
    )
    with pytest.raises(FeatureInputError, match="warm-up"):
        builder.update(short)


def test_the_store_window_read_is_enough_and_the_kept_history_is_bounded(
    market: MarketData, tmp_path: pytest.TempPathFactory
) -> None:
    store = MarketStore(tmp_path / "store")  # type: ignore[operator]
    end = market.bars["ts"].max() + H
    store.ingest_market(_delivered(market, end - 3 * H, set()))
    builder = IncrementalFeatures(keep=pd.Timedelta(days=10))
    builder.update(builder.read(store))
    store.ingest_market(_delivered(market, end, set()))
    window = builder.read(store)
    assert window.bars["ts"].min() <= end - 3 * H - builder.warmup
    update = builder.update(window)
    assert update.recomputed_from == end - 3 * H
    kept = builder.feature_set
    assert kept is not None
    assert kept.frame["ts"].min() >= end - H - pd.Timedelta(days=10)
    full = build_features(store.read_market("1h")).frame
    _assert_same(kept.frame, full[full["ts"] >= kept.frame["ts"].min()])


def test_warm_up_covers_the_longest_window_chain_and_the_ewma_memory() -> None:
    config = FeatureConfig()
    bars = warmup_bars(config)
    assert bars >= 2 * max(config.rv_windows_hours)
    lags = max(config.spillover_lags_bars)
    assert config.ewma_lambda ** (bars - lags - config.ewma_min_bars) < 1e-15
