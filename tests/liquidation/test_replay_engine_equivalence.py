"""The vectorised replay and the event-sourced Engine are one liquidation core: a property.

Hypothesis draws a trader book (sizes, leverage, sides, deposits, top-ups), a price path
with gaps between bars and spikes inside them (prices up to 150 000 USD, where one unit in
lots times a micro-USD price overflows int64), funding, and a stream of RiskSnapshots per
asset and bar (ok, fallback, stale, halted, already expired, out of order, or none). The
same ticks go through :func:`liquidation.simulate.simulate_ledger` and through a real
:class:`~liquidation.engine.Engine` driven command by command on the replay's schedule
(:func:`~liquidation.simulate.tick_prices` at :func:`~liquidation.simulate.tick_times`):
snapshots, funding and opens at the bar's open, a keeper pass at both extremes and the
close, then top-ups and planned closes. Every integer must agree: each trader's balance and
position, the vault, the insurance fund, fees, keeper rewards, who was liquidated and how
often, bad debt, backstop, ADL and socialized loss; and value is conserved to the micro-USD.

The engine's snapshot step decides the multiplier path (status, expiry, trusted multiplier,
refusal of an out-of-order update); the replay is handed that path, as the backtest hands it
the published one.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from liquidation.engine import Engine
from liquidation.errors import InputError, InsufficientMarginError, SnapshotValidationError
from liquidation.money import MICRO
from liquidation.rules.governance import historical_stressed_loss
from liquidation.rules.topup import topup_amount, wants_topup
from liquidation.simulate import (
    MarketPaths,
    ReplayConfig,
    Scenario,
    open_lots,
    opening_terms,
    simulate_ledger,
    tick_prices,
    tick_times,
    trader_account,
)
from liquidation.trader_book import TraderBook
from tests.liquidation.liq_builders import snapshot

HOUR = 3_600_000
SYMBOLS = ("BTCUSDT", "DOGEUSDT")
KINDS = ("ok", "ok", "fallback", "stale", "halted", "expired", "out_of_order", "none")


def _config(review_every_bars: int = 0, vault_usd: float = 1e9) -> ReplayConfig:
    base = ReplayConfig(review_every_bars=review_every_bars)
    asset = base.asset
    return replace(
        base,
        spread_bps=asset.default_spread_bps,
        impact_bps=asset.default_slippage_bps,
        participation=0.01,
        fund_seed_usd=2_000.0,
        vault_usd=vault_usd,
        book=replace(base.book, topup_max_count=2),
    )


@st.composite
def markets(draw: st.DrawFn) -> MarketPaths:
    n_assets = draw(st.integers(1, 2))
    n_bars = draw(st.integers(2, 8))
    cfg = _config()
    rows = []
    for _ in range(n_assets):
        level = draw(st.sampled_from([0.08, 3.0, 140.0, 60_000.0, 150_000.0]))
        o, h, lo, c = [], [], [], []
        for _ in range(n_bars):
            gap = draw(st.floats(-0.06, 0.06))  # the open jumps away from the last close
            open_ = level * (1 + gap)
            close = open_ * (1 + draw(st.floats(-0.12, 0.12)))
            spike_up, spike_down = draw(st.floats(0, 0.25)), draw(st.floats(0, 0.3))
            o.append(open_)
            c.append(close)
            h.append(max(open_, close) * (1 + spike_up))
            lo.append(min(open_, close) * (1 - spike_down))
            level = close
        rows.append((o, h, lo, c))
    arr = np.array(rows)  # (asset, 4, bar)
    funding = np.array(
        [[draw(st.sampled_from([0.0, 0.0, 0.0001, -0.0003, 0.002])) for _ in range(n_bars)]
         for _ in range(n_assets)]
    )  # fmt: skip
    return MarketPaths(
        assets=SYMBOLS[:n_assets],
        ts_ms=np.arange(n_bars, dtype=np.int64) * HOUR,
        interval_ms=HOUR,
        open=arr[:, 0],
        high=arr[:, 1],
        low=arr[:, 2],
        close=arr[:, 3],
        quote_volume=np.full((n_assets, n_bars), cfg.asset.standard_size_usd / cfg.participation),
        funding_rate=funding,
    )


@st.composite
def books(draw: st.DrawFn, n_assets: int, n_bars: int) -> TraderBook:
    n = draw(st.integers(1, 10))
    arrival = np.sort(np.array([draw(st.integers(0, n_bars - 1)) for _ in range(n)]))
    return TraderBook(
        arrival=arrival.astype(np.int64),
        asset=np.array([draw(st.integers(0, n_assets - 1)) for _ in range(n)], dtype=np.int64),
        side=np.array([draw(st.sampled_from([1, -1])) for _ in range(n)], dtype=np.int8),
        collateral=np.array([draw(st.floats(50.0, 3e5)) for _ in range(n)]),
        leverage=np.array([draw(st.floats(1.0, 60.0)) for _ in range(n)]),
        hold_bars=np.array([draw(st.integers(1, n_bars + 1)) for _ in range(n)], dtype=np.int64),
        topup=np.array([draw(st.booleans()) for _ in range(n)]),
    )


def _snapshot_events(kind: str, symbol: str, uid: int, mult: float, ts: int) -> dict | None:
    cfg = _config()
    liquidity = {"spread_bps": cfg.spread_bps, "slippage_bps": cfg.impact_bps}
    if kind == "none":
        return None
    status = kind if kind in ("ok", "fallback", "stale", "halted") else "ok"
    if kind == "expired":  # made two hours ago, valid for one: expired on arrival
        return snapshot(symbol, uid, mult, as_of_ms=ts + 1 - 2 * HOUR, valid_ms=HOUR, **liquidity)
    # Valid until replaced: the replay's path changes at bar opens only.
    return snapshot(symbol, uid, mult, as_of_ms=ts, valid_ms=1_000 * HOUR, status=status,
                    **liquidity)  # fmt: skip


def _apply_snapshots(engine: Engine, stream: list[list[tuple[str, float]]], t: int, ts: int,
                     uids: dict[str, int]) -> None:  # fmt: skip
    for symbol, (kind, mult) in zip(engine.config.symbols, stream[t], strict=False):
        uid = uids[symbol] if kind == "out_of_order" else uids[symbol] + 1
        data = _snapshot_events(kind, symbol, uid, mult, ts)
        if data is None:
            continue
        try:
            engine.apply_snapshot(data, ts=ts)
            uids[symbol] = uid
        except SnapshotValidationError:
            assert kind == "out_of_order", f"only an out-of-order snapshot is refused ({kind})"


def _targets(market: MarketPaths, stream: list, cfg: ReplayConfig) -> np.ndarray:
    """The multiplier path the engine's snapshot step makes of the stream."""
    engine = Engine(cfg.engine_config(market.assets))
    uids = dict.fromkeys(market.assets, 0)
    path = np.empty(market.open.shape)
    for t, ts in enumerate(tick_times(market)[:, 0].tolist()):
        _apply_snapshots(engine, stream, t, ts, uids)
        for a, symbol in enumerate(market.assets):
            path[a, t] = engine.state.assets[symbol].ramp.target
    return path


