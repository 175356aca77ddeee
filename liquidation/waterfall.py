"""The liquidation waterfall, one step per command, planned on a :class:`Transaction`.

Order (DESIGN.md), in a matched book where every fill has a counterparty account:

1. **Partial liquidation**, rate-limited: every position of the bucket is reduced by the same
   fraction ``f`` (so a portfolio-margined hedge is never unbalanced), the smallest that brings
   ``equity >= (1 + buffer) * MM`` after costs, capped at ``max_step_fraction`` per step and
   one step per ``cooldown_ms``. Small buckets, deep shortfalls (``equity < emergency_health *
   MM``) and steps that would not strictly improve ``equity - MM`` go to a full close-out.
   The cooldown binds every step after a step, a full close-out of a small bucket included;
   only an emergency skips it.
2. **Close-out against the market**: the liquidity vault (``EngineConfig.vault``) takes the
   positions at the mark moved by the snapshot's slippage model (half spread + square-root
   impact of the closed size), if its own margin allows (:mod:`liquidation.admission`).
3. **Penalty** on the closed notional, paid from remaining equity only, split between the
   keeper and the insurance fund by the governed fund share.
4. **Insurance fund** pays the bad debt, at most ``insurance_cap_per_event_usd`` per event.
   The market close-out is taken only if its bad debt fits in what the fund may pay.
5. **Backstop vault**: otherwise the positions are transferred at the mark with a price
   concession (the bankruptcy price) covering the deficit beyond the fund's share; the vault
   takes the largest fraction of them its margin allows and absorbs that share of the deficit.
6. **ADL**: the rest goes to ranked opposite positions, each absorbing only what it can
   (:func:`liquidation.rules.adl.allocate`).
7. **Socialized loss**: what is still negative is charged pro rata to the positive equity of
   the buckets holding positions (:func:`liquidation.rules.socialization.socialize`); what even that
   cannot cover is written off (the ledger's ``socialized_loss``).

Each step is logged as ``fill``/``penalty``/``fund_cover``/``socialize`` events and closed by a
``liquidation`` event carrying equity and MM before and after; the engine persists the whole
step as one command.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

from liquidation.accounts import Bucket, Position
from liquidation.admission import admit, guarded_legs, require_priced
from liquidation.errors import (
    InputError,
    NotLiquidatableError,
    RateLimitedError,
    UnknownAccountError,
)
from liquidation.fills import fill_amounts, fill_events
from liquidation.money import MICRO, QTY_SCALE, charge, split_pro_rata, value
from liquidation.options.limits import ExecutedStep, deleveraging_plan
from liquidation.options.limits import breaches as greek_breaches
from liquidation.rules.adl import AdlCandidate, allocate
from liquidation.rules.backstop import (
    backstop_ppm,
    backstop_share,
    bankruptcy_deficit,
    market_closeout_fits,
    shortfall_beyond_fund,
)
from liquidation.rules.closeout import close_price
from liquidation.rules.partial import (
    FRACTION_SCALE,
    close_cost,
    closed_lots,
    improves,
    is_emergency,
    partial_allowed,
    partial_ppm,
    rate_limited,
)
from liquidation.rules.penalty import fund_available, fund_cover, penalty_due, split_penalty
from liquidation.rules.socialization import socialize
from liquidation.trading import sweep_isolated
from liquidation.transaction import Transaction
from liquidation.valuation import (
    MarketView,
    below_maintenance,
    bucket_equity,
    bucket_maintenance,
    equity,
    maintenance_margin,
    notional,
    option_view,
    valued_legs,
)

Step = Literal["partial", "full", "backstop", "adl"]


@dataclass(frozen=True)
class LiquidationReport:
    """Outcome of one waterfall step (money in micro-USD).

    ``bad_debt`` is the bucket's shortfall at the close-out chosen (before anyone covers it);
    ``fund_paid``, ``backstop_absorbed``, ``adl_absorbed`` and ``socialized`` say who covered
    it, in waterfall order.
    """

    bucket: str
    step: Step
    fraction: float
    equity_before: int
    mm_before: int
    equity_after: int
    mm_after: int
    closed: bool
    penalty: int
    bad_debt: int
    fund_paid: int
    adl_absorbed: int
    socialized: int
    backstop_absorbed: int = 0

    @property
    def improved(self) -> bool:
        """True if ``equity - MM`` strictly rose or the bucket has no positions left."""
        return self.closed or (self.equity_after - self.mm_after) > (
            self.equity_before - self.mm_before
        )


@dataclass(frozen=True)
class _PlannedFill:
    asset: str
    dq: int
    exec_price: int
    realized: int
    cost_delta: int
    risk_since: int
    closed_notional: int


def liquidate(tx: Transaction, bucket_id: str, keeper: str) -> LiquidationReport:
    """Plan one waterfall step on ``bucket_id``; see the module docstring.

    Raises
    ------
    UnknownAccountError
        No such bucket.
    InputError
        The keeper is the bucket's own account.
    NotLiquidatableError
        The bucket has no positions or its equity is at or above maintenance.
    GuardedAssetError, StaleOracleError
        A position's oracle is guarded: nothing is liquidated on a guarded price.
    RateLimitedError
        A step came within the cooldown of the previous one (and it is no emergency).
    """
    bucket = tx.state.peek_bucket(bucket_id)
    if bucket is None:
        raise UnknownAccountError(f"no margin bucket {bucket_id!r} to liquidate")
    if bucket.options:
        return liquidate_with_options(tx, bucket_id, keeper)
    if keeper == bucket.account:
        raise InputError(
            f"keeper {keeper!r} cannot liquidate its own account's bucket {bucket_id!r}; "
            "another keeper must"
        )
    if not bucket.positions:
        raise NotLiquidatableError(f"{bucket_id!r} holds no positions at ts={tx.ts}")
    view = tx.view()
    for symbol in sorted(bucket.positions):
        require_priced(view, symbol, f"liquidate {bucket_id!r}")
    positions = _ordered(bucket)
    eq = equity(bucket.balance, positions, view)
    mm = maintenance_margin(positions, bucket.portfolio, view)
    if eq >= mm:
        raise NotLiquidatableError(
            f"{bucket_id!r} at ts={tx.ts}: equity {eq} >= maintenance {mm}; not liquidatable"
        )
    cfg = tx.config.liquidation
    gross = sum(notional(p, view) for p in positions)
    full_cost = sum(charge(notional(p, view), _slip(view, p, p.lots)) for p in positions)
    emergency = is_emergency(eq, mm, full_cost, cfg.emergency_health)
    last = bucket.last_liquidation_ms
    if rate_limited(emergency, last, tx.ts, cfg.cooldown_ms):
        assert last is not None
        raise RateLimitedError(
            f"{bucket_id!r} at ts={tx.ts}: last liquidation step at {last}, cooldown "
            f"{cfg.cooldown_ms} ms; retry at {last + cfg.cooldown_ms}"
        )
    if partial_allowed(emergency, gross, cfg.min_partial_notional_usd):
        plan = _plan_partial(tx, bucket, positions, view, eq, mm)
        if plan is not None and _take_by_vault(tx, bucket, plan[1], "liquidation"):
            fraction, _, penalty = plan
            _charge_penalty(tx, bucket_id, keeper, penalty)
            return _finish(tx, bucket_id, keeper, "partial", fraction, eq, mm, penalty, 0, 0)
    return _full_closeout(tx, bucket, keeper, positions, eq, mm)


# -- partial ---------------------------------------------------------------------------------
def _plan_partial(
    tx: Transaction,
    bucket: Bucket,
    positions: list[Position],
    view: MarketView,
    eq: int,
    mm: int,
) -> tuple[float, list[_PlannedFill], int] | None:
    cfg = tx.config.liquidation
    # Cost of closing everything (slippage at full size is an upper bound per unit closed).
    cost = sum(
        close_cost(notional(p, view), _slip(view, p, p.lots), cfg.penalty_rate) for p in positions
    )
    ppm = partial_ppm(eq, mm, cost, cfg)
    if ppm == 0:
        return None
    fills = []
    for p in positions:
        closed = closed_lots(p.lots, ppm)
        if closed == 0:
            continue
        fills.append(_market_fill(view, p, -closed, tx.ts))
    if not fills:
        return None
    after_positions, balance = _simulate(bucket, positions, fills)
    eq_fills = equity(balance, after_positions, view)
    closed_notional = sum(f.closed_notional for f in fills)
    penalty = penalty_due(closed_notional, eq_fills, cfg.penalty_rate)
    mm_after = maintenance_margin(after_positions, bucket.portfolio, view)
    if not improves(eq, mm, eq_fills, penalty, mm_after):
        return None
    return ppm / FRACTION_SCALE, fills, penalty


# -- full close-out, fund, backstop, ADL, socialization ---------------------------------------
def _full_closeout(
    tx: Transaction,
    bucket: Bucket,
    keeper: str,
    positions: list[Position],
    eq: int,
    mm: int,
) -> LiquidationReport:
    cfg = tx.config.liquidation
    view = tx.view()
    bucket_id = bucket.bucket_id
    available = fund_available(tx.state.insurance.fund, cfg.insurance_cap_per_event_usd)
    closed_notional = sum(notional(p, view) for p in positions)
    market = [_market_fill(view, p, -p.lots, tx.ts) for p in positions]
    _, balance_after_market = _simulate(bucket, positions, market)
    market_debt = max(0, -balance_after_market)
    step: Step
    backstop = adl = 0
    if market_closeout_fits(market_debt, available) and _take_by_vault(
        tx, bucket, market, "liquidation"
    ):
        step, bad_debt = "full", market_debt
    else:
        bad_debt, deficit = bankruptcy_deficit(eq, available)
        backstop, adl = _bankruptcy(tx, bucket_id, deficit, available)
        step = "adl" if _adl_happened(tx) else "backstop"
    penalty = 0
    balance = _balance(tx, bucket_id)
    if balance > 0:
        penalty = penalty_due(closed_notional, balance, cfg.penalty_rate)
        _charge_penalty(tx, bucket_id, keeper, penalty)
    fund_paid = socialized = 0
    # The bucket, then any counterparty that ADL closed out while it was bankrupt itself
    # (its debt is realized now): the fund within its cap for the event, then socialization.
    for debtor in [bucket_id, *_bankrupt_counterparties(tx, bucket_id)]:
        debt = max(0, -_balance(tx, debtor))
        if debtor != bucket_id:
            bad_debt += debt
        cover = fund_cover(debt, available - fund_paid)
        if cover:
            tx.emit("fund_cover", {"bucket": debtor, "amount": cover})
            fund_paid += cover
        if debt > cover:
            _socialize(tx, debtor, debt - cover)
            socialized += debt - cover
    return _finish(
        tx, bucket_id, keeper, step, 1.0, eq, mm, penalty, bad_debt, fund_paid,
        backstop=backstop, adl=adl, socialized=socialized,
    )  # fmt: skip


def _bankruptcy(
    tx: Transaction, bucket_id: str, deficit: int, fund_available: int
) -> tuple[int, int]:
    """Transfer every position at the mark, with concessions covering ``deficit`` (the
    bankruptcy price): the backstop vault first, then ADL. Returns what each absorbed.

    The concessions are then settled exactly: the fills split positions into segments whose
    values truncate separately, so the planned concessions can miss the bucket's shortfall
    beyond the fund by a few micro-USD; counterparties with room left pay the difference.
    """
    backstop = _backstop(tx, bucket_id, deficit)
    rooms: list[tuple[str, int]] = []
    adl = _deleverage(tx, bucket_id, deficit - backstop, rooms)
    short = shortfall_beyond_fund(_balance(tx, bucket_id), fund_available)
    for counterparty, room in rooms:
        payer = tx.state.peek_bucket(counterparty)
        if short <= 0 or payer is None or (payer.is_isolated and not payer.positions):
            continue
        extra = min(room, short)
        if extra > 0:
            _concede(tx, bucket_id, counterparty, extra, "adl")
            adl += extra
            short -= extra
    if short > 0 and backstop > 0:
        child = tx.savepoint()
        _concede(child, bucket_id, tx.config.vault, short, "backstop")
        if _vault_admits(tx, child):
            tx.adopt(child)
            backstop += short
    return backstop, adl


def _backstop(tx: Transaction, bucket_id: str, deficit: int) -> int:
    """The vault takes the largest fraction of every position it can; returns its concession.

    The fraction is found by bisection on the vault's admission (its margin after taking the
    positions at the mark and paying that fraction of ``deficit``) and checked exactly.
    """
    vault = tx.config.vault
    bucket = tx.state.peek_bucket(bucket_id)
    assert bucket is not None
    if bucket.account == vault or tx.state.peek_bucket(vault) is None:
        return 0
    positions = _ordered(bucket)
    admitted: dict[int, tuple[Transaction, int]] = {}

    def admits(ppm: int) -> bool:
        child = tx.savepoint()
        for p in positions:
            lots = closed_lots(p.lots, ppm)
            if lots:
                _fill(
                    child, bucket_id, vault, p.asset, -lots, child.view().price(p.asset), "backstop"
                )
        share = backstop_share(deficit, ppm)
        if share:
            _concede(child, bucket_id, vault, share, "backstop")
        if not _vault_admits(tx, child):
            return False
        admitted[ppm] = (child, share)
        return True

    ppm = backstop_ppm(admits)
    if ppm == 0:
        return 0
    child, absorbed = admitted[ppm]
    tx.adopt(child)
    return absorbed


def _deleverage(tx: Transaction, bucket_id: str, deficit: int, rooms: list[tuple[str, int]]) -> int:
    """Transfer every remaining position to opposite positions (ADL); returns the concession.

    Appends to ``rooms`` each counterparty and the concession it could still give.
    """
    bucket = tx.state.peek_bucket(bucket_id)
    assert bucket is not None
    positions = _ordered(bucket)
    if not positions:
        return 0
    view = tx.view()
    weights = [notional(p, view) for p in positions]
    shares = split_pro_rata(deficit, weights) if deficit and sum(weights) else [0] * len(positions)
    absorbed = 0
    for position, share in zip(positions, shares, strict=True):
        side = 1 if position.lots > 0 else -1
        mark = view.price(position.asset)
        candidates = _candidates(tx, bucket_id, position.asset, -side)
        fills, _ = allocate(candidates, abs(position.lots), share)
        for fill in fills:
            _fill(tx, bucket_id, fill.bucket, position.asset, -side * fill.lots, mark, "adl")
            if fill.concession:
                _concede(tx, bucket_id, fill.bucket, fill.concession, "adl")
            sweep_isolated(tx, fill.bucket)
            absorbed += fill.concession
            rooms.append((fill.bucket, fill.room))
    return absorbed


def _bankrupt_counterparties(tx: Transaction, bucket_id: str) -> list[str]:
    """ADL counterparties of this step left without positions and with a negative balance."""
    found = []
    for event in tx.events:
        if event.kind == "fill" and event.data["reason"] == "adl":
            for leg in event.data["legs"]:
                other = tx.state.peek_bucket(leg["bucket"])
                if (
                    leg["bucket"] != bucket_id
                    and leg["bucket"] not in found
                    and other is not None
                    and not other.positions
                    and other.balance < 0
                ):
                    found.append(leg["bucket"])
    return found


def _adl_happened(tx: Transaction) -> bool:
    return any(e.kind == "fill" and e.data["reason"] == "adl" for e in tx.events)


def _candidates(tx: Transaction, bucket_id: str, symbol: str, side: int) -> list[AdlCandidate]:
    """Opposite positions in ``symbol`` (``side`` is theirs); unvaluable ones give nothing."""
    view = tx.view()
    mark = view.price(symbol)
    found = []
    for other_id, other in tx.state.peek_buckets():
        position = other.positions.get(symbol)
        if other_id == bucket_id or position is None or (position.lots > 0) != (side > 0):
            continue
        valued = not guarded_legs(view, other)
        found.append(
            AdlCandidate(
                bucket=other_id,
                lots=position.lots,
                cost=position.cost,
                upnl=value(position.lots, mark) - position.cost,
                notional=abs(value(position.lots, mark)),
                equity=equity(other.balance, other.positions.values(), view) if valued else 0,
            )
        )
    return found


def _socialize(tx: Transaction, bucket_id: str, amount: int) -> None:
    view = tx.view()
    holders = [
        (b, equity(bucket.balance, bucket.positions.values(), view))
        for b, bucket in sorted(tx.state.peek_buckets())
        if b != bucket_id and bucket.positions and not guarded_legs(view, bucket)
    ]
    charges, written_off = socialize(amount, holders)
    tx.emit(
        "socialize",
        {
            "bucket": bucket_id,
            "charges": [[b, part] for b, part in charges],
            "written_off": written_off,
        },
    )


# -- fills against the vault and counterparties -----------------------------------------------
def _take_by_vault(tx: Transaction, bucket: Bucket, fills: list[_PlannedFill], reason: str) -> bool:
    """Fill ``fills`` against the vault at their planned prices if its margin allows."""
    vault = tx.config.vault
    if bucket.account == vault or tx.state.peek_bucket(vault) is None:
        return False
    child = tx.savepoint()
    for fill in fills:
        _fill(child, bucket.bucket_id, vault, fill.asset, fill.dq, fill.exec_price, reason)
    if not _vault_admits(tx, child):
        return False
    tx.adopt(child)
    return True


def _vault_admits(before: Transaction, after: Transaction) -> bool:
    vault = before.config.vault
    return admit(before.state, after.state, before.view(), vault) is None


def _fill(
    tx: Transaction,
    bucket_id: str,
    counterparty: str,
    symbol: str,
    dq: int,
    price: int,
    reason: str,
) -> None:
    """Emit the matched fill of ``dq`` lots of the bucket against ``counterparty``, no fees."""
    taker = tx.state.peek_bucket(bucket_id)
    maker = tx.state.peek_bucket(counterparty)
    assert taker is not None and maker is not None
    for data in fill_events(
        symbol,
        dq,
        price,
        tx.ts,
        taker=(bucket_id, taker.positions.get(symbol)),
        maker=(counterparty, maker.positions.get(symbol)),
        reason=reason,
    ):
        tx.emit("fill", data)


def _concede(tx: Transaction, bucket_id: str, counterparty: str, amount: int, reason: str) -> None:
    """``counterparty`` pays the bankrupt bucket ``amount`` on top of the mark."""
    tx.emit(
        "concession",
        {"bucket": bucket_id, "counterparty": counterparty, "amount": amount, "reason": reason},
    )


def _finish(
    tx: Transaction,
    bucket_id: str,
    keeper: str,
    step: Step,
    fraction: float,
    eq: int,
    mm: int,
    penalty: int,
    bad_debt: int,
    fund_paid: int,
    *,
    backstop: int = 0,
    adl: int = 0,
    socialized: int = 0,
) -> LiquidationReport:
    bucket = tx.state.peek_bucket(bucket_id)
    assert bucket is not None
    view = tx.view()
    positions = _ordered(bucket)
    eq_after = equity(bucket.balance, positions, view)
    mm_after = maintenance_margin(positions, bucket.portfolio, view)
    closed = not positions
    data: dict[str, Any] = {
        "bucket": bucket_id,
        "keeper": keeper,
        "step": step,
        "fraction": fraction,
        "equity_before": eq,
        "mm_before": mm,
        "equity_after": eq_after,
        "mm_after": mm_after,
        "bad_debt": bad_debt,
        "closed": closed,
        "penalty": penalty,
        "fund_paid": fund_paid,
        "backstop_absorbed": backstop,
        "adl_absorbed": adl,
        "socialized": socialized,
    }
    tx.emit("liquidation", data)
    sweep_isolated(tx, bucket_id)
    return LiquidationReport(
        bucket=bucket_id,
        step=step,
        fraction=fraction,
        equity_before=eq,
        mm_before=mm,
        equity_after=eq_after,
        mm_after=mm_after,
        closed=closed,
        penalty=penalty,
        bad_debt=bad_debt,
        fund_paid=fund_paid,
        adl_absorbed=adl,
        socialized=socialized,
        backstop_absorbed=backstop,
    )


def _charge_penalty(tx: Transaction, bucket_id: str, keeper: str, penalty: int) -> None:
    if penalty <= 0:
        return
    keeper_amount, fund_amount = split_penalty(penalty, tx.state.insurance.fund_share)
    tx.emit(
        "penalty",
        {
            "bucket": bucket_id,
            "keeper": keeper,
            "keeper_amount": keeper_amount,
            "fund_amount": fund_amount,
        },
    )


def _balance(tx: Transaction, bucket_id: str) -> int:
    bucket = tx.state.peek_bucket(bucket_id)
    assert bucket is not None
    return bucket.balance


def _slip(view: MarketView, position: Position, lots: int) -> float:
    margin = view.assets[position.asset]
    return margin.close_cost_rate(abs(value(lots, view.price(position.asset))))


def _market_fill(view: MarketView, position: Position, dq: int, ts: int) -> _PlannedFill:
    mark = view.price(position.asset)
    rate = _slip(view, position, dq)
    exec_price = close_price(mark, -dq, rate)
    amounts = fill_amounts(position, dq, exec_price, ts)
    return _PlannedFill(
        asset=position.asset,
        dq=dq,
        exec_price=exec_price,
        realized=amounts.realized_pnl,
        cost_delta=amounts.cost_delta,
        risk_since=amounts.risk_since_ms,
        closed_notional=abs(value(dq, mark)),
    )


def _simulate(
    bucket: Bucket, positions: list[Position], fills: list[_PlannedFill]
) -> tuple[list[Position], int]:
    by_asset = {f.asset: f for f in fills}
    after = []
    balance = bucket.balance
    for p in positions:
        fill = by_asset.get(p.asset)
        if fill is None:
            after.append(p)
            continue
        balance += fill.realized
        lots = p.lots + fill.dq
        if lots:
            after.append(Position(p.asset, lots, p.cost + fill.cost_delta, fill.risk_since))
    return after, balance


def _ordered(bucket: Bucket) -> list[Position]:
    return [bucket.positions[a] for a in sorted(bucket.positions)]


# -- buckets holding options -----------------------------------------------------------------------
def option_close_premium(view: MarketView, name: str, lots: int) -> int:
    """Premium (micro-USD per unit) at which a bucket changes its option position by ``lots``
    against the vault: the mark moved against it by the option's modelled close-out cost (its
    delta's liquidity cost plus the vol spread, as in the margin), never below zero."""
    options = option_view(view)
    priced = options.priced
    i = priced.index[name]
    mark = float(priced.risk.value[i])
    cost = float(priced.risk.liquidity[i])
    if lots > 0:  # buying back a short
        return math.ceil((mark + cost) * MICRO)
    return max(0, math.floor((mark - cost) * MICRO))


