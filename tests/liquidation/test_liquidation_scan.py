"""The vectorised scan agrees with the exact per-bucket valuation (both scan paths)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from liquidation.engine import Engine
from liquidation.errors import InsufficientMarginError
from liquidation.money import MICRO, QTY_SCALE
from liquidation.scan import PositionBook, scan
from tests.liquidation.liq_builders import HOUR_MS, fund_vault, simple_config, snapshot

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
START = {"BTCUSDT": 50_000, "ETHUSDT": 2_500, "SOLUSDT": 150}


def _random_engine(seed: int) -> Engine:
    """A book with cross, isolated and portfolio buckets, large positions and a live ramp."""
    rng = np.random.default_rng(seed)
    corr = ((1.0, 0.8, 0.6), (0.8, 1.0, 0.7), (0.6, 0.7, 1.0))
    engine = Engine(
        simple_config(
            SYMBOLS, correlation=corr, fee=0.0005, size_imf_factor=0.02, heartbeat_ms=10 * HOUR_MS
        )
    )
    for i, s in enumerate(SYMBOLS):
        engine.update_price(s, START[s] * MICRO, ts=0)
        engine.apply_snapshot(snapshot(s, 1, 1.0, sigma=0.02 + 0.01 * i), ts=0)
    fund_vault(engine, usd_amount=10**9)
    for a in range(60):
        account = f"acct{a:02d}"
        engine.deposit(account, int(rng.uniform(1e3, 5e6)) * MICRO, ts=0)
        if a % 7 == 0:
            engine.set_margin_mode(account, True, ts=0)
        for s in SYMBOLS:
            if rng.random() < 0.6:
                leverage = rng.uniform(-15, 15)
                equity = engine.equity(account) / MICRO
                lots = int(equity * leverage / 3 / START[s] * QTY_SCALE)
                isolated = a % 5 == 1 and s == "ETHUSDT"
                try:
                    engine.trade(
                        account,
                        s,
                        lots or 1,
                        ts=0,
                        isolated=isolated,
                        margin=int(equity * 0.1) * MICRO if isolated else 0,
                    )
                except InsufficientMarginError:
                    continue
    # Tighten BTC half an 8 h ramp ago, then move prices.
    engine.apply_snapshot(snapshot("BTCUSDT", 2, 1.8, as_of_ms=HOUR_MS), ts=HOUR_MS)
    for s in SYMBOLS:
        move = 1 + rng.normal(0, 0.04)
        px = int(START[s] * move * MICRO)
        engine.update_price(s, px, ts=5 * HOUR_MS, reference=px)
    return engine


@given(seed=st.integers(0, 10_000))
@settings(max_examples=20, deadline=None)
def test_scan_matches_exact_valuation(seed: int) -> None:
    engine = _random_engine(seed)
    margin = engine.margin_arrays()
    book = engine.state.book
    dense = book.scan(margin)
    rows = book.scan_rows(margin)
    fast = book.scan(margin, detail=False)
    assert dense.liquidatable.tolist() == rows.liquidatable.tolist() == fast.liquidatable.tolist()
    np.testing.assert_allclose(dense.equity, rows.equity, rtol=1e-12, atol=1e-6)
    np.testing.assert_allclose(dense.maintenance, rows.maintenance, rtol=1e-12, atol=1e-6)
    exact_flags = []
    for index, bucket_id in enumerate(book.bucket_ids):
        equity = engine.equity(bucket_id) / MICRO
        maintenance = engine.maintenance_margin(bucket_id) / MICRO
        # Float scan vs integer money: equal to rounding (a micro-USD per position).
        assert abs(dense.equity[index] - equity) <= 1e-5 * max(1.0, abs(equity))
        assert abs(dense.maintenance[index] - maintenance) <= 1e-5 * max(1.0, maintenance)
        if abs(equity - maintenance) > 1e-3:
            exact_flags.append((index, equity < maintenance))
    flagged = set(dense.liquidatable.tolist())
    assert all((index in flagged) == below for index, below in exact_flags)


def test_scan_skips_guarded_assets_and_updates_incrementally() -> None:
    engine = _random_engine(7)
    before = set(engine.scan().liquidatable.tolist())
    assert before, "the seed should produce liquidatable buckets"
    holders = {
        engine.state.book.bucket_index[b]
        for b, bucket in engine.state.buckets.items()
        if "BTCUSDT" in bucket.positions
    }
    engine.update_price("BTCUSDT", 1 * MICRO, ts=5 * HOUR_MS)  # absurd: guard trips
    guarded = set(engine.scan().liquidatable.tolist())
    assert guarded == before - holders
    # Incremental matrix updates equal a rebuild from the rows.
    engine.update_price("BTCUSDT", 50_000 * MICRO, ts=6 * HOUR_MS, reference=50_000 * MICRO)
    first = engine.scan()
    engine.state.book._exposure = None
    second = engine.scan()
    assert first.liquidatable.tolist() == second.liquidatable.tolist()
    np.testing.assert_allclose(first.maintenance, second.maintenance, rtol=1e-12)


def test_from_arrays_book_scans() -> None:
    engine = _random_engine(3)
    margin = engine.margin_arrays()
    book = PositionBook.from_arrays(
        3,
        ["x", "y"],
        np.array([1_000.0, 1_000.0]),
        np.array([0, 1, 1]),
        np.array([0, 0, 2]),
        np.array([0.1, -0.1, 10.0]),
        np.array([0.1, -0.1, 10.0]) * np.array([START["BTCUSDT"]] * 2 + [START["SOLUSDT"]]),
    )
    result = book.scan(margin)
    price = margin.price
    assert result.equity[0] == np.float64(1_000.0 + 0.1 * price[0] - 0.1 * START["BTCUSDT"])
    assert 0 not in result.liquidatable
    assert book.scan_rows(margin).liquidatable.tolist() == result.liquidatable.tolist()
    # The module-level form: a 30% BTC drop puts the levered long of "x" below maintenance.
    crash = price * np.array([0.7, 1.0, 1.0])
    assert scan(book, crash, margin).liquidatable.tolist() == [0]