def _engine_run(market: MarketPaths, path: np.ndarray, book: TraderBook, stream: list,
                cfg: ReplayConfig) -> tuple[Engine, list]:  # fmt: skip
    config = cfg.engine_config(market.assets)
    engine = Engine(config)
    px, tms = tick_prices(market), tick_times(market)
    collateral = np.round(book.collateral * MICRO).astype(np.int64)
    fee_rate, slack = opening_terms(cfg)
    lots = open_lots(
        collateral, book.leverage, book.side, px[book.asset, book.arrival, 0],
        path[book.asset, book.arrival], cfg.asset, fee_rate,
        round(cfg.fees.min_order_notional_usd * MICRO), slack,
    )  # fmt: skip
    uids = dict.fromkeys(market.assets, 0)
    left = np.where(book.topup, cfg.book.topup_max_count, 0)
    reports = []
    for t in range(market.n_bars):
        ts = int(tms[t, 0])
        for a, symbol in enumerate(market.assets):
            engine.update_price(symbol, int(px[a, t, 0]), ts=ts)
        if t == 0:
            engine.seed_insurance(round(cfg.fund_seed_usd * MICRO), ts=ts)
            engine.deposit(config.vault, round(cfg.vault_usd * MICRO), ts=ts)
        _apply_snapshots(engine, stream, t, ts, uids)
        for a, symbol in enumerate(market.assets):
            if market.funding_rate[a, t]:
                engine.apply_funding(symbol, float(market.funding_rate[a, t]), ts=ts)
        every = cfg.review_every_bars
        if every and t and t % every == 0:
            history = engine.state.insurance.bad_debts
            loss = historical_stressed_loss(history, cfg.insurance.stress_quantile)
            engine.review_insurance(ts=ts, stressed_loss=loss)
        for i in np.flatnonzero(book.arrival == t):
            engine.deposit(trader_account(i), int(collateral[i]), ts=ts)
            if lots[i]:
                engine.trade(trader_account(i), market.assets[book.asset[i]], int(lots[i]), ts=ts)
        for k in (1, 2, 3):
            tk = int(tms[t, k])
            for a, symbol in enumerate(market.assets):
                engine.update_price(symbol, int(px[a, t, k]), ts=tk)
            reports += engine.run_liquidations(keeper="keeper", ts=tk)
        tk = int(tms[t, 3])
        holders = [
            i for i in range(len(book)) if book.arrival[i] <= t and _lots(engine, i, book, market)
        ]
        for i in holders:
            acct = trader_account(i)
            eq, mm = engine.equity(acct, tk), engine.maintenance_margin(acct, tk)
            if wants_topup(eq, mm, int(left[i]), cfg.book.topup_trigger_health):
                im = engine.initial_margin(acct, tk)
                amount = topup_amount(eq, im, int(collateral[i]), cfg.book.topup_max_fraction)
                if amount > 0:
                    engine.deposit(acct, amount, ts=tk)
                    left[i] -= 1
        for i in holders:
            if min(book.arrival[i] + book.hold_bars[i] - 1, market.n_bars - 1) <= t:
                held = _lots(engine, i, book, market)
                try:
                    engine.trade(trader_account(i), market.assets[book.asset[i]], -held, ts=tk)
                except (InputError, InsufficientMarginError):
                    pass  # dust or a bankrupt close: the replay keeps these open too
    return engine, reports


