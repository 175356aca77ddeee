"""The replay's book, intra-bar path and impact options (issue #19, phase B wiring)."""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest

from liquidation.impact import ImpactConfig
from liquidation.intrabar import BridgeConfig
from liquidation.market_book import draw_market_book
from liquidation.money import value
from liquidation.simulate import (
    ReplayConfig,
    ReplayInputError,
    ReplaySeries,
    Scenario,
    VenueLedger,
    _checked,
    constant_multiplier,
    simulate,
    simulate_ledger,
)
from liquidation.trader_book import draw_book
from tests.liquidation.replay_builders import flat_market, random_walk_market, small_config
from tests.liquidation.test_book_reproduction import GOLDEN_SHA256, replay_digest


def _config(n: int = 2_000, **options: object) -> ReplayConfig:
    return replace(small_config(n), **options)


def test_legacy_wick_off_reproduces_todays_replay() -> None:
    explicit = _config(2_000, book_model="legacy", path="wick", impact="off")
    digest, _ = replay_digest(explicit)
    assert digest == GOLDEN_SHA256


@pytest.mark.parametrize(
    ("book_model", "path"), [("legacy", "bridge"), ("market", "wick"), ("market", "bridge")]
)
def test_zero_volatility_gives_no_liquidations(book_model: str, path: str) -> None:
    market = flat_market(n_bars=200)
    cfg = _config(2_000, book_model=book_model, path=path)
    [run] = simulate(market, [Scenario("s", 0, constant_multiplier(market, 1.0))], cfg)
    assert run.opened.sum() > 0
    assert run.liquidations.sum() == 0
    assert run.bad_debt.sum() == 0.0


def _conserved(ledger: VenueLedger, market_close: np.ndarray, assets: tuple[str, ...],
               traders_asset: np.ndarray) -> int:  # fmt: skip
    """Deposits minus what is held (balances, pools, open PnL at the last close): 0 if
    value is conserved, up to the rounding of fills."""
    price = np.round(market_close[:, -1] * 1e6).astype(np.int64)
    held = ledger.balance.sum() + ledger.fund + ledger.fees + ledger.keeper + ledger.vault_balance
    for i in np.flatnonzero(ledger.lots):
        a = int(traders_asset[i])
        held += value(int(ledger.lots[i]), int(price[a])) - int(ledger.cost[i])
    for a, name in enumerate(assets):
        if name in ledger.vault:
            lots, cost = ledger.vault[name]
            held += value(lots, int(price[a])) - cost
    return int(held - ledger.deposits)


@pytest.mark.parametrize("book_model", ["legacy", "market"])
def test_bridge_conserves_value_and_fills_at_the_level(book_model: str) -> None:
    market = random_walk_market(4, n_bars=400)
    path = constant_multiplier(market, 1.0)
    scen = [Scenario("s", 1, path)]
    wick_cfg = _config(2_000, book_model=book_model)
    bridge_cfg = replace(wick_cfg, path="bridge", bridge=BridgeConfig(n_steps=8))
    if book_model == "market":
        book = draw_market_book(wick_cfg.market_book, wick_cfg.book, market.close,
                                market.funding_rate, 1, 1.0, market.open)  # fmt: skip
    else:
        book = draw_book(wick_cfg.book, market.n_bars, len(market.assets), 1)
    [wick], _ = simulate_ledger(market, scen, wick_cfg, {1: book})
    [bridge], [ledger] = simulate_ledger(market, scen, bridge_cfg, {1: book})
    assert bridge.liquidations.sum() > 0
    assert abs(_conserved(ledger, market.close, market.assets, book.asset)) <= 4 * len(book)
    # Filled where the path crosses the level, not at the wick: less bad debt on one book.
    assert bridge.bad_debt.sum() < wick.bad_debt.sum()


def test_bridge_is_the_same_for_every_scenario_and_seeded() -> None:
    market = random_walk_market(6, n_bars=300)
    path = constant_multiplier(market, 1.0)
    cfg = _config(1_500, path="bridge")
    a = simulate(market, [Scenario("a", 2, path), Scenario("b", 2, path)], cfg)
    np.testing.assert_array_equal(a[0].liquidated_notional, a[1].liquidated_notional)
    b = simulate(market, [Scenario("a", 2, path)], replace(cfg, path_seed=1))
    assert not np.array_equal(a[0].liquidated_notional, b[0].liquidated_notional)


def test_unknown_options_are_refused() -> None:
    with pytest.raises(ReplayInputError, match="book_model"):
        ReplayConfig(book_model="crowd")
    with pytest.raises(ReplayInputError, match="path"):
        ReplayConfig(path="teleport")
    with pytest.raises(ReplayInputError, match="impact"):
        ReplayConfig(impact="sometimes")


def _impact(coefficient: float, **options: object) -> ReplayConfig:
    return _config(
        2_000, impact="on", impact_model=ImpactConfig(coefficient=coefficient), **options
    )


