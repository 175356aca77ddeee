"""The liquidation engine: commands, queries and replay over an event-sourced state.

Commands validate against the current state and emit events; only the fold
(:func:`liquidation.state.apply_event`) changes state. Every command takes the venue time
``ts`` (epoch ms), which may not go backwards. Money is integer micro-USD, quantities integer
lots of 1e-8 (see :mod:`liquidation.money`).

Examples
--------
>>> from liquidation.config import AssetConfig, EngineConfig
>>> from liquidation.money import usd, qty, price
>>> engine = Engine(EngineConfig(assets=(AssetConfig("BTCUSDT"),)))
>>> _ = engine.update_price("BTCUSDT", price("60000"), ts=1_000)
>>> engine.deposit("alice", usd("10000"), ts=1_000)
>>> engine.trade("alice", "BTCUSDT", qty("1"), ts=1_000)
>>> engine.maintenance_margin("alice") > 0
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from liquidation.accounts import Bucket, Position, bucket_id
from liquidation.config import EngineConfig
from liquidation.errors import (
    ClockError,
    EventLogError,
    GuardedAssetError,
    InsufficientBalanceError,
    InsufficientMarginError,
    NotLiquidatableError,
    RateLimitedError,
    SnapshotValidationError,
    StaleOracleError,
    UnknownAccountError,
    WithdrawalRestrictedError,
)
from liquidation.events import Event, EventLog, SQLiteEventStore
from liquidation.fills import fill_amounts
from liquidation.insurance import (
    GovernanceDecision,
    book_stressed_loss,
    historical_stressed_loss,
    review,
)
from liquidation.money import charge, value
from liquidation.oracle import GuardVerdict, PriceObservation, check_observation, update_twap
from liquidation.scan import MarginArrays, ScanResult
from liquidation.snapshot import MarginParameters, check_bounds
from liquidation.state import (
    EngineState,
    apply_event,
    initial_state,
    ledger_discrepancy,
    state_digest,
)
from liquidation.valuation import (
    MarketView,
    equity,
    initial_margin,
    liquidation_prices,
    maintenance_margin,
    market_view,
)
from liquidation.waterfall import LiquidationReport, liquidate_bucket

_MARKET_KINDS = frozenset({"price", "guard", "snapshot"})


@dataclass(frozen=True)
class BucketSummary:
    """Per-bucket query result (micro-USD; ``health = equity / MM``, inf without MM)."""

    bucket: str
    balance: int
    equity: int
    initial_margin: int
    maintenance_margin: int
    health: float
    liquidation_prices: dict[str, int | None]


class Engine:
    """Deterministic, event-sourced margin and liquidation engine.

    Parameters
    ----------
    config : EngineConfig
        Assets, guard, fees, liquidation, insurance and portfolio parameters.
    store : SQLiteEventStore, optional
        Write-through persistence of every event.
    """

    def __init__(self, config: EngineConfig, store: SQLiteEventStore | None = None) -> None:
        self.config = config
        self.state: EngineState = initial_state(config)
        self.log = EventLog(store)
        self._market_version = 0
        self._view_cache: tuple[int, int, MarketView] | None = None

    # -- replay --------------------------------------------------------------------------
    @classmethod
    def replay(cls, events: Iterable[Event], config: EngineConfig) -> Engine:
        """Rebuild an engine by folding ``events`` from an empty state."""
        engine = cls(config)
        for event in events:
            if event.seq != len(engine.log):
                raise EventLogError(
                    f"replay got event #{event.seq} ({event.kind}) where #{len(engine.log)} "
                    "was due; replay the log from its first event, in order, without gaps"
                )
            engine.log.append(event.ts_ms, event.kind, event.data)
            engine._apply(engine.log[-1])
        return engine

    @classmethod
    def from_store(cls, path: str | Path, config: EngineConfig) -> Engine:
        """Rebuild an engine from a SQLite event store (read-only: no new writes go there)."""
        with SQLiteEventStore(path) as store:
            events = store.load()
        return cls.replay(events, config)

    @classmethod
    def resume(cls, store: SQLiteEventStore, config: EngineConfig) -> Engine:
        """Replay ``store`` and keep writing new events through to it (a restart)."""
        engine = cls.replay(store.load(), config)
        engine.log.attach(store)
        return engine

    def digest(self) -> str:
        """SHA-256 of the canonical state; equal digests mean identical states."""
        return state_digest(self.state)

    def ledger_discrepancy(self) -> int:
        """Ledger identity residual (0 when value is conserved to the unit)."""
        return ledger_discrepancy(self.state)

    # -- collateral ----------------------------------------------------------------------
    def deposit(self, account: str, amount: int, *, ts: int) -> None:
        """Credit ``amount`` micro-USD of collateral to the account's escrow (cross bucket)."""
        bucket_id(account)
        _positive(amount, f"deposit to {account!r}")
        self._emit(ts, "deposit", {"account": account, "amount": amount})

    def seed_insurance(self, amount: int, *, ts: int) -> None:
        """Deposit ``amount`` micro-USD into the insurance fund."""
        _positive(amount, "insurance seed")
        self._emit(ts, "fund_deposit", {"amount": amount})

    def withdraw(self, account: str, amount: int, *, ts: int) -> None:
        """Withdraw collateral if equity stays at or above initial margin afterwards.

        Raises
        ------
        WithdrawalRestrictedError
            If the cross bucket holds a position on a guarded asset.
        InsufficientBalanceError, InsufficientMarginError
        """
        _positive(amount, f"withdrawal from {account!r}")
        bucket = self._bucket(account)
        self._clock(ts)
        for symbol in sorted(bucket.positions):
            if self._refresh_guard(symbol, ts):
                raise WithdrawalRestrictedError(
                    f"withdrawal of {amount} from {account!r} at ts={ts} refused: it holds "
                    f"{symbol}, whose oracle is guarded "
                    f"({self.state.assets[symbol].guard_reason}); retry after a valid price"
                )
        if amount > bucket.balance:
            raise InsufficientBalanceError(
                f"withdrawal of {amount} from {account!r} at ts={ts} exceeds its balance "
                f"{bucket.balance}"
            )
        view = self._view(ts)
        after = equity(bucket.balance - amount, bucket.positions.values(), view)
        im = initial_margin(bucket.positions.values(), bucket.portfolio, view, self._oi())
        if after < im:
            raise InsufficientMarginError(
                f"withdrawal of {amount} from {account!r} at ts={ts} would leave equity "
                f"{after} below initial margin {im}; withdraw at most {max(0, after + amount - im)}"
            )
        self._emit(ts, "withdraw", {"account": account, "amount": amount})

    # -- oracle and risk parameters -------------------------------------------------------
    def update_price(
        self,
        asset: str,
        price: int,
        *,
        ts: int,
        confidence: int = 0,
        reference: int | None = None,
    ) -> GuardVerdict:
        """Submit an oracle price; the guard accepts it or trips the asset.

        Returns
        -------
        GuardVerdict
            Also recorded in the log (a ``price`` event, and a ``guard`` event on change).
        """
        state = self.state.assets[self.config.asset(asset).symbol]
        obs = PriceObservation(asset, price, ts, confidence, reference)
        verdict = check_observation(obs, state.twap, self.config.oracle)
        twap = (
            update_twap(state.twap, state.twap_ms, price, ts, self.config.oracle.twap_window_ms)
            if verdict.accepted
            else state.twap
        )
        self._emit(
            ts,
            "price",
            {
                "asset": asset,
                "price": price,
                "confidence": confidence,
                "reference": reference,
                "twap": twap,
                "accepted": verdict.accepted,
                "reason": verdict.reason if not verdict.detail else verdict.detail,
            },
        )
        if verdict.accepted and state.guarded:
            self._emit(ts, "guard", {"asset": asset, "guarded": False, "reason": "ok"})
        elif not verdict.accepted and (not state.guarded or state.guard_reason != verdict.reason):
            self._emit(ts, "guard", {"asset": asset, "guarded": True, "reason": verdict.reason})
        return verdict

    def update_prices(
        self, prices: Mapping[str, int], *, ts: int, references: Mapping[str, int] | None = None
    ) -> dict[str, GuardVerdict]:
        """Submit one tick of prices (a bar of a replay), in configuration order."""
        refs = references or {}
        return {
            symbol: self.update_price(symbol, prices[symbol], ts=ts, reference=refs.get(symbol))
            for symbol in self.config.symbols
            if symbol in prices
        }

    def tick(self, ts: int) -> None:
        """Advance the clock to ``ts`` and trip the guard of every asset gone stale."""
        self._clock(ts)
        for symbol in self.config.symbols:
            self._refresh_guard(symbol, ts)
        if ts > self.state.clock_ms:
            self._emit(ts, "clock", {})

    def apply_snapshot(self, snapshot: Mapping[str, Any], *, ts: int) -> MarginParameters:
        """Apply a RiskSnapshot v1 dict: validate it and start the multiplier ramp.

        Raises
        ------
        SnapshotValidationError
            Malformed, out-of-bounds, or an ``update_id`` not above the last one.
        """
        params = MarginParameters.from_risk_snapshot(snapshot)
        asset_cfg = self.config.asset(params.asset)
        check_bounds(params, asset_cfg)
        current = self.state.assets[params.asset].params
        if current is not None and params.update_id <= current.update_id:
            raise SnapshotValidationError(
                f"RiskSnapshot(asset={params.asset!r}, update_id={params.update_id}) is not "
                f"newer than the applied update_id {current.update_id}; updates must increase"
            )
        self._clock(ts)
        before = self._view(ts).assets[params.asset]
        self._emit(
            ts,
            "snapshot",
            {
                "asset": params.asset,
                "params": params.to_dict(),
                "ramp_from": before.existing,
                "ramp_start": ts,
            },
        )
        return params

    def set_margin_mode(self, account: str, portfolio: bool, *, ts: int) -> None:
        """Switch the cross bucket between standard and portfolio margin.

        Allowed only if equity covers the initial margin in the new mode.
        """
        bucket = self._bucket(account)
        if bucket.portfolio == portfolio:
            return
        self._clock(ts)
        for symbol in sorted(bucket.positions):
            self._require_unguarded(symbol, ts, f"switch margin mode of {account!r}")
        view = self._view(ts)
        im = initial_margin(bucket.positions.values(), portfolio, view, self._oi())
        eq = equity(bucket.balance, bucket.positions.values(), view)
        if eq < im:
            raise InsufficientMarginError(
                f"{account!r} at ts={ts}: equity {eq} below the {im} initial margin of "
                f"{'portfolio' if portfolio else 'standard'} mode"
            )
        self._emit(ts, "margin_mode", {"account": account, "portfolio": portfolio})

    # -- trading -------------------------------------------------------------------------
    def trade(
        self,
        account: str,
        asset: str,
        dq: int,
        *,
        ts: int,
        isolated: bool = False,
        margin: int = 0,
    ) -> None:
        """Buy (``dq > 0``) or sell ``dq`` lots at the oracle price, paying the taker fee.

        A trade that adds risk must leave the bucket's equity at or above its initial margin
        (new risk pays the target multiplier at once). For an isolated position ``margin``
        micro-USD moves from the cross bucket into the isolated bucket first, and the cross
        bucket must still cover its own initial margin. A trade that only reduces is always
        allowed unless it would leave the bucket bankrupt (that is the waterfall's job).
        No trading happens at a guarded price.
        """
        symbol = self.config.asset(asset).symbol
        cross = self._bucket(account)
        if dq == 0:
            raise ValueError(f"trade of zero lots for {account!r} {symbol}")
        if margin < 0 or (margin and not isolated):
            raise ValueError("margin must be >= 0 and only given for isolated positions")
        self._clock(ts)
        self._require_unguarded(symbol, ts, f"trade {symbol} for {account!r}")
        target_id = bucket_id(account, symbol if isolated else None)
        bucket = self.state.buckets.get(target_id)
        view = self._view(ts)
        price = view.price(symbol)
        position = bucket.positions.get(symbol) if bucket is not None else None
        old = position.lots if position is not None else 0
        legs = _split_flip(old, dq)
        adds_risk = abs(old + dq) > abs(old) or len(legs) == 2
        fills, sim, cash = self._plan_trade(target_id, symbol, position, legs, price, ts)
        others = [p for a, p in (bucket.positions.items() if bucket else ()) if a != symbol]
        after_positions = others + ([sim] if sim.lots else [])
        balance = (bucket.balance if bucket else 0) + (margin if isolated else 0) + cash
        after_equity = equity(balance, after_positions, view)
        if adds_risk:
            oi = self._oi()
            oi[symbol] = oi.get(symbol, 0) + max(old + dq, 0) - max(old, 0)
            portfolio = bucket.portfolio if bucket else False
            im = initial_margin(after_positions, portfolio, view, oi)
            if after_equity < im:
                raise InsufficientMarginError(
                    f"{target_id!r} {symbol} trade of {dq} lots at ts={ts}: equity after "
                    f"{after_equity} < initial margin {im}; deposit or trade smaller"
                )
        elif after_equity < 0:
            raise InsufficientMarginError(
                f"{target_id!r} {symbol} reduction at ts={ts} would leave equity {after_equity} "
                "< 0; the bucket must go through liquidation"
            )
        if isolated and margin:
            cross_equity = equity(cross.balance - margin, cross.positions.values(), view)
            cross_im = initial_margin(cross.positions.values(), cross.portfolio, view, self._oi())
            if margin > cross.balance or cross_equity < cross_im:
                raise InsufficientMarginError(
                    f"moving {margin} into isolated {target_id!r} at ts={ts} leaves the "
                    f"cross bucket of {account!r} below initial margin ({cross_equity} < "
                    f"{cross_im}) or exceeds its balance {cross.balance}"
                )
            self._emit(ts, "transfer", {"account": account, "asset": symbol, "amount": margin})
        for fill in fills:
            self._emit(ts, "fill", fill)
        self.sweep_isolated(target_id, ts)

    def _plan_trade(
        self,
        target_id: str,
        symbol: str,
        position: Position | None,
        legs: list[int],
        price: int,
        ts: int,
    ) -> tuple[list[dict[str, Any]], Position, int]:
        """Fill events of a trade's legs, the resulting position and the cash it books."""
        fee_rate = self.config.fees.taker_fee_rate
        addon_rate = self.state.insurance.fee_addon_bps / 10_000
        sim = (
            Position(symbol, position.lots, position.cost, position.risk_since_ms)
            if position is not None
            else Position(symbol, 0, 0, ts)
        )
        fills: list[dict[str, Any]] = []
        cash = 0
        for leg in legs:
            amounts = fill_amounts(sim if sim.lots else None, leg, price, ts)
            traded = abs(value(leg, price))
            fee, addon = charge(traded, fee_rate), charge(traded, addon_rate)
            fills.append(
                {
                    "bucket": target_id,
                    "asset": symbol,
                    "dq": leg,
                    "price": price,
                    "fee": fee,
                    "fee_addon": addon,
                    "realized_pnl": amounts.realized_pnl,
                    "cost_delta": amounts.cost_delta,
                    "risk_since": amounts.risk_since_ms,
                    "reason": "trade",
                }
            )
            sim = Position(
                symbol, sim.lots + leg, sim.cost + amounts.cost_delta, amounts.risk_since_ms
            )
            cash += amounts.realized_pnl - fee - addon
        return fills, sim, cash

    def close(self, account: str, asset: str, *, ts: int, isolated: bool = False) -> None:
        """Close the whole position of ``account`` in ``asset``."""
        target = self._bucket(bucket_id(account, asset if isolated else None))
        position = target.positions.get(asset)
        if position is None:
            raise UnknownAccountError(f"{target.bucket_id!r} holds no {asset} position to close")
        self.trade(account, asset, -position.lots, ts=ts, isolated=isolated)

    def apply_funding(self, asset: str, rate: float, *, ts: int) -> int:
        """Apply one funding payment: longs pay ``rate * notional`` to shorts' side.

        Each position's payment is truncated toward zero. Returns the number of positions
        charged or credited.
        """
        symbol = self.config.asset(asset).symbol
        self._clock(ts)
        self._require_unguarded(symbol, ts, f"apply funding on {symbol}")
        price = self._view(ts).price(symbol)
        payments = []
        for bid in sorted(self.state.buckets):
            position = self.state.buckets[bid].positions.get(symbol)
            if position is not None:
                amount = -int(value(position.lots, price) * rate)
                if amount:
                    payments.append([bid, amount])
        self._emit(
            ts, "funding", {"asset": symbol, "rate": rate, "price": price, "payments": payments}
        )
        return len(payments)

    # -- liquidation -----------------------------------------------------------------------
    def liquidate(self, bucket: str, *, keeper: str, ts: int) -> LiquidationReport:
        """Run one waterfall step on ``bucket`` (see :mod:`liquidation.waterfall`)."""
        self._clock(ts)
        return liquidate_bucket(self, bucket, keeper, ts)

    def scan(self, ts: int | None = None) -> ScanResult:
        """Vectorised health scan of every bucket at the engine's prices at ``ts``."""
        return self.state.book.scan(self.margin_arrays(ts))

    def run_liquidations(
        self, *, keeper: str, ts: int, exhaustive: bool = False
    ) -> list[LiquidationReport]:
        """Scan, then liquidate every flagged bucket that the exact check confirms.

        Rate-limited and (after exact check) healthy buckets are skipped. ``exhaustive`` checks
        every bucket with positions exactly instead of trusting the float scan as a filter.
        """
        self.tick(ts)
        if exhaustive:
            candidates = [b for b in sorted(self.state.buckets) if self.state.buckets[b].positions]
        else:
            result = self.scan(ts)
            ids = self.state.book.bucket_ids
            candidates = sorted(ids[i] for i in result.liquidatable)
        reports = []
        for bid in candidates:
            bucket = self.state.buckets.get(bid)
            if bucket is None or not bucket.positions:
                continue
            view = self._view(ts)
            if any(view.assets[a].guarded for a in bucket.positions):
                continue
            try:
                reports.append(self.liquidate(bid, keeper=keeper, ts=ts))
            except (NotLiquidatableError, RateLimitedError):
                continue
        return reports

    # -- insurance governance ---------------------------------------------------------------
    def review_insurance(
        self, *, ts: int, stressed_loss: int | None = None, k_sigma: float = 3.0
    ) -> GovernanceDecision:
        """Coverage review: adjust the fund's penalty share and the fee add-on, log it.

        ``stressed_loss`` defaults to the larger of the bad-debt history quantile and the
        book's bad debt under a joint ``k_sigma`` move.
        """
        self._clock(ts)
        if stressed_loss is None:
            stressed_loss = max(
                historical_stressed_loss(
                    self.state.insurance.bad_debts, self.config.insurance.stress_quantile
                ),
                book_stressed_loss(self.state.book, self.margin_arrays(ts), k_sigma),
            )
        ins = self.state.insurance
        decision = review(
            ins.fund, stressed_loss, ins.fund_share, ins.fee_addon_bps, self.config.insurance
        )
        self._emit(
            ts,
            "insurance",
            {
                "fund_share": decision.fund_share,
                "fee_addon_bps": decision.fee_addon_bps,
                "coverage": decision.coverage,
                "stressed_loss": decision.stressed_loss,
            },
        )
        return decision

    # -- queries ---------------------------------------------------------------------------
    def equity(self, bucket: str, ts: int | None = None) -> int:
        """Collateral plus unrealized PnL at oracle prices, micro-USD."""
        b = self._bucket(bucket)
        return equity(b.balance, b.positions.values(), self._view(self._ts(ts)))

    def initial_margin(self, bucket: str, ts: int | None = None) -> int:
        """Initial margin at target multipliers and current open interest, micro-USD."""
        b = self._bucket(bucket)
        return initial_margin(
            b.positions.values(), b.portfolio, self._view(self._ts(ts)), self._oi()
        )

    def maintenance_margin(self, bucket: str, ts: int | None = None) -> int:
        """Maintenance margin (ramped for older positions), micro-USD."""
        b = self._bucket(bucket)
        return maintenance_margin(b.positions.values(), b.portfolio, self._view(self._ts(ts)))

    def health(self, bucket: str, ts: int | None = None) -> float:
        """``equity / MM``; below 1 means liquidatable, ``inf`` without positions."""
        mm = self.maintenance_margin(bucket, ts)
        eq = self.equity(bucket, ts)
        return eq / mm if mm > 0 else math.inf

    def summary(self, bucket: str, ts: int | None = None) -> BucketSummary:
        """Everything about one bucket at once."""
        b = self._bucket(bucket)
        view = self._view(self._ts(ts))
        eq = equity(b.balance, b.positions.values(), view)
        mm = maintenance_margin(b.positions.values(), b.portfolio, view)
        return BucketSummary(
            bucket=bucket,
            balance=b.balance,
            equity=eq,
            initial_margin=initial_margin(b.positions.values(), b.portfolio, view, self._oi()),
            maintenance_margin=mm,
            health=eq / mm if mm > 0 else math.inf,
            liquidation_prices=liquidation_prices(b, view),
        )

    def buckets_of(self, account: str) -> list[str]:
        """Ids of the cross and isolated buckets of ``account``."""
        return sorted(b for b, bucket in self.state.buckets.items() if bucket.account == account)

    def margin_arrays(self, ts: int | None = None) -> MarginArrays:
        """Per-asset arrays for :meth:`PositionBook.scan` at ``ts`` (default: engine clock)."""
        view = self._view(self._ts(ts))
        cfgs = self.config.assets
        margins = [view.assets[a.symbol] for a in cfgs]
        return MarginArrays(
            price=np.array([m.price / 1e6 if m.price else 0.0 for m in margins]),
            guarded=np.array([m.guarded or m.price is None for m in margins]),
            base_imf=np.array([a.base_imf for a in cfgs]),
            maintenance_fraction=np.array([a.maintenance_fraction for a in cfgs]),
            size_imf_factor=np.array([a.size_imf_factor for a in cfgs]),
            size_reference_usd=np.array([a.size_reference_usd for a in cfgs]),
            imf_cap=np.array([a.imf_cap for a in cfgs]),
            mult_target=np.array([m.target for m in margins]),
            mult_existing=np.array([m.existing for m in margins]),
            change_start_ms=np.array([m.change_start_ms for m in margins], dtype=np.int64),
            sigma=np.array([m.sigma * m.target for m in margins]),
            returns=view.returns,
            vol_level=view.vol_level,
            liquidity_cost=view.liquidity_cost,
            floor_fraction=self.config.portfolio.floor_fraction,
        )

    def view(self, ts: int | None = None) -> MarketView:
        """The frozen per-asset margin inputs at ``ts`` (default: engine clock)."""
        return self._view(self._ts(ts))

    # -- internals used by the waterfall ---------------------------------------------------
    def emit(self, ts: int, kind: str, data: dict[str, Any]) -> Event:
        """Append an event and fold it (the waterfall's only way to change state)."""
        return self._emit(ts, kind, data)

    def sweep_isolated(self, bucket: str, ts: int) -> None:
        """Return the balance of an emptied isolated bucket to its cross bucket."""
        b = self.state.buckets.get(bucket)
        if b is not None and b.is_isolated and not b.positions and b.balance > 0:
            self._emit(
                ts,
                "transfer",
                {"account": b.account, "asset": b.isolated_asset, "amount": -b.balance},
            )

    def require_unguarded(self, symbol: str, ts: int, action: str) -> None:
        """Raise if ``symbol`` is guarded at ``ts`` (recording a newly stale guard)."""
        self._require_unguarded(symbol, ts, action)

    def _emit(self, ts: int, kind: str, data: dict[str, Any]) -> Event:
        self._clock(ts)
        event = self.log.append(ts, kind, data)
        self._apply(event)
        return event

    def _apply(self, event: Event) -> None:
        apply_event(self.state, event)
        if event.kind in _MARKET_KINDS:
            self._market_version += 1

    def _view(self, ts: int) -> MarketView:
        cached = self._view_cache
        if cached is not None and cached[0] == ts and cached[1] == self._market_version:
            return cached[2]
        view = market_view(self.state.assets, self.config, ts)
        self._view_cache = (ts, self._market_version, view)
        return view

    def _oi(self) -> dict[str, int]:
        return {s: a.long_oi_lots for s, a in self.state.assets.items()}

    def _ts(self, ts: int | None) -> int:
        return self.state.clock_ms if ts is None else ts

    def _clock(self, ts: int) -> None:
        if ts < self.state.clock_ms:
            raise ClockError(
                f"command at ts={ts} is before the engine clock {self.state.clock_ms}; "
                "commands must come in time order"
            )

    def _bucket(self, bucket: str) -> Bucket:
        found = self.state.buckets.get(bucket)
        if found is None:
            raise UnknownAccountError(f"no margin bucket {bucket!r}; deposit to the account first")
        return found

    def _refresh_guard(self, symbol: str, ts: int) -> bool:
        """Record a newly stale oracle as a guard event; return whether it is guarded."""
        margin = self._view(ts).assets[symbol]
        asset = self.state.assets[symbol]
        if margin.guarded and not asset.guarded:
            self._emit(ts, "guard", {"asset": symbol, "guarded": True, "reason": "stale"})
        return margin.guarded

    def _require_unguarded(self, symbol: str, ts: int, action: str) -> None:
        if self._refresh_guard(symbol, ts):
            asset = self.state.assets[symbol]
            if asset.price is None or asset.guard_reason in ("stale", "no_price"):
                raise StaleOracleError(
                    f"cannot {action} at ts={ts}: {symbol} oracle is stale (last accepted "
                    f"price at {asset.price_ms}, heartbeat {self.config.oracle.heartbeat_ms} ms)"
                )
            raise GuardedAssetError(
                f"cannot {action} at ts={ts}: {symbol} oracle guard tripped "
                f"({asset.guard_reason}); wait for a price within the guard rails"
            )


def _split_flip(old: int, dq: int) -> list[int]:
    """Split a trade that flips the position's side into a full close and an open."""
    new = old + dq
    if old != 0 and new != 0 and (old > 0) != (new > 0):
        return [-old, new]
    return [dq]


def _positive(amount: int, what: str) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValueError(f"{what}: amount must be a positive int of micro-USD, got {amount!r}")
