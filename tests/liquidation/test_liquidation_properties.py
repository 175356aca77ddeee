"""Hypothesis stateful tests: random sequences of every command against the invariants.

Sequences mix deposits, withdrawals, opens and closes (cross and isolated), price moves (some
confirmed by a reference, some wild or with wide confidence bands so the guard trips), time
jumps (stale oracle, snapshot expiry, ramp progress), funding, snapshot changes (rises, cuts,
``stale``/``halted`` status), portfolio-margin switches, insurance reviews and liquidations.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from liquidation.engine import Engine
from liquidation.errors import (
    GuardedAssetError,
    NotLiquidatableError,
    RateLimitedError,
    SnapshotValidationError,
    StaleOracleError,
)
from liquidation.events import SQLiteEventStore
from liquidation.fuzz import REFUSALS  # the refusals a valid command may meet
from liquidation.money import MICRO, QTY_SCALE, usd
from liquidation.valuation import maintenance_margin
from tests.liquidation.liq_builders import fund_vault, simple_config, snapshot

BTC, ETH = "BTCUSDT", "ETHUSDT"
ACCOUNTS = ("a0", "a1", "a2", "a3")
CONFIG = simple_config(
    (BTC, ETH),
    correlation=((1.0, 0.8), (0.8, 1.0)),
    fee=0.0005,
    size_imf_factor=0.01,
    heartbeat_ms=120_000,
    ramp_ms=600_000,
    cooldown_ms=10_000,
    insurance_cap_per_event_usd=3_000.0,
    min_partial_notional_usd=5_000.0,
)
LOT_UNIT = {BTC: QTY_SCALE // 100, ETH: QTY_SCALE // 10}  # 0.01 BTC, 0.1 ETH


class EngineMachine(RuleBasedStateMachine):
    """Drives one engine; every invariant is checked after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine(CONFIG)
        self.ts = 0
        self.update_ids = {BTC: 0, ETH: 0}
        self.prices = {BTC: 50_000 * MICRO, ETH: 2_500 * MICRO}
        for symbol, px in self.prices.items():
            self.engine.update_price(symbol, px, ts=0)
            self._snapshot(symbol, 1.0, "ok", 86_400_000)
        self.engine.seed_insurance(usd("2000"), ts=0)
        fund_vault(self.engine, usd_amount=1_000_000)
        self.liquidations = 0

    @initialize(
        dollars=st.lists(st.integers(2_000, 20_000), min_size=4, max_size=4),
        leverage=st.lists(
            st.floats(8.0, 19.5).flatmap(lambda x: st.sampled_from([x, -x])),
            min_size=4,
            max_size=4,
        ),
        hedge=st.booleans(),
    )
    def open_book(self, dollars: list[int], leverage: list[float], hedge: bool) -> None:
        """Fund every account and open a levered book, so liquidations are reachable."""
        for i, account in enumerate(ACCOUNTS):
            self.engine.deposit(account, dollars[i] * MICRO, ts=self.ts)
            symbol = BTC if i % 2 == 0 else ETH
            lots = int(dollars[i] * leverage[i] / (self.prices[symbol] / MICRO) * QTY_SCALE)
            if lots:
                try:
                    self.engine.trade(account, symbol, lots, ts=self.ts)
                except REFUSALS:
                    continue
            if hedge and i == 0:
                try:
                    self.engine.set_margin_mode(account, True, ts=self.ts)
                except REFUSALS:
                    continue

    def _snapshot(self, symbol: str, multiplier: float, status: str, valid_ms: int) -> None:
        self.update_ids[symbol] += 1
        self.engine.apply_snapshot(
            snapshot(
                symbol,
                self.update_ids[symbol],
                multiplier,
                as_of_ms=self.ts,
                valid_ms=valid_ms,
                status=status,
                sigma=0.04,
            ),
            ts=self.ts,
        )

    # -- rules ---------------------------------------------------------------------------
    @rule(dt=st.sampled_from([1_000, 10_000, 15_000, 60_000, 200_000, 3_600_000]))
    def advance(self, dt: int) -> None:
        self.ts += dt
        self.engine.tick(self.ts)
        stale = [s for s, a in self.engine.state.assets.items() if a.guard_reason == "stale"]
        if stale:
            # Property: a stale oracle liquidates nobody holding the asset.
            holders = {
                b
                for b, bucket in self.engine.state.buckets.items()
                if any(s in bucket.positions for s in stale)
            }
            reports = self.engine.run_liquidations(keeper="k", ts=self.ts, exhaustive=True)
            assert not holders & {r.bucket for r in reports}

    @rule(account=st.sampled_from(ACCOUNTS), dollars=st.integers(100, 20_000))
    def deposit(self, account: str, dollars: int) -> None:
        self.engine.deposit(account, dollars * MICRO + 7, ts=self.ts)

    @rule(account=st.sampled_from(ACCOUNTS), dollars=st.integers(1, 20_000))
    def withdraw(self, account: str, dollars: int) -> None:
        try:
            self.engine.withdraw(account, dollars * MICRO, ts=self.ts)
        except REFUSALS:
            return
        # Property: an accepted withdrawal leaves equity >= initial margin.
        assert self.engine.equity(account) >= self.engine.initial_margin(account)

    @rule(
        account=st.sampled_from(ACCOUNTS),
        symbol=st.sampled_from([BTC, ETH]),
        units=st.integers(-150, 150).filter(bool),
        isolated=st.booleans(),
        margin_dollars=st.integers(0, 8_000),
    )
    def trade(
        self, account: str, symbol: str, units: int, isolated: bool, margin_dollars: int
    ) -> None:
        try:
            self.engine.trade(
                account,
                symbol,
                units * LOT_UNIT[symbol],
                ts=self.ts,
                isolated=isolated,
                margin=margin_dollars * MICRO if isolated else 0,
            )
        except REFUSALS:
            return

    @rule(account=st.sampled_from(ACCOUNTS), symbol=st.sampled_from([BTC, ETH]))
    def close(self, account: str, symbol: str) -> None:
        for isolated in (False, True):
            try:
                self.engine.close(account, symbol, ts=self.ts, isolated=isolated)
            except REFUSALS:
                continue

    @rule(
        symbol=st.sampled_from([BTC, ETH]),
        move=st.floats(-0.15, 0.15),
        confirmed=st.sampled_from([True, True, True, False]),
        wide_band=st.sampled_from([False, False, False, True]),
    )
    def price_move(self, symbol: str, move: float, confirmed: bool, wide_band: bool) -> None:
        new = max(MICRO, int(self.prices[symbol] * (1 + move)))
        verdict = self.engine.update_price(
            symbol,
            new,
            ts=self.ts,
            confidence=new // 50 if wide_band else new // 10_000,
            reference=new if confirmed else None,
        )
        if verdict.accepted:
            self.prices[symbol] = new
        elif self.engine.state.assets[symbol].mark_source == "reference":
            # A guard that lasted past the escalation bound: the mark follows the fresh
            # reference quote, so the market is priced (and liquidations may go ahead).
            assert not self.engine.view(self.ts).assets[symbol].guarded
        else:
            # Property: a deviating or wide price trips the guard and liquidates nobody.
            assert self.engine.state.assets[symbol].guarded
            holders = [
                b for b, bucket in self.engine.state.buckets.items() if symbol in bucket.positions
            ]
            count = len([e for e in self.engine.log if e.kind == "liquidation"])
            self.engine.run_liquidations(keeper="k", ts=self.ts, exhaustive=True)
            new_events = [e for e in self.engine.log if e.kind == "liquidation"][count:]
            assert not any(e.data["bucket"] in holders for e in new_events)

    @rule(
        symbol=st.sampled_from([BTC, ETH]),
        move=st.floats(0.03, 0.4).flatmap(lambda x: st.sampled_from([x, -x])),
    )
    def shock(self, symbol: str, move: float) -> None:
        """A large move confirmed by the reference source (a real crash or squeeze)."""
        new = max(MICRO, int(self.prices[symbol] * (1 + move)))
        if self.engine.update_price(symbol, new, ts=self.ts, reference=new).accepted:
            self.prices[symbol] = new

    @rule(symbol=st.sampled_from([BTC, ETH]), rate=st.floats(-0.002, 0.002))
    def funding(self, symbol: str, rate: float) -> None:
        try:
            self.engine.apply_funding(symbol, rate, ts=self.ts)
        except REFUSALS:
            return

    @rule(
        symbol=st.sampled_from([BTC, ETH]),
        multiplier=st.sampled_from([0.5, 0.8, 1.0, 1.5, 2.0, 3.0]),
        status=st.sampled_from(["ok", "ok", "fallback", "stale", "halted"]),
        valid_ms=st.sampled_from([300_000, 3_600_000, 86_400_000]),
    )
    def snapshot_change(self, symbol: str, multiplier: float, status: str, valid_ms: int) -> None:
        self._snapshot(symbol, multiplier, status, valid_ms)

    @rule(account=st.sampled_from(ACCOUNTS), portfolio=st.booleans())
    def margin_mode(self, account: str, portfolio: bool) -> None:
        try:
            self.engine.set_margin_mode(account, portfolio, ts=self.ts)
        except REFUSALS:
            return

    @rule(stressed_dollars=st.one_of(st.none(), st.integers(0, 50_000)))
    def review_insurance(self, stressed_dollars: int | None) -> None:
        stressed = None if stressed_dollars is None else stressed_dollars * MICRO
        self.engine.review_insurance(ts=self.ts, stressed_loss=stressed)

    @rule()
    def liquidate_each(self) -> None:
        """Ask for a liquidation of every bucket; check each decision independently."""
        engine = self.engine
        for bid in sorted(engine.state.buckets):
            bucket = engine.state.buckets[bid]
            if not bucket.positions:
                continue
            view = engine.view(self.ts)
            guarded = any(view.assets[a].guarded for a in bucket.positions)
            eq = engine.equity(bid, self.ts)
            mm = engine.maintenance_margin(bid, self.ts)
            try:
                report = engine.liquidate(bid, keeper="k", ts=self.ts)
            except (GuardedAssetError, StaleOracleError):
                assert guarded
                continue
            except NotLiquidatableError:
                assert eq >= mm
                continue
            except RateLimitedError:
                assert eq < mm
                continue
            self.liquidations += 1
            # Properties: never liquidate a healthy bucket or on a guarded price; each step
            # improves equity - MM or closes the bucket.
            assert not guarded
            assert eq < mm
            assert (report.equity_before, report.mm_before) == (eq, mm)
            assert report.improved
            if engine.state.buckets[bid].positions:
                # Independently: equity - MM rose (only a partial step leaves positions).
                assert report.step == "partial"
                after = engine.equity(bid, self.ts) - engine.maintenance_margin(bid, self.ts)
                assert after > eq - mm

    @precondition(lambda self: self.engine.state.buckets)
    @rule()
    def run_liquidations(self) -> None:
        reports = self.engine.run_liquidations(keeper="scanner", ts=self.ts)
        for report in reports:
            assert report.equity_before < report.mm_before
            assert report.improved

    # -- invariants ------------------------------------------------------------------------
    @invariant()
    def value_is_conserved(self) -> None:
        assert self.engine.ledger_discrepancy() == 0

    @invariant()
    def fund_never_negative(self) -> None:
        assert self.engine.state.insurance.fund >= 0

    @invariant()
    def governance_within_bounds(self) -> None:
        ins, cfg = self.engine.state.insurance, CONFIG.insurance
        assert cfg.fund_share_min <= ins.fund_share <= cfg.fund_share_max
        assert 0.0 <= ins.fee_addon_bps <= cfg.fee_addon_max_bps

    @invariant()
    def ramp_bounded_by_target(self) -> None:
        view = self.engine.view(self.ts)
        for margin in view.assets.values():
            assert all(m <= margin.target + 1e-12 for m in margin.class_mult)
            if self.ts >= margin.class_since[-1] + CONFIG.ramp_ms:
                assert set(margin.class_mult) == {margin.target}
        # A bucket's MM never exceeds the MM of the same positions at target multipliers.
        for bucket in self.engine.state.buckets.values():
            if not bucket.positions or any(view.assets[a].price is None for a in bucket.positions):
                continue
            at_target = [replace(p, risk_since_ms=self.ts) for p in bucket.positions.values()]
            ramped = maintenance_margin(bucket.positions.values(), bucket.portfolio, view)
            assert ramped <= maintenance_margin(at_target, bucket.portfolio, view)

    @invariant()
    def no_debt_without_positions(self) -> None:
        # The waterfall never leaves a closed bucket in debt; socialization only charges
        # positive balances; voluntary closes that would leave debt are refused.
        for bucket in self.engine.state.buckets.values():
            if not bucket.positions:
                assert bucket.balance >= 0

    def teardown(self) -> None:
        # Property: replay is deterministic, from memory and from SQLite.
        events = list(self.engine.log)
        replayed = Engine.replay(events, CONFIG)
        assert replayed.digest() == self.engine.digest()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "events.sqlite"
            with SQLiteEventStore(path) as store:
                store.append(events)
            assert Engine.from_store(path, CONFIG).digest() == self.engine.digest()


EngineMachine.TestCase.settings = settings(
    max_examples=80,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEngineProperties = EngineMachine.TestCase


def test_snapshot_ids_must_increase() -> None:
    engine = Engine(CONFIG)
    engine.apply_snapshot(snapshot(BTC, 5, 1.0), ts=0)
    try:
        engine.apply_snapshot(snapshot(BTC, 5, 1.5), ts=0)
    except SnapshotValidationError as exc:
        assert "update_id 5" in str(exc)
    else:
        raise AssertionError("a repeated update_id was accepted")
