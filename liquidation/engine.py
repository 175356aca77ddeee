"""The liquidation engine: atomic commands, queries and replay over an event-sourced state.

Every command runs the same way: its arguments are validated (integer money and quantities,
finite bounded rates, a time in range), its events are planned on a fork of the state
(:class:`~liquidation.transaction.Transaction`) and checked there, then the whole batch is
persisted in one store transaction and folded (:func:`liquidation.state.apply_command`). A
refused command or a failed write leaves the engine and its log exactly as they were. A
command may carry an idempotency ``key``; a second command with the same key is refused with
:class:`~liquidation.errors.DuplicateCommandError` and changes nothing.

The book is matched: every fill has a taker and a counterparty account, by default the
liquidity vault (``EngineConfig.vault``), which is also the market of liquidations and their
backstop. Long open interest equals short open interest, and PnL and funding are zero-sum.

European options on the perpetuals (:mod:`liquidation.options`) are engine commands too
(:meth:`Engine.list_option`, :meth:`Engine.trade_option`, :meth:`Engine.settle_options`,
:meth:`Engine.deleverage_greeks`): a bucket holding options is margined, scanned and
liquidated on the joint price x vol grid of its perpetuals and options
(:mod:`liquidation.options.engine_book`), and expiry settlement is an event of the log.

Every command takes the venue time ``ts`` (epoch ms), which may not go backwards. Money is
integer micro-USD, quantities integer lots of 1e-8 (see :mod:`liquidation.money`).

Examples
--------
>>> from liquidation.config import AssetConfig, EngineConfig
>>> from liquidation.money import usd, qty, price
>>> engine = Engine(EngineConfig(assets=(AssetConfig("BTCUSDT"),)))
>>> _ = engine.update_price("BTCUSDT", price("60000"), ts=1_000)
>>> engine.deposit("vault", usd("1000000"), ts=1_000)
>>> engine.deposit("alice", usd("10000"), ts=1_000)
>>> engine.trade("alice", "BTCUSDT", qty("1"), ts=1_000)
>>> engine.state.buckets["vault"].positions["BTCUSDT"].lots == -qty("1")
True
>>> engine.maintenance_margin("alice") > 0
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from liquidation import circuit_breaker as breaker
from liquidation import inputs
from liquidation.accounts import Bucket, bucket_id
from liquidation.admission import (
    guarded_legs,
    margin_state,
    require_initial_margin,
    require_priced,
    require_unguarded,
)
from liquidation.config import EngineConfig
from liquidation.errors import (
    ClockError,
    DuplicateCommandError,
    EventLogError,
    InputError,
    InsufficientBalanceError,
    InsufficientMarginError,
    NotLiquidatableError,
    RateLimitedError,
    SnapshotValidationError,
    UnknownAccountError,
    WithdrawalRestrictedError,
)
from liquidation.events import Event, EventLog, SQLiteEventStore, split_commands
from liquidation.funding import funding_payments
from liquidation.guard import plan_escalation, plan_print
from liquidation.insurance import (
    GovernanceDecision,
    book_stressed_loss,
    historical_stressed_loss,
    review,
)
from liquidation.money import MAX_AMOUNT, MAX_PRICE, value
from liquidation.options.limits import ExecutedStep
from liquidation.options.limits import breaches as _greek_breaches
from liquidation.options.series import OptionSeries
from liquidation.options.surface import VolSurface
from liquidation.rules.margin import health, may_update
from liquidation.rules.multiplier import target_multiplier
from liquidation.rules.oracle_guard import (
    GuardVerdict,
)
from liquidation.rules.ramp import at_time, retarget
from liquidation.scan import MarginArrays, ScanResult
from liquidation.snapshot import MarginParameters, check_bounds
from liquidation.state import (
    EngineState,
    apply_command,
    initial_state,
    ledger_discrepancy,
    state_digest,
)
from liquidation.trading import Order, plan_trade
from liquidation.transaction import Transaction
from liquidation.valuation import (
    MarketView,
    below_maintenance,
    bucket_equity,
    bucket_initial,
    bucket_maintenance,
    liquidation_prices,
    market_view,
    option_view,
    with_asset,
)
from liquidation.waterfall import (
    LiquidationReport,
    close_option,
    cover_settlement_debt,
    deleverage_greeks,
    liquidate,
    option_close_premium,
)

R = TypeVar("R")


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
    """Deterministic, event-sourced, matched-book margin and liquidation engine.

    Parameters
    ----------
    config : EngineConfig
        Assets, guard, mark, fees, liquidation, insurance and portfolio parameters.
    store : SQLiteEventStore, optional
        Persistence: every command is written to it in one transaction before it applies.
    """

    def __init__(self, config: EngineConfig, store: SQLiteEventStore | None = None) -> None:
        self.config = config
        self.state: EngineState = initial_state(config)
        self.log = EventLog(store)
        self.torn_tail: list[Event] = []
        self._version = 0
        self._view_cache: tuple[int, int, MarketView] | None = None
        self._option_rows_cache: tuple[int, Any] | None = None
        self._option_book_cache: tuple[tuple[int, int], Any] | None = None

    # -- replay and recovery ------------------------------------------------------------------
    @classmethod
    def replay(cls, events: Iterable[Event], config: EngineConfig) -> Engine:
        """Rebuild an engine by folding ``events`` command by command from an empty state.

        A torn tail (a last command without its final event) is not applied; it is kept in
        :attr:`torn_tail`, and the engine continues from the last whole command.

        Raises
        ------
        EventLogError
            On a gap, events out of order, or an unfinished command in the middle of the log.
        """
        commands, torn = split_commands(list(events))
        engine = cls(config)
        for command in commands:
            apply_command(engine.state, command)
            engine.log.commit(command)
        engine.torn_tail = torn
        return engine

    @classmethod
    def from_store(cls, path: str | Path, config: EngineConfig) -> Engine:
        """Rebuild an engine from a SQLite event store (read-only: no new writes go there)."""
        with SQLiteEventStore(path) as store:
            events = store.load()
        return cls.replay(events, config)

    @classmethod
    def resume(cls, store: SQLiteEventStore, config: EngineConfig) -> Engine:
        """Replay ``store`` and keep writing new commands to it (a restart).

        The resume check: if the log ends in a command without its final event (a torn
        write), that command is closed with an ``abort`` event, so it never takes effect, and
        the engine continues after it.
        """
        engine = cls.replay(store.load(), config)
        torn = engine.torn_tail
        if torn:
            abort = Event(
                seq=torn[-1].seq + 1,
                ts_ms=max(e.ts_ms for e in torn),
                kind="abort",
                data={"events": len(torn)},
                cmd=torn[0].cmd,
                last=True,
            )
            store.append([abort])
            apply_command(engine.state, [*torn, abort])
            engine.log.commit([*torn, abort])
            engine.torn_tail = []
        engine.log.attach(store)
        return engine

    def digest(self) -> str:
        """SHA-256 of the canonical state; equal digests mean identical states."""
        return state_digest(self.state)

    def ledger_discrepancy(self) -> int:
        """Ledger identity residual (0 when value is conserved to the unit)."""
        return ledger_discrepancy(self.state)

    # -- collateral ---------------------------------------------------------------------------
    def deposit(self, account: str, amount: int, *, ts: int, key: str | None = None) -> None:
        """Credit ``amount`` micro-USD of collateral to the account's cross bucket."""
        inputs.name(account, "account")
        inputs.amount(amount, f"deposit to {account!r}")

        def build(tx: Transaction) -> None:
            tx.emit("deposit", {"account": account, "amount": amount})

        self._run(ts, key, build)

    def seed_insurance(self, amount: int, *, ts: int, key: str | None = None) -> None:
        """Deposit ``amount`` micro-USD into the insurance fund."""
        inputs.amount(amount, "insurance seed")

        def build(tx: Transaction) -> None:
            tx.emit("fund_deposit", {"amount": amount})

        self._run(ts, key, build)

    def withdraw(self, account: str, amount: int, *, ts: int, key: str | None = None) -> None:
        """Withdraw collateral from the cross bucket if equity stays at or above IM.

        Collateral leaves only through the cross bucket (isolated margin returns to it when
        its position closes), and not while any bucket of the account holds a position on a
        guarded asset: its equity could not be valued.

        Raises
        ------
        WithdrawalRestrictedError
            A bucket of the account holds a position on a guarded asset.
        InsufficientBalanceError, InsufficientMarginError
        """
        inputs.name(account, "account (withdrawals are from the cross bucket)")
        inputs.amount(amount, f"withdrawal from {account!r}")

        def build(tx: Transaction) -> None:
            cross = self._require_bucket(tx, account)
            view = tx.view()
            for bucket in self._account_buckets(tx, account):
                legs = guarded_legs(view, bucket)
                if legs:
                    raise WithdrawalRestrictedError(
                        f"withdrawal of {amount} from {account!r} at ts={tx.ts} refused: "
                        f"{bucket.bucket_id!r} holds {', '.join(legs)}, whose oracle is "
                        "guarded; retry after a valid price"
                    )
            if amount > cross.balance:
                raise InsufficientBalanceError(
                    f"withdrawal of {amount} from {account!r} at ts={tx.ts} exceeds its "
                    f"balance {cross.balance}"
                )
            tx.emit("withdraw", {"account": account, "amount": amount})
            require_initial_margin(
                tx.state,
                view,
                account,
                f"withdrawal of {amount} from {account!r}",
                lambda m: f"withdraw at most {max(0, m.equity + amount - m.initial)}",
            )

        self._run(ts, key, build)

    # -- oracle, reference feeds and risk parameters ---------------------------------------------
    def update_price(
        self,
        asset: str,
        price: int,
        *,
        ts: int,
        confidence: int = 0,
        reference: int | None = None,
        references: Mapping[str, int] | None = None,
        key: str | None = None,
    ) -> GuardVerdict:
        """Submit a print of the primary oracle; the guard accepts it or trips the asset.

        Parameters
        ----------
        asset : str
        price, confidence : int
            The print and its confidence band, micro-USD (``price > 0``, ``confidence >= 0``).
        ts : int
        references : mapping of str to int, optional
            Quotes of named reference feeds observed at ``ts`` (see :meth:`update_reference`
            for quotes with their own observation times), recorded before the check.
        reference : int, optional
            Shorthand for ``references={"reference": reference}``.
        key : str, optional
            Idempotency key.

        Returns
        -------
        GuardVerdict
            Also recorded in the log (a ``price`` event, a ``guard`` event on change).
        """
        symbol = self.config.asset(asset).symbol
        inputs.price(price, f"{symbol} price")
        inputs.integer(confidence, f"{symbol} confidence", low=0, high=MAX_PRICE)
        quotes = dict(references or {})
        if reference is not None:
            quotes["reference"] = reference
        for feed, quote in quotes.items():
            inputs.name(feed, "reference feed")
            inputs.price(quote, f"{symbol} reference {feed!r}")

        def build(tx: Transaction) -> GuardVerdict:
            for feed, quote in sorted(quotes.items()):
                tx.emit(
                    "reference",
                    {"asset": symbol, "feed": feed, "price": quote, "observed_ms": tx.ts},
                )
            breaker.plan_resumes(tx, [symbol])
            verdict = plan_print(tx, symbol, price, confidence)
            if verdict.accepted:
                breaker.plan_print(tx, symbol, price)  # the band, then the halt window
            plan_escalation(tx, symbol)
            return verdict

        return self._run(ts, key, build)

    def update_reference(
        self,
        asset: str,
        feed: str,
        price: int,
        *,
        ts: int,
        observed_ms: int | None = None,
        key: str | None = None,
    ) -> None:
        """Record a quote of the named reference feed ``feed``, observed at ``observed_ms``.

        Reference feeds are any number of independent sources (other venues, an index); the
        guard compares the primary oracle with the median of the fresh ones, and an escalated
        guard falls back to that median as the mark.

        Raises
        ------
        InputError
            A quote observed after ``ts``, or older than the feed's last quote.
        """
        symbol = self.config.asset(asset).symbol
        inputs.name(feed, "reference feed")
        inputs.price(price, f"{symbol} reference {feed!r}")
        observed = inputs.timestamp(ts if observed_ms is None else observed_ms)

        def build(tx: Transaction) -> None:
            if observed > tx.ts:
                raise InputError(
                    f"{symbol} reference {feed!r} observed at {observed}, after ts={tx.ts}; "
                    "check the feed's clock"
                )
            last = tx.state.assets[symbol].references.get(feed)
            if last is not None and observed < last.observed_ms:
                raise InputError(
                    f"{symbol} reference {feed!r} observed at {observed} is older than its last "
                    f"quote ({last.observed_ms}); quotes of a feed must come in time order"
                )
            tx.emit(
                "reference",
                {"asset": symbol, "feed": feed, "price": price, "observed_ms": observed},
            )
            plan_escalation(tx, symbol)

        self._run(ts, key, build)

    def update_prices(
        self, prices: Mapping[str, int], *, ts: int, references: Mapping[str, int] | None = None
    ) -> dict[str, GuardVerdict]:
        """Submit one tick of prices (a bar of a replay), in configuration order.

        ``references`` gives each asset's reference quote (feed ``"reference"``).
        """
        refs = references or {}
        return {
            symbol: self.update_price(symbol, prices[symbol], ts=ts, reference=refs.get(symbol))
            for symbol in self.config.symbols
            if symbol in prices
        }

    def tick(self, ts: int, *, key: str | None = None) -> None:
        """Advance the clock to ``ts``: log newly stale oracles and escalate long guards."""

        def build(tx: Transaction) -> None:
            for symbol in self.config.symbols:
                plan_escalation(tx, symbol)
            breaker.plan_resumes(tx)
            if tx.ts > tx.state.clock_ms:
                tx.emit("clock", {})

        self._run(ts, key, build)

    def apply_snapshot(
        self, snapshot: Mapping[str, Any], *, ts: int, key: str | None = None
    ) -> MarginParameters:
        """Apply a RiskSnapshot v1 dict: validate it and retarget the multiplier ramp.

        The ramp restarts only if the effective target changes: republishing the same
        multiplier changes no one's margin. A stale, halted or expired snapshot can only
        tighten (see :func:`liquidation.rules.multiplier.target_multiplier`).

        Raises
        ------
        SnapshotValidationError
            Malformed, out-of-bounds, or an ``update_id`` not above the last one.
        """
        params = MarginParameters.from_risk_snapshot(snapshot)
        asset_cfg = self.config.asset(params.asset)
        check_bounds(params, asset_cfg)

        def build(tx: Transaction) -> MarginParameters:
            asset = tx.state.assets[params.asset]
            current = asset.params
            if current is not None and params.update_id <= current.update_id:
                raise SnapshotValidationError(
                    f"RiskSnapshot(asset={params.asset!r}, update_id={params.update_id}) is "
                    f"not newer than the applied update_id {current.update_id}; updates must "
                    "increase"
                )
            cfg = self.config
            ramp = at_time(
                asset.ramp, current, asset.trusted, asset_cfg, tx.ts, cfg.ramp_ms,
                cfg.max_ramp_classes,
            )  # fmt: skip
            trusted = params.multiplier if params.is_usable(tx.ts) else asset.trusted
            target = target_multiplier(params, asset_cfg, tx.ts, trusted)
            ramp = retarget(ramp, target, tx.ts, cfg.ramp_ms, cfg.max_ramp_classes)
            tx.emit(
                "snapshot",
                {
                    "asset": params.asset,
                    "params": params.to_dict(),
                    "ramp": ramp.to_dict(),
                    "trusted": trusted,
                },
            )
            return params

        return self._run(ts, key, build)

    def set_margin_mode(
        self, account: str, portfolio: bool, *, ts: int, key: str | None = None
    ) -> None:
        """Switch the cross bucket between standard and portfolio margin.

        Allowed only if equity covers the initial margin in the new mode.
        """
        inputs.name(account, "account")
        if not isinstance(portfolio, bool):
            raise InputError(f"portfolio must be a bool, got {portfolio!r}")

        def build(tx: Transaction) -> None:
            bucket = self._require_bucket(tx, account)
            if bucket.portfolio == portfolio:
                return
            view = tx.view()
            require_unguarded(view, bucket, f"switch the margin mode of {account!r}")
            tx.emit("margin_mode", {"account": account, "portfolio": portfolio})
            mode = "portfolio" if portfolio else "standard"
            require_initial_margin(tx.state, view, account, f"switching to {mode} margin")

        self._run(ts, key, build)

    # -- trading ---------------------------------------------------------------------------------
    def trade(
        self,
        account: str,
        asset: str,
        dq: int,
        *,
        ts: int,
        isolated: bool = False,
        margin: int = 0,
        counterparty: str | None = None,
        price: int | None = None,
        key: str | None = None,
    ) -> None:
        """``account`` buys (``dq > 0``) or sells ``dq`` lots from ``counterparty``.

        Parameters
        ----------
        account : str
            The taker; pays the taker fee (and the governed add-on, to the fund).
        asset : str
        dq : int
            Signed lots, non-zero; the order must be worth at least the minimum notional.
        ts : int
        isolated : bool
            Trade in the account's isolated bucket of ``asset``.
        margin : int
            Micro-USD moved from the cross bucket into the isolated bucket first; the cross
            bucket must still cover its own initial margin.
        counterparty : str, optional
            The maker account (its cross bucket), default the liquidity vault.
        price : int, optional
            The matched price, within ``MarkConfig.max_trade_deviation`` of the mark; default
            the mark. A set price feeds the mark's basis.
        key : str, optional
            Idempotency key.

        Each side's change must pass the dYdX rule (:func:`liquidation.rules.margin.may_update`):
        it meets initial margin afterwards, or it lowers maintenance without lowering
        health. No trade happens at a guarded price, and no margin check values a guarded
        leg (:mod:`liquidation.admission`).

        Raises
        ------
        InsufficientMarginError
            The taker's side fails the rule.
        InsufficientLiquidityError
            The counterparty's side fails it (deposit into the vault).
        GuardedAssetError, StaleOracleError, InputError, UnknownAccountError
        """
        symbol = self.config.asset(asset).symbol
        inputs.name(account, "account")
        inputs.lots(dq, f"trade quantity of {account!r} in {symbol}")
        inputs.integer(margin, "margin", low=0, high=MAX_AMOUNT)
        if not isinstance(isolated, bool):
            raise InputError(f"isolated must be a bool, got {isolated!r}")
        if margin and not isolated:
            raise InputError("margin must be >= 0 and only given for isolated positions")
        maker = inputs.name(counterparty or self.config.vault, "counterparty")
        if maker == account:
            raise InputError(f"{account!r} cannot trade with itself")
        if price is not None:
            inputs.price(price, f"{symbol} trade price")

        order = Order(account, symbol, dq, maker, isolated, margin, price)

        def build(tx: Transaction) -> None:
            if tx.config.breaker is not None:
                taker = tx.state.peek_bucket(bucket_id(account, symbol if isolated else None))
                held = taker.positions[symbol].lots if taker and symbol in taker.positions else 0
                if not (held and (held > 0) != (dq > 0) and abs(dq) <= abs(held)):
                    breaker.require_open(tx, symbol, f"trade of {dq} lots of {symbol}")
            plan_trade(tx, order)

        self._run(ts, key, build)

    def close(
        self,
        account: str,
        asset: str,
        *,
        ts: int,
        isolated: bool = False,
        counterparty: str | None = None,
        key: str | None = None,
    ) -> None:
        """Close the whole position of ``account`` in ``asset`` (against the vault)."""
        inputs.name(account, "account")
        symbol = self.config.asset(asset).symbol
        target = self.state.buckets.get(bucket_id(account, symbol if isolated else None))
        position = target.positions.get(symbol) if target is not None else None
        if position is None:
            raise UnknownAccountError(f"{account!r} holds no {symbol} position to close")
        self.trade(
            account,
            symbol,
            -position.lots,
            ts=ts,
            isolated=isolated,
            counterparty=counterparty,
            key=key,
        )

    def apply_funding(self, asset: str, rate: float, *, ts: int, key: str | None = None) -> int:
        """Settle one funding payment at the mark: longs pay ``rate * notional`` to shorts.

        Zero-sum to the micro-USD (see :mod:`liquidation.funding`). Returns the number of
        positions charged or credited.
        """
        symbol = self.config.asset(asset).symbol
        rate = inputs.rate(rate, f"{symbol} funding rate", bound=self.config.max_funding_rate)

        def build(tx: Transaction) -> int:
            view = tx.view()
            require_priced(view, symbol, f"apply funding on {symbol}")
            mark = view.price(symbol)
            holders = [
                (b, bucket.positions[symbol].lots)
                for b, bucket in sorted(tx.state.peek_buckets())
                if symbol in bucket.positions
            ]
            payments = funding_payments(holders, mark, rate)
            tx.emit(
                "funding",
                {
                    "asset": symbol,
                    "rate": rate,
                    "price": mark,
                    "payments": [[b, amount] for b, amount in payments],
                },
            )
            return len(payments)

        return self._run(ts, key, build)

    # -- liquidation -----------------------------------------------------------------------------
    def liquidate(
        self, bucket: str, *, keeper: str, ts: int, key: str | None = None
    ) -> LiquidationReport:
        """Run one waterfall step on ``bucket`` (see :mod:`liquidation.waterfall`)."""
        inputs.name(keeper, "keeper")

        def build(tx: Transaction) -> LiquidationReport:
            counted = self._breaker_gate(tx, bucket)
            report = liquidate(tx, bucket, keeper)
            breaker.plan_catch_up(tx, bucket, counted)
            return report

        return self._run(ts, key, build)

    def _breaker_gate(self, tx: Transaction, bucket: str) -> list[str]:
        """Refuse a liquidation of ``bucket`` during a halt of an asset it holds (perpetual
        or option underlying) or beyond the catch-up budget; the assets to count against."""
        found = tx.state.peek_bucket(bucket) if tx.config.breaker is not None else None
        if found is None:
            return []
        series = tx.state.options.series
        assets = set(found.positions) | {series[n].underlying for n in found.options}
        return breaker.require_liquidation_budget(tx, bucket, assets)

    def halted(self, asset: str, ts: int | None = None) -> bool:
        """True while ``asset`` is in a volatility halt at ``ts`` (default: engine clock)."""
        symbol = self.config.asset(asset).symbol
        state = self.state.breakers.get(symbol)
        return state is not None and state.halted(self._ts(ts))

    def breaker_status(self, ts: int | None = None) -> dict[str, dict[str, Any]]:
        """Per asset with a breaker state: halted, until when, and the catch-up budget."""
        cfg = self.config.breaker
        at = self._ts(ts)
        if cfg is None:
            return {}
        out = {}
        for symbol, state in sorted(self.state.breakers.items()):
            budget = state.budget(at, cfg)
            out[symbol] = {
                "halted": state.halted(at),
                "halted_until": state.halted_until if state.halted(at) else None,
                "catch_up_budget": None if math.isinf(budget) else int(budget),
                "reference_price": state.last,
            }
        return out

    def scan(self, ts: int | None = None, *, detail: bool = True) -> ScanResult:
        """Vectorised health scan of every bucket at the engine's prices at ``ts``.

        The result is a superset of the liquidatable buckets (a rounding tolerance);
        :meth:`liquidatable` confirms each one exactly. Buckets holding options are valued
        on the joint price x vol grid of their perpetuals and options
        (:func:`liquidation.options.health.engine_scan`), not by the perpetual scan, which
        cannot see them: with ``detail`` their ``equity`` and ``maintenance`` are the exact
        grid's (every holder priced on the whole grid); without it only the grouped bound
        runs and ``equity`` / ``maintenance`` are empty, as for perpetuals.
        """
        at = self._ts(ts)
        view = self._view(at)
        book = self.state.book
        result = book.scan(self.margin_arrays(at), detail=detail)  # type: ignore[union-attr]
        rows = self._option_rows(view)
        if rows is None:
            return result
        # Imported here: the sparse bound needs scipy, loaded only once options are held.
        from liquidation.options.health import engine_scan

        built = self._option_book(rows)
        equity, maintenance, flagged = engine_scan(
            option_view(view),
            rows,
            built,
            book,  # type: ignore[arg-type]
            exact=detail,
        )
        held = rows.holder_index
        perps = result.liquidatable[~np.isin(result.liquidatable, held)]
        found = np.union1d(perps, held[flagged]).astype(np.int64)
        if not detail:
            return ScanResult(found, result.equity, result.maintenance)
        all_equity, all_maintenance = result.equity.copy(), result.maintenance.copy()
        all_equity[held], all_maintenance[held] = equity, maintenance
        return ScanResult(found, all_equity, all_maintenance)

    def liquidatable(self, ts: int | None = None) -> list[str]:
        """Buckets below maintenance at ``ts`` and not guarded, by scan and exact check.

        Most at risk first (lowest ``equity / MM``): a keeper pass in this order liquidates a
        bankrupt account before its counterparties. Buckets holding options are filtered by
        the grouped bound of their joint grid (:meth:`scan` without detail).
        """
        at = self._ts(ts)
        view = self._view(at)
        ids = self.state.book.bucket_ids  # type: ignore[union-attr]
        scanned = self.scan(at, detail=False)
        flagged = {ids[i] for i in scanned.liquidatable}
        found = [b for b in flagged if below_maintenance(self.state.buckets[b], view)]
        return sorted(found, key=lambda b: (self.health(b, at), b))

    def run_liquidations(
        self, *, keeper: str, ts: int, exhaustive: bool = False
    ) -> list[LiquidationReport]:
        """Advance the clock, then liquidate every bucket the scan and the exact check flag.

        Each liquidation is its own command. Rate-limited buckets are left for a later call,
        and buckets of the keeper's own account for another keeper. ``exhaustive`` checks
        every bucket with positions exactly instead of filtering with the scan.
        """
        inputs.name(keeper, "keeper")
        self.tick(ts)
        if exhaustive:
            view = self._view(ts)
            found = [
                b for b, bucket in self.state.buckets.items() if below_maintenance(bucket, view)
            ]
            candidates = sorted(found, key=lambda b: (self.health(b, ts), b))
        else:
            candidates = self.liquidatable(ts)
        reports = []
        for bid in candidates:
            bucket = self.state.buckets.get(bid)
            if bucket is None or bucket.account == keeper:
                continue
            if not bucket.positions and not bucket.options:
                continue
            try:
                reports.append(self.liquidate(bid, keeper=keeper, ts=ts))
            except (NotLiquidatableError, RateLimitedError, breaker.HaltedError):
                continue  # healthy after an earlier step, in its cooldown or halted: later
        return reports

    # -- options ---------------------------------------------------------------------------------
    def list_option(self, series: OptionSeries, *, ts: int, key: str | None = None) -> str:
        """List a European option series for trading; returns its name.

        Raises
        ------
        InputError
            The underlying is not an engine asset, the name is taken or it has expired.
        """
        if not isinstance(series, OptionSeries):
            raise InputError(f"series must be an OptionSeries, got {type(series).__name__}")
        symbol = self.config.asset(series.underlying).symbol

        def build(tx: Transaction) -> str:
            if series.name in tx.state.options.series:
                raise InputError(f"{series.name} is already listed")
            if series.expiry_ms <= tx.ts:
                raise InputError(f"{series.name} expires at {series.expiry_ms}, not after {tx.ts}")
            data = dict(series.to_dict(), underlying=symbol)
            tx.emit("option_series", {"series": data})
            return series.name

        return self._run(ts, key, build)

    def set_vol_surface(
        self, asset: str, surface: VolSurface, *, ts: int, key: str | None = None
    ) -> None:
        """Set the implied-vol surface of ``asset`` (an audited operator or feed update)."""
        symbol = self.config.asset(asset).symbol
        if not isinstance(surface, VolSurface):
            raise InputError(f"surface must be a VolSurface, got {type(surface).__name__}")

        def build(tx: Transaction) -> None:
            tx.emit("option_surface", {"asset": symbol, "surface": surface.to_dict()})

        self._run(ts, key, build)

    def option_mark(self, name: str, ts: int | None = None) -> int:
        """Mark of one unit of the listed series ``name`` at ``ts``, micro-USD (rounded)."""
        view = self._view(self._ts(ts))
        series = self._series(self.state.options.series, name)
        require_priced(view, series.underlying, f"mark {name}")
        return round(option_view(view).mark(name) * 1_000_000)

    def trade_option(
        self,
        buyer: str,
        name: str,
        lots: int,
        premium: int,
        *,
        ts: int,
        seller: str | None = None,
        key: str | None = None,
    ) -> None:
        """``buyer`` buys ``lots`` of series ``name`` from ``seller`` (default: the vault).

        The premium ``lots * premium`` (micro-USD per unit) moves from the buyer's cross
        balance to the seller's. Each side must pass the dYdX rule on its combined book
        (perpetuals and options on the joint grid), as a perpetual trade does.

        Raises
        ------
        InsufficientMarginError
            A side would end below its initial margin without reducing its risk.
        InputError, UnknownAccountError, GuardedAssetError, StaleOracleError
        """
        inputs.name(buyer, "buyer")
        maker = inputs.name(seller or self.config.vault, "seller")
        if maker == buyer:
            raise InputError(f"{buyer!r} cannot trade an option with itself")
        inputs.lots(lots, f"option quantity of {buyer!r}")
        if lots <= 0:
            raise InputError("option trade lots must be > 0 (the buyer is the long side)")
        inputs.integer(premium, "option premium", low=0, high=MAX_PRICE)

        def build(tx: Transaction) -> None:
            series = self._series(tx.state.options.series, name)
            if series.expiry_ms <= tx.ts:
                raise InputError(f"{name} has expired (at {series.expiry_ms}); no trading")
            view = tx.view()
            require_priced(view, series.underlying, f"trade {name}")
            if tx.config.breaker is not None:
                for account, signed in ((buyer, lots), (maker, -lots)):
                    if account == self.config.vault:
                        continue  # the market maker: the other side decides
                    book = tx.state.peek_bucket(account)
                    held = book.options.get(name, 0) if book is not None else 0
                    if not (held and (held > 0) != (signed > 0) and abs(signed) <= abs(held)):
                        breaker.require_open(tx, series.underlying, f"option trade of {name}")
            before = {}
            for account in (buyer, maker):
                self._require_bucket(tx, account)
                require_unguarded(view, tx.state.peek_bucket(account), f"trade {name}")
                before[account] = margin_state(tx.state, view, account)
            tx.emit(
                "option_fill",
                {
                    "series": series.to_dict(),
                    "buyer": buyer,
                    "seller": maker,
                    "lots": lots,
                    "premium": premium,
                    "amount": value(lots, premium),
                    "reason": "trade",
                },
            )
            for account in (buyer, maker):
                m0, m1 = before[account], margin_state(tx.state, view, account)
                if not may_update(m0, m1):
                    raise InsufficientMarginError(
                        f"option trade of {lots} lots of {name} at ts={tx.ts} refused: "
                        f"{account!r} would have equity {m1.equity} below its initial margin "
                        f"{m1.initial} without reducing its risk; deposit or trade less"
                    )

        self._run(ts, key, build)

    def settle_options(self, expiry_ms: int, *, ts: int, key: str | None = None) -> int:
        """Cash-settle every series expiring at ``expiry_ms`` at the mark (an engine event).

        Shorts pay the intrinsic value of their lots, truncated toward zero, and longs share
        exactly that total pro rata (largest remainder): zero-sum to the micro-USD. A short
        left with debt and nothing to liquidate has it covered in the same command (fund,
        then socialization: :func:`liquidation.waterfall.cover_settlement_debt`). Refused
        while an underlying's oracle is stale or guarded. Returns the series settled.
        """
        expiry = inputs.timestamp(expiry_ms)

        def build(tx: Transaction) -> int:
            if tx.ts < expiry:
                raise InputError(f"settlement at ts={tx.ts} before the expiry {expiry}")
            expiring = sorted(
                (n, s) for n, s in tx.state.options.series.items() if s.expiry_ms == expiry
            )
            view = tx.view()
            settled = []
            for name, series in expiring:
                require_priced(view, series.underlying, f"settle {name}")
                price = view.price(series.underlying)
                holders = sorted(
                    (b, bucket.options[name])
                    for b, bucket in tx.state.peek_buckets()
                    if name in bucket.options
                )
                intrinsic = series.intrinsic(price)
                payments = funding_payments(holders, intrinsic, -1.0) if intrinsic else []
                settled.append(
                    {
                        "series": series.to_dict(),
                        "settlement": price,
                        "intrinsic": intrinsic,
                        "payments": [[b, amount] for b, amount in payments],
                        "closed": [[b, q] for b, q in holders],
                    }
                )
            if settled:
                tx.emit("option_expiry", {"expiry_ms": expiry, "series": settled})
                payers = [b for item in settled for b, amount in item["payments"] if amount < 0]
                cover_settlement_debt(tx, payers)
            return len(settled)

        return self._run(ts, key, build)

    def deleverage_greeks(
        self, account: str, *, keeper: str, ts: int, key: str | None = None
    ) -> list[ExecutedStep]:
        """Greek-limit partial liquidation of ``account``, delta first, as one command.

        See :func:`liquidation.waterfall.deleverage_greeks`.
        """
        inputs.name(account, "account")
        inputs.name(keeper, "keeper")

        def build(tx: Transaction) -> list[ExecutedStep]:
            counted = self._breaker_gate(tx, account)
            steps = deleverage_greeks(tx, account, keeper)
            if steps:
                breaker.plan_catch_up(tx, account, counted)
            return steps

        return self._run(ts, key, build)

    def close_options(self, account: str, *, ts: int, key: str | None = None) -> None:
        """Close every option position of ``account`` against the vault at the close-out
        premium (:func:`liquidation.waterfall.option_close_premium`)."""
        inputs.name(account, "account")

        def build(tx: Transaction) -> None:
            bucket = self._require_bucket(tx, account)
            view = tx.view()
            for name in sorted(bucket.options):
                require_priced(view, tx.state.options.series[name].underlying, f"close {name}")
            for name, lots in sorted(bucket.options.items()):
                close_option(tx, account, name, -lots, "close")

        self._run(ts, key, build)

    def greek_breaches(self, account: str, ts: int | None = None) -> list[tuple[str, str, float]]:
        """Net Greeks of ``account`` beyond their limits: ``(underlying, greek, value)``."""
        b = self._bucket(account)
        if not b.options:
            return []
        view = self._view(self._ts(ts))
        holdings = option_view(view).holdings(b.options, b.positions.values())
        found = _greek_breaches(holdings, self.config.options.limits)
        return [(x.underlying, x.greek, x.value) for x in found]

    def option_close_premium(self, name: str, lots: int, ts: int | None = None) -> int:
        """Premium per unit of a close of ``lots`` of ``name`` against the vault, micro-USD."""
        return option_close_premium(self._view(self._ts(ts)), name, lots)

    # -- insurance governance ----------------------------------------------------------------------
    def review_insurance(
        self,
        *,
        ts: int,
        stressed_loss: int | None = None,
        k_sigma: float = 3.0,
        key: str | None = None,
    ) -> GovernanceDecision:
        """Coverage review: adjust the fund's penalty share and the fee add-on, log it.

        ``stressed_loss`` defaults to the larger of the bad-debt history quantile and the
        book's bad debt under a joint ``k_sigma`` move (:meth:`stressed_book_loss`, options
        included).
        """
        inputs.timestamp(ts)
        if stressed_loss is None:
            stressed_loss = max(
                historical_stressed_loss(
                    self.state.insurance.bad_debts, self.config.insurance.stress_quantile
                ),
                self.stressed_book_loss(ts, k_sigma),
            )
        else:
            inputs.integer(stressed_loss, "stressed_loss", low=0, high=MAX_AMOUNT)

        def build(tx: Transaction) -> GovernanceDecision:
            ins = tx.state.insurance
            decision = review(
                ins.fund, stressed_loss, ins.fund_share, ins.fee_addon_bps, self.config.insurance
            )
            tx.emit(
                "insurance",
                {
                    "fund_share": decision.fund_share,
                    "fee_addon_bps": decision.fee_addon_bps,
                    "coverage": decision.coverage,
                    "stressed_loss": decision.stressed_loss,
                },
            )
            return decision

        return self._run(ts, key, build)

    def stressed_book_loss(self, ts: int | None = None, k_sigma: float = 3.0) -> int:
        """Bad debt of the book if every asset's mark moves ``k_sigma`` horizon sigmas
        together (worst direction), micro-USD (:func:`liquidation.insurance.book_stressed_loss`).

        Buckets holding options are valued exactly at the shocked marks (their options
        repriced by Black-76 at an unchanged vol), one bucket at a time: a governance review
        is rare, and the vectorised book values the perpetual-only buckets.
        """
        at = self._ts(ts)
        view = self._view(at)
        margin = self.margin_arrays(at)
        rows = self._option_rows(view)
        if rows is None:
            return book_stressed_loss(self.state.book, margin, k_sigma)  # type: ignore[arg-type]
        extra = {}
        for direction in (1.0, -1.0):
            shocked = view
            for i, symbol in enumerate(self.config.symbols):
                m = view.assets[symbol]
                if m.price is None:
                    continue
                factor = max(0.0, 1.0 + direction * k_sigma * float(margin.sigma[i]))
                price = min(MAX_PRICE, max(1, round(m.price * factor)))
                shocked = with_asset(shocked, symbol, replace(m, price=price))
            extra[direction] = (
                sum(max(0, -bucket_equity(self.state.buckets[b], shocked)) for b in rows.holders)
                / 1e6
            )
        return book_stressed_loss(
            self.state.book,  # type: ignore[arg-type]
            margin,
            k_sigma,
            skip=rows.holder_index,
            extra=extra,
        )

    # -- queries -----------------------------------------------------------------------------------
    def equity(self, bucket: str, ts: int | None = None) -> int:
        """Collateral plus unrealized PnL at mark prices, micro-USD."""
        return bucket_equity(self._bucket(bucket), self._view(self._ts(ts)))

    def initial_margin(self, bucket: str, ts: int | None = None) -> int:
        """Initial margin at target multipliers and current open interest, micro-USD."""
        return bucket_initial(self._bucket(bucket), self._view(self._ts(ts)), self._oi())

    def maintenance_margin(self, bucket: str, ts: int | None = None) -> int:
        """Maintenance margin (ramped for older positions; with options the joint grid)."""
        return bucket_maintenance(self._bucket(bucket), self._view(self._ts(ts)))

    def health(self, bucket: str, ts: int | None = None) -> float:
        """``equity / MM``; below 1 means liquidatable, ``inf`` without positions."""
        return health(self.equity(bucket, ts), self.maintenance_margin(bucket, ts))

    def summary(self, bucket: str, ts: int | None = None) -> BucketSummary:
        """Everything about one bucket at once.

        ``liquidation_prices``: for a bucket without options the closed form of
        :func:`liquidation.valuation.liquidation_prices` (standard margin); for one holding
        options the nearest crossing of the exact joint-grid test, per perpetual and
        underlying (:meth:`_option_liquidation_prices`).
        """
        b = self._bucket(bucket)
        view = self._view(self._ts(ts))
        eq = bucket_equity(b, view)
        mm = bucket_maintenance(b, view)
        return BucketSummary(
            bucket=bucket,
            balance=b.balance,
            equity=eq,
            initial_margin=bucket_initial(b, view, self._oi()),
            maintenance_margin=mm,
            health=eq / mm if mm > 0 else math.inf,
            liquidation_prices=(
                self._option_liquidation_prices(bucket, self._ts(ts))
                if b.options
                else liquidation_prices(b, view)
            ),
        )

    def _option_liquidation_prices(self, bucket: str, ts: int) -> dict[str, int | None]:
        """Per valued asset of a bucket holding options, the nearest oracle price (below or
        above) at which the engine's exact joint-grid test liquidates it, others held fixed
        (:func:`liquidation.liquidation_price.liquidation_prices`); None when no price does,
        or when the bucket is liquidatable already."""
        from liquidation.liquidation_price import liquidation_prices as exact_prices

        out: dict[str, int | None] = {}
        for row in exact_prices(self, bucket, ts):
            found = [p for p in (row.below, row.above) if p is not None]
            out[row.asset] = min(found, key=lambda p: (abs(p - row.oracle), p), default=None)
        return out

    def buckets_of(self, account: str) -> list[str]:
        """Ids of the cross and isolated buckets of ``account``."""
        return sorted(b for b, bucket in self.state.buckets.items() if bucket.account == account)

    def margin_arrays(self, ts: int | None = None) -> MarginArrays:
        """Per-asset arrays for :meth:`PositionBook.scan` at ``ts`` (default: engine clock)."""
        view = self._view(self._ts(ts))
        cfgs = self.config.assets
        margins = [view.assets[a.symbol] for a in cfgs]
        since, mult = MarginArrays.class_arrays(
            [m.class_since for m in margins], [m.class_mult for m in margins]
        )
        return MarginArrays(
            price=np.array([m.price / 1e6 if m.price else 0.0 for m in margins]),
            guarded=np.array([m.guarded or m.price is None for m in margins]),
            base_imf=np.array([a.base_imf for a in cfgs]),
            maintenance_fraction=np.array([a.maintenance_fraction for a in cfgs]),
            size_imf_factor=np.array([a.size_imf_factor for a in cfgs]),
            size_reference_usd=np.array([a.size_reference_usd for a in cfgs]),
            imf_cap=np.array([a.imf_cap for a in cfgs]),
            mult_target=np.array([m.target for m in margins]),
            class_since=since,
            class_mult=mult,
            sigma=np.array([m.sigma * m.target for m in margins]),
            returns=view.returns,
            vol_level=view.vol_level,
            liquidity_cost=view.liquidity_cost,
            floor_fraction=self.config.portfolio.floor_fraction,
        )

    def view(self, ts: int | None = None) -> MarketView:
        """The frozen per-asset margin inputs at ``ts`` (default: engine clock)."""
        return self._view(self._ts(ts))

    # -- internals ---------------------------------------------------------------------------------
    def _run(self, ts: int, key: str | None, build: Callable[[Transaction], R]) -> R:
        """Validate the time and key, plan the command, persist and apply it as one batch."""
        ts = inputs.timestamp(ts)
        self._clock(ts)
        if key is not None:
            if not isinstance(key, str) or not key or len(key) > 200:
                raise InputError(
                    f"idempotency key must be a non-empty str of <= 200 chars: {key!r}"
                )
            if key in self.state.keys:
                command = self.state.keys[key]
                raise DuplicateCommandError(
                    f"a command with key {key!r} was already applied (command #{command}); "
                    "nothing was done",
                    key,
                    command,
                )
        tx = Transaction(self.state, self.config, ts)
        result = build(tx)
        events = tx.finish(key)
        if events:
            self._commit(events)
        return result

    def _commit(self, events: list[Event]) -> None:
        self.log.commit(events)  # raises, having written and kept nothing, on a failed write
        try:
            apply_command(self.state, events)
        except Exception as exc:
            # The same events folded on the fork: this is a bug, never a bad input. The log
            # holds them, so a restart from the store reproduces and reports it.
            raise EventLogError(
                f"command {events[0].cmd} was persisted but could not be applied ({exc}); "
                "restart the engine from its store (Engine.resume) and report this"
            ) from exc
        finally:
            self._version += 1

    def _account_buckets(self, tx: Transaction, account: str) -> list[Bucket]:
        ids = [account] + [f"{account}:{s}" for s in self.config.symbols]
        return [b for b in (tx.state.peek_bucket(i) for i in ids) if b is not None]

    @staticmethod
    def _series(listed: Mapping[str, OptionSeries], name: str) -> OptionSeries:
        found = listed.get(name) if isinstance(name, str) else None
        if found is None:
            raise InputError(f"option series {name!r} is not listed (expired or never listed)")
        return found

    def _require_bucket(self, tx: Transaction, bucket: str) -> Bucket:
        found = tx.state.peek_bucket(bucket)
        if found is None:
            raise UnknownAccountError(f"no margin bucket {bucket!r}; deposit to the account first")
        return found

    def _view(self, ts: int) -> MarketView:
        cached = self._view_cache
        if cached is not None and cached[0] == ts and cached[1] == self._version:
            return cached[2]
        view = market_view(self.state.assets, self.config, ts, self.state.options)
        self._view_cache = (ts, self._version, view)
        return view

    def _option_rows(self, view: MarketView) -> Any:
        """The option rows of the buckets holding options (``OptionRows``), None if none;
        rebuilt only when an option or a series changed (not on a price tick)."""
        version = self.state.options.version
        cached = self._option_rows_cache
        if cached is not None and cached[0] == version:
            return cached[1]
        holders = [b for _, b in sorted(self.state.peek_buckets()) if b.options]
        rows = None
        if holders:
            from liquidation.options.health import OptionRows

            index = option_view(view).priced.index
            rows = OptionRows.of(holders, self.state.book.bucket_index, index)  # type: ignore[union-attr]
        self._option_rows_cache = (version, rows)
        return rows

    def _option_book(self, rows: Any) -> Any:
        """The holders' scan book (``EngineOptionBook``), rebuilt only when a position or an
        option changed since the last scan."""
        from liquidation.options.health import EngineOptionBook

        key = (self.state.options.version, self.state.book._version)  # type: ignore[union-attr]
        cached = self._option_book_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        built = EngineOptionBook.build(rows, self.state.book)  # type: ignore[arg-type]
        self._option_book_cache = (key, built)
        return built

    def _oi(self) -> dict[str, int]:
        return {s: a.long_oi_lots for s, a in self.state.assets.items()}

    def _ts(self, ts: int | None) -> int:
        return self.state.clock_ms if ts is None else inputs.timestamp(ts)

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