def test_impact_with_a_zero_coefficient_is_the_exogenous_replay() -> None:
    market = random_walk_market(5, n_bars=400)
    shape = market.open.shape
    scen = [Scenario("a", 11, np.full(shape, 1.0)), Scenario("b", 12, np.full(shape, 1.4))]
    # One scenario: the same pass, bit for bit.
    for single in scen:
        [off], [off_ledger] = simulate_ledger(market, [single], _config(2_000))
        [on], [on_ledger] = simulate_ledger(market, [single], _impact(0.0))
        for f in fields(ReplaySeries):
            a, b = getattr(off, f.name), getattr(on, f.name)
            if isinstance(a, np.ndarray):
                np.testing.assert_array_equal(a, b, err_msg=f.name)
            else:
                assert a == b, f.name
        assert _same_ledger(off_ledger, on_ledger)
    # Several scenarios: impact on runs one pass each; the integers are identical and the
    # per-bar float totals sum the same positions in another order (last-bit differences).
    off, off_ledgers = simulate_ledger(market, scen, _config(2_000))
    on, on_ledgers = simulate_ledger(market, scen, _impact(0.0))
    for left, right in zip(off, on, strict=True):
        for f in fields(ReplaySeries):
            a, b = getattr(left, f.name), getattr(right, f.name)
            if isinstance(a, np.ndarray):
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, err_msg=f.name)
    for left, right in zip(off_ledgers, on_ledgers, strict=True):
        assert _same_ledger(left, right)


def _same_ledger(left: VenueLedger, right: VenueLedger) -> bool:
    for f in fields(VenueLedger):
        a, b = getattr(left, f.name), getattr(right, f.name)
        if isinstance(a, np.ndarray):
            if not np.array_equal(a, b):
                return False
        elif a != b:
            return False
    return True


def test_liquidations_rise_with_the_impact_coefficient() -> None:
    market = random_walk_market(4, n_bars=400)
    scen = [Scenario("s", 1, constant_multiplier(market, 1.0))]
    counts = [
        simulate(market, scen, _impact(c))[0].positions_liquidated.sum() for c in (0.0, 4.0, 16.0)
    ]
    assert counts[0] < counts[1] < counts[2]


def test_a_cascade_cannot_exceed_the_book_and_value_is_conserved() -> None:
    market = random_walk_market(7, n_bars=300)
    # A market far thinner than the book: every liquidation moves the price a lot.
    market = replace(market, quote_volume=market.quote_volume * 1e-4)
    cfg = replace(_impact(50.0), impact_model=ImpactConfig(coefficient=50.0, max_rounds=5))
    book = draw_book(cfg.book, market.n_bars, len(market.assets), 3)
    scen = [Scenario("s", 3, constant_multiplier(market, 1.0))]
    replay = _checked(market, scen, cfg, {3: book})
    [run] = replay.run(None)
    ledger = replay.ledger(0)
    assert np.all(np.cumsum(run.positions_liquidated) <= np.cumsum(run.opened))
    assert run.positions_liquidated.sum() > 0
    assert replay.cascade_rounds.max() <= 5
    assert replay.cascade_rounds.max() >= 2  # some bar cascaded
    assert np.all(np.abs(replay.offset) <= cfg.impact_model.max_impact)
    price_close = replay.px_f[:, -1, -1] / 1e6
    assert abs(_conserved(ledger, price_close[:, None], market.assets, book.asset)) <= 4 * len(book)


def test_zero_volatility_with_impact_gives_no_liquidations() -> None:
    market = flat_market(n_bars=200)
    [run] = simulate(market, [Scenario("s", 0, constant_multiplier(market, 1.0))], _impact(10.0))
    assert run.liquidations.sum() == 0


def test_liquidated_long_is_the_long_part_of_the_liquidated_notional() -> None:
    market = random_walk_market(4, n_bars=400)
    path = constant_multiplier(market, 1.0)
    book = draw_book(small_config(2_000).book, market.n_bars, len(market.assets), 1)
    longs_only = replace(book, side=np.ones_like(book.side))
    shorts_only = replace(book, side=-np.ones_like(book.side))
    [both] = simulate(market, [Scenario("s", 1, path)], small_config(2_000), books={1: book})
    [long_] = simulate(market, [Scenario("s", 1, path)], small_config(2_000), books={1: longs_only})
    [short] = simulate(
        market, [Scenario("s", 1, path)], small_config(2_000), books={1: shorts_only}
    )
    assert np.all(both.liquidated_long <= both.liquidated_notional + 1e-6)
    assert 0 < both.liquidated_long.sum() < both.liquidated_notional.sum()
    np.testing.assert_array_equal(long_.liquidated_long, long_.liquidated_notional)
    assert short.liquidated_long.sum() == 0.0 and short.liquidated_notional.sum() > 0