def _option_fill(tx: Transaction, buyer: str, seller: str, name: str, lots: int, premium: int,
                 reason: str) -> int:  # fmt: skip
    """Emit one option fill; returns the premium amount that moved (micro-USD)."""
    series = tx.state.options.series[name]
    amount = value(lots, premium)
    tx.emit(
        "option_fill",
        {
            "series": series.to_dict(),
            "buyer": buyer,
            "seller": seller,
            "lots": lots,
            "premium": premium,
            "amount": amount,
            "reason": reason,
        },
    )
    return amount


def close_option(tx: Transaction, bucket_id: str, name: str, lots: int, reason: str) -> int:
    """Change ``bucket_id``'s position in series ``name`` by ``lots`` (reducing it) against
    the vault at :func:`option_close_premium`; returns the premium amount moved."""
    vault = tx.config.vault
    premium = option_close_premium(tx.view(), name, lots)
    if lots > 0:
        return _option_fill(tx, bucket_id, vault, name, lots, premium, reason)
    return _option_fill(tx, vault, bucket_id, name, -lots, premium, reason)


def liquidate_with_options(tx: Transaction, bucket_id: str, keeper: str) -> LiquidationReport:
    """One waterfall step on a bucket holding options (below its joint maintenance).

    The options are closed against the vault at their marks moved by their close-out cost
    (the market step), in one command with the rest: if perpetuals remain and the bucket is
    still below their maintenance, the perpetual waterfall above continues on the same plan
    (partial, full, fund, backstop, ADL, socialization); if nothing remains and the balance
    is negative, the fund covers it within its cap and the rest is socialized. The
    maintenance here is the joint grid of :mod:`liquidation.options.risk`, so a hedged book
    that a perpetual-only check would flag is never liquidated.

    Raises
    ------
    NotLiquidatableError, RateLimitedError, GuardedAssetError, StaleOracleError, InputError
        As :func:`liquidate`.
    """
    bucket = tx.state.peek_bucket(bucket_id)
    if bucket is None:
        raise UnknownAccountError(f"no margin bucket {bucket_id!r} to liquidate")
    if keeper == bucket.account:
        raise InputError(
            f"keeper {keeper!r} cannot liquidate its own account's bucket {bucket_id!r}; "
            "another keeper must"
        )
    if bucket.account == tx.config.vault or tx.state.peek_bucket(tx.config.vault) is None:
        raise NotLiquidatableError(
            f"{bucket_id!r}: options close against the vault, which is this bucket or absent"
        )
    view = tx.view()
    for symbol in sorted(valued_legs(bucket, view)):
        require_priced(view, symbol, f"liquidate {bucket_id!r}")
    eq, mm = bucket_equity(bucket, view), bucket_maintenance(bucket, view)
    if eq >= mm:
        raise NotLiquidatableError(
            f"{bucket_id!r} at ts={tx.ts}: equity {eq} >= maintenance {mm} (perpetuals and "
            "options on the joint grid); not liquidatable"
        )
    cfg = tx.config.liquidation
    emergency = is_emergency(eq, mm, 0, cfg.emergency_health)
    last = bucket.last_liquidation_ms
    if rate_limited(emergency, last, tx.ts, cfg.cooldown_ms):
        assert last is not None
        raise RateLimitedError(
            f"{bucket_id!r} at ts={tx.ts}: last liquidation step at {last}, cooldown "
            f"{cfg.cooldown_ms} ms; retry at {last + cfg.cooldown_ms}"
        )
    closed_notional = 0
    for name, lots in sorted(bucket.options.items()):
        closed_notional += abs(close_option(tx, bucket_id, name, -lots, "liquidation"))
    after = tx.state.peek_bucket(bucket_id)
    assert after is not None and not after.options
    if after.positions and below_maintenance(after, tx.view()):
        report = liquidate(tx, bucket_id, keeper)
        return replace(report, equity_before=eq, mm_before=mm)
    penalty = 0
    balance = _balance(tx, bucket_id)
    if balance > 0:
        penalty = penalty_due(closed_notional, bucket_equity(after, tx.view()), cfg.penalty_rate)
        _charge_penalty(tx, bucket_id, keeper, penalty)
    bad_debt = fund_paid = socialized = 0
    if not after.positions:
        bad_debt = max(0, -_balance(tx, bucket_id))
        available = fund_available(tx.state.insurance.fund, cfg.insurance_cap_per_event_usd)
        fund_paid = fund_cover(bad_debt, available)
        if fund_paid:
            tx.emit("fund_cover", {"bucket": bucket_id, "amount": fund_paid})
        if bad_debt > fund_paid:
            socialized = bad_debt - fund_paid
            _socialize(tx, bucket_id, socialized)
    step: Step = "partial" if after.positions else "full"
    return _finish(
        tx, bucket_id, keeper, step, 1.0, eq, mm, penalty, bad_debt, fund_paid,
        socialized=socialized,
    )  # fmt: skip


