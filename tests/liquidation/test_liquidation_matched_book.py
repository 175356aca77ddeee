"""The matched book: counterparties, the vault as market and backstop, the mark price,
reference feeds and the guard's escalation, idempotency keys and the resume check."""

from __future__ import annotations

import pytest

from liquidation.engine import Engine
from liquidation.errors import (
    DuplicateCommandError,
    InputError,
    InsufficientLiquidityError,
    InsufficientMarginError,
)
from liquidation.invariants import violations
from liquidation.money import price, qty, usd
from tests.liquidation.liq_builders import HOUR_MS, fund_vault, simple_config, snapshot

BTC, ETH = "BTCUSDT", "ETHUSDT"
MINUTE = 60_000


def _engine(**config) -> Engine:
    engine = Engine(simple_config(heartbeat_ms=config.pop("heartbeat_ms", 100 * HOUR_MS), **config))
    engine.update_price(BTC, price("50000"), ts=0)
    engine.apply_snapshot(snapshot(BTC, 1, 1.0, valid_ms=1000 * HOUR_MS), ts=0)
    fund_vault(engine)
    return engine


def test_every_fill_has_a_counterparty_and_the_book_stays_matched() -> None:
    engine = _engine(fee=0.0005)
    for account in ("a", "b", "c"):
        engine.deposit(account, usd("20000"), ts=0)
    engine.trade("a", BTC, qty("1"), ts=0)  # against the vault
    engine.trade("b", BTC, -qty("0.4"), ts=0, counterparty="a")  # between accounts
    engine.trade("c", BTC, -qty("2"), ts=0, isolated=True, margin=usd("8000"))
    fills = [e.data for e in engine.log if e.kind == "fill"]
    # The vault goes from short 1 to long 1: its side flips, so c's fill is split at zero.
    assert [[leg["bucket"] for leg in f["legs"]] for f in fills] == [
        ["a", "vault"],
        ["b", "a"],
        ["c:BTCUSDT", "vault"],
        ["c:BTCUSDT", "vault"],
    ]
    assert [f["legs"][1]["dq"] for f in fills[2:]] == [qty("1"), qty("1")]
    assert all(sum(leg["dq"] for leg in f["legs"]) == 0 for f in fills)
    lots = {
        b: bucket.positions[BTC].lots
        for b, bucket in engine.state.buckets.items()
        if bucket.positions
    }
    assert lots == {"a": qty("1.4"), "b": -qty("0.4"), "c:BTCUSDT": -qty("2"), "vault": qty("1")}
    assert engine.state.assets[BTC].long_oi_lots == qty("2.4")
    # Prices move, funding is paid: PnL and funding net to zero across accounts.
    engine.update_price(BTC, price("51000"), ts=1_000)
    engine.apply_funding(BTC, 0.0003, ts=1_000)
    assert violations(engine) == []
    view = engine.view()
    upnl = sum(
        p.lots * view.price(BTC) // 10**8 - p.cost
        for b in engine.state.buckets.values()
        for p in b.positions.values()
    )
    assert abs(upnl + engine.state.ledger.realized_pnl) <= 4


def test_an_unfunded_vault_cannot_take_the_other_side() -> None:
    engine = Engine(simple_config())
    engine.update_price(BTC, price("50000"), ts=0)
    engine.deposit("a", usd("10000"), ts=0)
    with pytest.raises(InsufficientLiquidityError, match="vault"):
        engine.trade("a", BTC, qty("0.1"), ts=0)
    engine.deposit("vault", usd("100"), ts=0)
    with pytest.raises(InsufficientLiquidityError, match="initial margin"):
        engine.trade("a", BTC, qty("0.1"), ts=0)  # 5,000 of notional needs 250 of vault IM
    with pytest.raises(InputError, match="itself"):
        engine.trade("a", BTC, qty("0.1"), ts=0, counterparty="a")


def test_mark_follows_traded_prices_within_its_cap() -> None:
    engine = _engine()
    engine.deposit("a", usd("20000"), ts=0)
    engine.deposit("b", usd("20000"), ts=0)
    oracle = price("50000")
    for _ in range(20):  # trades 1% above the oracle keep pulling the basis up
        engine.trade("a", BTC, qty("0.01"), ts=0, counterparty="b", price=price("50500"))
    view = engine.view()
    assert view.oracle(BTC) == oracle
    assert view.price(BTC) == oracle + price("250")  # capped at 0.5% of the oracle
    with pytest.raises(InputError, match="from the mark"):
        engine.trade("a", BTC, qty("0.01"), ts=0, counterparty="b", price=price("52000"))
    # Without such trades the basis decays to nothing over its window (1 h).
    engine.update_price(BTC, oracle, ts=HOUR_MS)
    assert engine.view().price(BTC) == oracle


