"""The market-aware trader book (issue #19 item 1)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from liquidation.errors import ConfigError
from liquidation.market_book import MarketBookConfig, draw_market_book, exit_bars, signals
from liquidation.simulate import Scenario, constant_multiplier, simulate
from liquidation.trader_book import BookConfig, TraderBook
from tests.liquidation.replay_builders import flat_market, random_walk_market, small_config


def _cfg(n: int = 20_000, **kw: float) -> tuple[MarketBookConfig, BookConfig]:
    return MarketBookConfig(**kw), replace(BookConfig(), n_traders=n)


def _trending(n_bars: int = 2_000, drift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    r = rng.normal(drift, 0.01, size=(1, n_bars))
    close = 100 * np.exp(np.cumsum(r, axis=1))
    return close, np.zeros_like(close)


def test_book_is_seeded_and_well_formed() -> None:
    m = random_walk_market(1, n_bars=800)
    a = draw_market_book(*_cfg(5_000), m.close, m.funding_rate, seed=3, open_=m.open)
    b = draw_market_book(*_cfg(5_000), m.close, m.funding_rate, seed=3, open_=m.open)
    c = draw_market_book(*_cfg(5_000), m.close, m.funding_rate, seed=4, open_=m.open)
    for name in ("arrival", "asset", "side", "collateral", "leverage", "hold_bars", "topup"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.side, c.side)
    assert isinstance(a, TraderBook)
    assert np.all(np.diff(a.arrival) >= 0)
    assert np.all((a.leverage >= 1) & (a.leverage <= 100))
    assert np.all(a.hold_bars >= 1)
    assert set(np.unique(a.side)) <= {-1, 1}
    # The expected size is n_traders on a market without signal; here within a loose band.
    assert 0.5 * 5_000 < len(a) < 2.5 * 5_000


def test_signals_are_point_in_time() -> None:
    m = random_walk_market(2, n_bars=900)
    cfg = _cfg()
    s = signals(m.close, m.funding_rate, 1.0, cfg[0])
    close = m.close.copy()
    close[:, 600:] *= 1.3
    funding = m.funding_rate.copy()
    funding[:, 600:] = 0.003
    t = signals(close, funding, 1.0, cfg[0])
    for name in ("trend", "vol", "funding"):
        left, right = getattr(s, name), getattr(t, name)
        # Known at the open of bar 600: bars < 600 only. The close of bar 600 is not.
        np.testing.assert_array_equal(left[:, :601], right[:, :601], err_msg=name)
    assert not np.array_equal(s.funding[:, 601:], t.funding[:, 601:])


def test_side_follows_the_trend() -> None:
    close_up, f = _trending(drift=0.002)
    close_dn, _ = _trending(drift=-0.002)
    cfg = _cfg(20_000, side_trend=1.0)
    up = draw_market_book(*cfg, close_up, f, seed=1)
    dn = draw_market_book(*cfg, close_dn, f, seed=1)
    assert (up.side == 1).mean() > 0.6
    assert (dn.side == 1).mean() < 0.4


def test_side_follows_funding_and_entry_rate_follows_vol() -> None:
    close, _ = _trending()
    hot = np.zeros_like(close)
    hot[:, ::8] = 0.0005  # 5 bp per 8 h: longs crowd
    cfg = _cfg(20_000, side_funding=0.2, side_trend=0.0)
    crowded = draw_market_book(*cfg, close, hot, seed=1)
    neutral = draw_market_book(*cfg, close, np.zeros_like(close), seed=1)
    assert (crowded.side == 1).mean() > (neutral.side == 1).mean() + 0.1
    # A volatility burst draws more arrivals than the calm bars around it.
    rng = np.random.default_rng(5)
    r = rng.normal(0, 0.005, size=(1, 3_000))
    r[:, 1_500:1_700] *= 6
    burst = 100 * np.exp(np.cumsum(r, axis=1))
    book = draw_market_book(*_cfg(30_000, rate_vol=1.0), burst, np.zeros_like(burst), seed=2)
    per_bar = np.bincount(book.arrival, minlength=3_000)
    assert per_bar[1_510:1_700].mean() > 1.5 * per_bar[1_000:1_400].mean()


def test_leverage_falls_with_volatility() -> None:
    rng = np.random.default_rng(6)
    r = rng.normal(0, 0.004, size=(1, 3_000))
    r[:, 1_500:] *= 5
    close = 100 * np.exp(np.cumsum(r, axis=1))
    # At the legacy level (the fitted lev_level caps most leverage at 1x, median included).
    cfg = _cfg(30_000, lev_vol=-0.5, lev_level=0.0)
    book = draw_market_book(*cfg, close, np.zeros_like(close), seed=2)
    calm = np.median(book.leverage[(book.arrival > 800) & (book.arrival < 1_500)])
    wild = np.median(book.leverage[(book.arrival > 1_530) & (book.arrival < 1_700)])
    assert wild < 0.8 * calm


def test_exits_fire_at_the_first_close_beyond_the_threshold() -> None:
    close = np.array([[100.0, 101, 103, 99, 95, 90, 92, 105]])
    cfg, _ = _cfg(10, stop_loss_roe=0.5, take_profit_roe=0.2, derisk_drawdown_roe=0.3)
    one = np.array([0])
    side = np.array([1], dtype=np.int8)
    lev = np.array([10.0])
    entry = np.array([100.0])
    hold = np.array([8])
    t, f = np.array([True]), np.array([False])

    def run(stop: np.ndarray, target: np.ndarray, derisk: np.ndarray) -> int:
        return int(exit_bars(close, one, one, side, lev, entry, hold, stop, target, derisk, cfg)[0])

    # Take-profit at +20% ROE: the close of 103 (bar index 2) -> held 3 bars.
    assert run(f, t, f) == 3
    # Stop-loss at -50% ROE: the close of 95 (bar 4) -> 5 bars.
    assert run(t, f, f) == 5
    # De-risk after a 30% drawdown from the best close (103, +30%): 99 is 0.4 below -> 4 bars.
    assert run(f, f, t) == 4
    # No rule: the planned holding time.
    assert run(f, f, f) == 8


def test_zero_volatility_market_book_gives_no_liquidations() -> None:
    market = flat_market(n_assets=2, n_bars=300)
    book = draw_market_book(*_cfg(3_000), market.close, market.funding_rate, seed=0)
    path = constant_multiplier(market, 1.0)
    [run] = simulate(market, [Scenario("s", 0, path)], small_config(), books={0: book})
    assert run.opened.sum() > 0
    assert run.liquidations.sum() == 0
    assert run.bad_debt.sum() == 0.0


def test_replay_runs_the_market_book_and_conserves_value() -> None:
    from liquidation.simulate import simulate_ledger

    market = random_walk_market(4, n_bars=400)
    book = draw_market_book(*_cfg(2_000), market.close, market.funding_rate, 1, open_=market.open)
    path = constant_multiplier(market, 1.0)
    [run], [ledger] = simulate_ledger(market, [Scenario("s", 1, path)], small_config(), {1: book})
    assert run.liquidations.sum() > 0
    # Money is conserved: deposits = trader balances + unrealized + venue pools.
    held = ledger.balance.sum() + ledger.fund + ledger.fees + ledger.keeper + ledger.vault_balance
    # Open positions' unrealized PnL is zero-sum between traders and the vault at any price.
    price = np.round(market.close[:, -1] * 1e6).astype(np.int64)
    from liquidation.money import value

    upnl = 0
    for i in np.flatnonzero(ledger.lots):
        a = int(book.asset[i])
        upnl += value(int(ledger.lots[i]), int(price[a])) - int(ledger.cost[i])
    for a, name in enumerate(market.assets):
        if name in ledger.vault:
            lots, cost = ledger.vault[name]
            upnl += value(lots, int(price[a])) - cost
    assert abs(held + upnl - ledger.deposits) <= 2 * len(market.assets) + len(book)


def test_bad_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="exit shares"):
        MarketBookConfig(stop_fraction=1.5)
    with pytest.raises(ConfigError, match="vol_short"):
        MarketBookConfig(vol_short_hours=800.0)