def deleverage_greeks(tx: Transaction, account: str, keeper: str) -> list[ExecutedStep]:
    """Plan the Greek-limit partial liquidation of ``account``'s cross bucket, delta first.

    The plan is :func:`liquidation.options.limits.deleveraging_plan` on the bucket's
    perpetuals and options with their Greeks at the view; the breach and the plan are logged
    (``greek_breach``), then each step closes against the vault: a perpetual at the mark
    moved by the slippage model, if the vault's margin admits it; an option at
    :func:`option_close_premium`. Steps under one lot, or refused by the vault, are skipped
    and reported.

    Raises
    ------
    NotLiquidatableError
        The bucket is within every limit (or holds nothing).
    GuardedAssetError, StaleOracleError
        An underlying of a breach has no usable price (nothing is logged).
    """
    bucket = tx.state.peek_bucket(account)
    if bucket is None:
        raise UnknownAccountError(f"no margin bucket {account!r}")
    if keeper == bucket.account:
        raise InputError(f"keeper {keeper!r} cannot deleverage its own account")
    if not bucket.options:
        raise NotLiquidatableError(f"{account!r} holds no options: no Greek limit applies")
    view = tx.view()
    for symbol in sorted(valued_legs(bucket, view)):
        require_priced(view, symbol, f"deleverage {account!r} for its Greek limits")
    holdings = option_view(view).holdings(bucket.options, bucket.positions.values())
    limits = tx.config.options.limits
    if not greek_breaches(holdings, limits):
        raise NotLiquidatableError(f"{account!r} at ts={tx.ts} is within its Greek limits")
    plan = deleveraging_plan(holdings, limits)
    tx.emit(
        "greek_breach",
        {
            "account": account,
            "keeper": keeper,
            "steps": [
                {"instrument": s.instrument, "qty": s.qty, "greek": s.breach.greek,
                 "value": s.breach.value, "limit": s.breach.limit}
                for s in plan
            ],
        },
    )  # fmt: skip
    done = []
    for step in plan:
        now = tx.state.peek_bucket(account)
        assert now is not None
        greek = step.breach.greek
        if step.instrument.startswith("perp:"):
            asset = step.instrument.removeprefix("perp:")
            position = now.positions.get(asset)
            lots = _step_lots(step.qty, position.lots if position is not None else 0)
            if lots == 0 or position is None:
                done.append(ExecutedStep(step.instrument, 0, greek, None, True))
                continue
            fill = _market_fill(tx.view(), position, lots, tx.ts)
            taken = _take_by_vault(tx, now, [fill], "greek_limit")
            done.append(ExecutedStep(step.instrument, lots, greek, fill.exec_price, not taken))
            continue
        lots = _step_lots(step.qty, now.options.get(step.instrument, 0))
        if lots == 0:
            done.append(ExecutedStep(step.instrument, 0, greek, None, True))
            continue
        premium = option_close_premium(tx.view(), step.instrument, lots)
        close_option(tx, account, step.instrument, lots, "greek_limit")
        done.append(ExecutedStep(step.instrument, lots, greek, premium, False))
    return done