def test_reference_feeds_decide_prints_and_back_a_long_guard() -> None:
    engine = _engine(heartbeat_ms=2 * MINUTE)
    engine.deposit("a", usd("4000"), ts=0)
    engine.trade("a", BTC, qty("1"), ts=0)
    # Two feeds, each with its own observation time; both see 47,000.
    engine.update_reference(BTC, "venue-a", price("47000"), ts=30_000, observed_ms=29_000)
    engine.update_reference(BTC, "venue-b", price("47010"), ts=30_000, observed_ms=30_000)
    # The primary prints a manipulated 60,000: rejected against the reference median.
    verdict = engine.update_price(BTC, price("60000"), ts=30_000)
    assert not verdict.accepted and "reference median" in verdict.detail
    # The primary keeps printing 60,000 (consistent prints do not re-anchor against a
    # quorum); the feeds keep quoting. After 5 minutes an alert, after 15 the mark follows
    # the references.
    ts = 30_000
    while ts < 30_000 + 16 * MINUTE:
        ts += MINUTE
        engine.update_reference(BTC, "venue-a", price("47000"), ts=ts)
        engine.update_reference(BTC, "venue-b", price("47010"), ts=ts)
        engine.update_price(BTC, price("60000"), ts=ts)
    kinds = [e.kind for e in engine.log]
    assert kinds.count("guard_alert") == 1
    assert engine.state.assets[BTC].mark_source == "reference"
    margin = engine.view(ts).assets[BTC]
    assert not margin.guarded and margin.price == price("47005")
    assert [r.bucket for r in engine.run_liquidations(keeper="k", ts=ts)] == ["a"]
    # The primary recovers and agrees with the feeds: it is the mark again.
    engine.update_price(BTC, price("47020"), ts=ts + 1_000)
    assert engine.state.assets[BTC].mark_source == "oracle"
    assert engine.view().price(BTC) == price("47020")


def test_reference_quotes_must_not_come_from_the_future_or_out_of_order() -> None:
    engine = _engine()
    engine.update_reference(BTC, "x", price("50000"), ts=10_000, observed_ms=9_000)
    with pytest.raises(InputError, match="after ts"):
        engine.update_reference(BTC, "x", price("50000"), ts=10_000, observed_ms=11_000)
    with pytest.raises(InputError, match="time order"):
        engine.update_reference(BTC, "x", price("50000"), ts=10_000, observed_ms=8_000)


def test_backstop_vault_takes_a_bankrupt_position_before_adl() -> None:
    engine = _engine()
    engine.seed_insurance(usd("100"), ts=0)
    engine.deposit("bob", usd("5100"), ts=0)
    engine.trade("bob", BTC, qty("2"), ts=0)  # the vault is short 2
    engine.update_price(BTC, price("47000"), ts=1_000, reference=price("47000"))
    # Equity -900; a market close-out would leave 932.46 of bad debt, more than the fund's
    # 100: the vault takes both BTC at the mark and gives 800 on top (bankruptcy price
    # 47,400), the fund pays the last 100. No ADL, nothing socialized.
    report = engine.liquidate("bob", keeper="k", ts=1_000)
    assert report.step == "backstop" and report.closed
    assert (report.fund_paid, report.backstop_absorbed) == (usd("100"), usd("800"))
    assert report.adl_absorbed == report.socialized == 0
    assert engine.state.buckets["bob"].balance == 0
    assert "BTCUSDT" not in engine.state.buckets["vault"].positions  # its short is closed
    assert engine.state.adl_fills == 0 and violations(engine) == []


def test_idempotency_key_applies_a_command_once() -> None:
    engine = _engine()
    engine.deposit("a", usd("100"), ts=0, key="deposit-1")
    with pytest.raises(DuplicateCommandError, match="deposit-1") as caught:
        engine.deposit("a", usd("100"), ts=0, key="deposit-1")
    assert caught.value.command == engine.state.keys["deposit-1"]
    assert engine.state.buckets["a"].balance == usd("100")
    # A refused command does not use up its key.
    with pytest.raises(InsufficientMarginError):
        engine.trade("a", BTC, qty("1000"), ts=0, key="big")
    assert "big" not in engine.state.keys
    replayed = Engine.replay(list(engine.log), engine.config)
    assert replayed.state.keys == engine.state.keys


def test_adl_against_a_bankrupt_counterparty_settles_its_debt_in_the_same_step() -> None:
    """Found by the fuzzer (seed 713): two mirror accounts, one bankrupt, and no vault
    capacity. Liquidating the solvent one closes the bankrupt one's position by ADL: its
    realized debt goes to the fund and socialization at once, never left without positions."""
    engine = _engine(ramp_ms=HOUR_MS)
    engine.seed_insurance(usd("100"), ts=0)
    engine.deposit("long", usd("3000"), ts=0)
    engine.deposit("short", usd("2600"), ts=0)
    engine.trade("long", BTC, qty("1"), ts=0, counterparty="short")
    engine.withdraw("vault", engine.state.buckets["vault"].balance, ts=0)
    engine.update_price(BTC, price("52800"), ts=1_000, reference=price("52800"))
    assert engine.equity("short") == -usd("200") and engine.equity("long") == usd("5800")
    # A tightening to 5x: once ramped in, the solvent long is below maintenance too.
    engine.apply_snapshot(snapshot(BTC, 2, 5.0, as_of_ms=1_000, valid_ms=HOUR_MS * 10), ts=1_000)
    ts = 1_000 + HOUR_MS
    engine.update_price(BTC, price("52800"), ts=ts, reference=price("52800"))
    # A keeper's pass takes the most at risk first: the bankrupt short.
    assert engine.liquidatable(ts) == ["short", "long"]
    report = engine.liquidate("long", keeper="k", ts=ts)
    assert report.step == "adl" and report.closed and report.penalty == usd("528")
    # The short's 200 of debt: 100 from the fund, 100 written off (nobody holds a position).
    assert (report.bad_debt, report.fund_paid, report.socialized) == (usd("200"),) + (
        usd("100"),
    ) * 2
    assert not engine.state.buckets["short"].positions
    assert engine.state.buckets["short"].balance == 0
    assert engine.state.ledger.socialized_loss == -usd("100")
    assert violations(engine) == []