def _lots(engine: Engine, i: int, book: TraderBook, market: MarketPaths) -> int:
    bucket = engine.state.buckets.get(trader_account(i))
    if bucket is None:
        return 0
    position = bucket.positions.get(market.assets[book.asset[i]])
    return position.lots if position is not None else 0


@st.composite
def cases(draw: st.DrawFn) -> tuple[MarketPaths, TraderBook, list, int]:
    market = draw(markets())
    book = draw(books(len(market.assets), market.n_bars))
    stream = [
        [(draw(st.sampled_from(KINDS)), draw(st.sampled_from([0.8, 1.0, 1.6, 2.5, 4.0])))
         for _ in market.assets]
        for _ in range(market.n_bars)
    ]  # fmt: skip
    # Insurance governance: none, or a review every bar or every other bar.
    return market, book, stream, draw(st.sampled_from([0, 0, 1, 2]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_replay_and_engine_agree_to_the_micro_dollar(case: tuple) -> None:
    reports = _check(*case)
    for step in sorted({r.step for r in reports}):
        event(f"step {step}")


def test_a_crash_bar_exercises_every_step_and_a_top_up() -> None:
    """A fixed case, so that the property above can never pass on idle books only."""
    n = 4
    bars = np.array(
        [[100, 100, 100, 100], [100, 101, 89, 95], [95, 96, 90, 90], [90, 91, 89, 90.0]]
    )
    cfg = _config()
    market = MarketPaths(
        assets=("BTCUSDT",), ts_ms=np.arange(n, dtype=np.int64) * HOUR, interval_ms=HOUR,
        open=bars[None, :, 0].copy(), high=bars[None, :, 1].copy(), low=bars[None, :, 2].copy(),
        close=bars[None, :, 3].copy(),
        quote_volume=np.full((1, n), cfg.asset.standard_size_usd / cfg.participation),
        funding_rate=np.array([[0.0, 0.0001, 0.0, -0.0002]]),
    )  # fmt: skip
    # An 8x long partially liquidated, a small 8x long closed out, a 12x long bankrupt beyond the
    # fund (the backstop takes it), a 5x short untouched, and an 11.8x long opened at bar 2
    # whose health at the close falls under the top-up trigger without a liquidation.
    traders = [(1, 60_000.0, 8.0, False), (1, 1_000.0, 8.0, False), (1, 10_000.0, 12.0, False),
               (-1, 10_000.0, 5.0, False), (1, 10_000.0, 11.8, True)]  # fmt: skip
    book = TraderBook(
        arrival=np.array([0, 0, 0, 0, 2], dtype=np.int64),
        asset=np.zeros(len(traders), dtype=np.int64),
        side=np.array([t[0] for t in traders], dtype=np.int8),
        collateral=np.array([t[1] for t in traders]),
        leverage=np.array([t[2] for t in traders]),
        hold_bars=np.full(len(traders), 10, dtype=np.int64),
        topup=np.array([t[3] for t in traders]),
    )
    stream = [[("ok", 1.0)], [("none", 1.0)], [("none", 1.0)], [("none", 1.0)]]
    reports = _check(market, book, stream, min_topups=1)
    assert {r.step for r in reports} == {"partial", "full", "backstop"}


def test_governance_raises_the_add_on_and_the_fund_share_alike_on_both_sides() -> None:
    """After a loss beyond the fund's cover, each review steps the fund's share and the fee
    add-on up (coverage below target) in the engine and in the replay alike; trades after it
    pay the add-on to the fund."""
    n = 6
    bars = np.array([[100, 100, 100, 100], [100, 101, 80, 82], [82, 83, 81, 82],
                     [82, 83, 81, 82], [82, 83, 81, 82], [82, 83, 81, 82.0]])  # fmt: skip
    cfg = _config(1)
    market = MarketPaths(
        assets=("BTCUSDT",), ts_ms=np.arange(n, dtype=np.int64) * HOUR, interval_ms=HOUR,
        open=bars[None, :, 0].copy(), high=bars[None, :, 1].copy(), low=bars[None, :, 2].copy(),
        close=bars[None, :, 3].copy(),
        quote_volume=np.full((1, n), cfg.asset.standard_size_usd / cfg.participation),
        funding_rate=np.zeros((1, n)),
    )  # fmt: skip
    book = TraderBook(
        arrival=np.array([0, 0, 3, 4], dtype=np.int64),
        asset=np.zeros(4, dtype=np.int64),
        side=np.array([1, 1, -1, 1], dtype=np.int8),
        collateral=np.array([20_000.0, 5_000.0, 5_000.0, 5_000.0]),
        leverage=np.array([15.0, 15.0, 3.0, 3.0]),
        hold_bars=np.array([10, 10, 1, 1], dtype=np.int64),
        topup=np.zeros(4, dtype=bool),
    )
    stream = [[("ok", 1.0)]] + [[("none", 1.0)]] * (n - 1)
    reports = _check(market, book, stream, review_every_bars=1)
    assert any(r.bad_debt > 0 for r in reports)
    [_], [ledger] = simulate_ledger(market, [Scenario("p", 0, _targets(market, stream, cfg))], cfg,
                                    books={0: book})  # fmt: skip
    assert ledger.fee_addon_bps > 0 and ledger.fund_share > cfg.insurance.initial_fund_share


def _check(
    market: MarketPaths,
    book: TraderBook,
    stream: list,
    review_every_bars: int = 0,
    min_topups: int = 0,
    vault_usd: float = 1e9,
) -> list:
    """Run both sides on one case, require every integer to agree; the engine's reports."""
    cfg = _config(review_every_bars, vault_usd)
    path = _targets(market, stream, cfg)
    [series], [ledger] = simulate_ledger(market, [Scenario("p", 0, path)], cfg, books={0: book})
    engine, reports = _engine_run(market, path, book, stream, cfg)

    for i in range(len(book)):
        bucket = engine.state.buckets[trader_account(i)]
        position = bucket.positions.get(market.assets[book.asset[i]])
        assert ledger.balance[i] == bucket.balance, f"trader {i} balance"
        assert ledger.lots[i] == (position.lots if position else 0), f"trader {i} lots"
        assert ledger.cost[i] == (position.cost if position else 0), f"trader {i} cost"
    vault = engine.state.buckets[engine.config.vault]
    assert ledger.vault_balance == vault.balance
    assert ledger.vault == {s: (p.lots, p.cost) for s, p in vault.positions.items()}
    state = engine.state
    assert ledger.fund == state.insurance.fund
    assert ledger.fund_share == state.insurance.fund_share
    assert ledger.fee_addon_bps == state.insurance.fee_addon_bps
    assert ledger.fees == state.ledger.fees
    assert ledger.keeper == state.ledger.keeper_rewards
    assert ledger.steps == len(reports) == int(series.liquidations.sum())
    hit = sorted({int(r.bucket[1:]) for r in reports})
    assert ledger.liquidated == hit
    assert ledger.bad_debt == sum(r.bad_debt for r in reports)
    assert ledger.backstop == sum(r.backstop_absorbed for r in reports)
    assert ledger.adl == sum(r.adl_absorbed for r in reports) == 0
    assert ledger.socialized == sum(r.socialized for r in reports) == state.ledger.socialized_loss
    # Value is conserved to the micro-USD on both sides.
    held = int(ledger.balance.sum()) + ledger.vault_balance + ledger.fund + ledger.fees
    assert held + ledger.keeper + ledger.socialized == ledger.deposits
    assert engine.ledger_discrepancy() == 0
    assert int(series.topups.sum()) >= min_topups
    return reports