def _step_lots(planned: float, held: int) -> int:
    """Lots to trade for a planned close: rounded up (so the breach is cured, not left a
    fraction of a lot over its limit), never beyond the position held, reducing it."""
    magnitude = min(math.ceil(abs(planned) * QTY_SCALE), abs(held))
    return -magnitude if held > 0 else magnitude


def cover_settlement_debt(tx: Transaction, bucket_ids: list[str]) -> int:
    """Cover the debt an expiry leaves on buckets with nothing left to liquidate.

    A short option that expires in the money on a bucket that was not liquidated in time (its
    price guarded, no keeper, or the vault itself) can leave a negative balance and no
    position: the insurance fund pays it within its cap for the event, the rest is socialized
    (as in the waterfall's bankruptcy step). Returns the total debt covered.
    """
    cfg = tx.config.liquidation
    available = fund_available(tx.state.insurance.fund, cfg.insurance_cap_per_event_usd)
    paid = total = 0
    for bucket_id in sorted(bucket_ids):
        bucket = tx.state.peek_bucket(bucket_id)
        if bucket is None or bucket.positions or bucket.options or bucket.balance >= 0:
            continue
        debt = -bucket.balance
        cover = fund_cover(debt, available - paid)
        if cover:
            tx.emit("fund_cover", {"bucket": bucket_id, "amount": cover})
            paid += cover
        if debt > cover:
            _socialize(tx, bucket_id, debt - cover)
        total += debt
    return total
