"""The liquidation waterfall, one step per call.

Order (DESIGN.md):

1. **Partial liquidation**, rate-limited: every position of the bucket is reduced by the same
   fraction ``f`` (so a portfolio-margined hedge is never unbalanced), the smallest that brings
   ``equity >= (1 + buffer) * MM`` after costs, capped at ``max_step_fraction`` per step and
   one step per ``cooldown_ms``. Small buckets, deep shortfalls (``equity < emergency_health *
   MM``) and steps that would not strictly improve ``equity - MM`` go to a full close-out.
2. **Close-out** against the market at the oracle price moved by the snapshot's slippage model
   (half spread + square-root impact of the closed size).
3. **Penalty** on the closed notional, paid from remaining equity only, split between the
   keeper and the insurance fund by the governed fund share.
4. **Insurance fund** pays the bad debt, at most ``insurance_cap_per_event_usd`` per event.
5. **ADL**: if the market close-out would leave more bad debt than the fund may pay, the
   positions are instead transferred to the most profitable, most levered opposite positions at
   the bankruptcy price (the fund's share is taken first); each counterparty gives up at most
   its profit on the quantity taken and never more than its equity. Any unmatched quantity
   is closed in the market.
6. **Socialized loss**: what is still negative is charged pro rata to every other bucket's
   positive balance; if even that is not enough the rest is written off (and shows in the
   ledger's ``socialized_loss``).

Each step is logged as ``fill``/``penalty``/``fund_cover``/``socialize`` events and closed by a
``liquidation`` event carrying equity and MM before and after.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from liquidation.accounts import Bucket, Position
from liquidation.adl import AdlCandidate, rank_candidates
from liquidation.errors import NotLiquidatableError, RateLimitedError, UnknownAccountError
from liquidation.fills import FillAmounts, close_price, fill_amounts
from liquidation.money import MICRO, charge, div_trunc, split_pro_rata, value
from liquidation.valuation import MarketView, equity, maintenance_margin, notional

if TYPE_CHECKING:
    from liquidation.engine import Engine

FRACTION_SCALE = 1_000_000
Step = Literal["partial", "full", "adl"]


@dataclass(frozen=True)
class LiquidationReport:
    """Outcome of one waterfall step (money in micro-USD)."""

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


def liquidate_bucket(engine: Engine, bucket_id: str, keeper: str, ts: int) -> LiquidationReport:
    """One waterfall step on ``bucket_id`` at ``ts``; see the module docstring.

    Raises
    ------
    NotLiquidatableError
        The bucket has no positions or its equity is at or above maintenance.
    GuardedAssetError, StaleOracleError
        A position's oracle is guarded: nothing is liquidated on a guarded price.
    RateLimitedError
        A partial step came within the cooldown of the previous one.
    """
    bucket = engine.state.buckets.get(bucket_id)
    if bucket is None:
        raise UnknownAccountError(f"no margin bucket {bucket_id!r} to liquidate")
    if not bucket.positions:
        raise NotLiquidatableError(f"{bucket_id!r} holds no positions at ts={ts}")
    for symbol in sorted(bucket.positions):
        engine.require_unguarded(symbol, ts, f"liquidate {bucket_id!r}")
    view = engine.view(ts)
    positions = _ordered(bucket)
    eq = equity(bucket.balance, positions, view)
    mm = maintenance_margin(positions, bucket.portfolio, view)
    if eq >= mm:
        raise NotLiquidatableError(
            f"{bucket_id!r} at ts={ts}: equity {eq} >= maintenance {mm}; not liquidatable"
        )
    cfg = engine.config.liquidation
    gross = sum(notional(p, view) for p in positions)
    full_cost = sum(charge(notional(p, view), _slip(view, p, p.lots)) for p in positions)
    emergency = eq < cfg.emergency_health * mm or eq - full_cost <= 0
    if not emergency and gross >= cfg.min_partial_notional_usd * MICRO:
        last = bucket.last_liquidation_ms
        if last is not None and ts - last < cfg.cooldown_ms:
            raise RateLimitedError(
                f"{bucket_id!r} at ts={ts}: last liquidation step at {last}, cooldown "
                f"{cfg.cooldown_ms} ms; retry at {last + cfg.cooldown_ms}"
            )
        plan = _plan_partial(engine, bucket, positions, view, eq, mm)
        if plan is not None:
            fraction, fills, penalty = plan
            return _execute_partial(
                engine, bucket, keeper, ts, view, eq, mm, fraction, fills, penalty
            )
    return _full_closeout(engine, bucket, keeper, ts, view, positions, eq, mm)


# -- partial ---------------------------------------------------------------------------------
def _plan_partial(
    engine: Engine,
    bucket: Bucket,
    positions: list[Position],
    view: MarketView,
    eq: int,
    mm: int,
) -> tuple[float, list[_PlannedFill], int] | None:
    cfg = engine.config.liquidation
    target = (1.0 + cfg.health_buffer) * mm
    # Cost of closing everything (slippage at full size is an upper bound per unit closed).
    cost = sum(notional(p, view) * (_slip(view, p, p.lots) + cfg.penalty_rate) for p in positions)
    denominator = target - cost
    if denominator <= 0:
        return None
    needed = (target - eq) / denominator
    fraction = min(needed, cfg.max_step_fraction)
    if fraction >= 1.0:
        return None
    ppm = min(FRACTION_SCALE, max(1, math.ceil(fraction * FRACTION_SCALE)))
    fills = []
    for p in positions:
        closed = div_trunc(p.lots * ppm, FRACTION_SCALE)
        if closed == 0:
            continue
        fills.append(_market_fill(view, p, -closed, ts=view.ts_ms))
    if not fills:
        return None
    after_positions, balance = _simulate(bucket, positions, fills)
    eq_fills = equity(balance, after_positions, view)
    closed_notional = sum(f.closed_notional for f in fills)
    penalty = min(charge(closed_notional, cfg.penalty_rate), max(0, eq_fills))
    mm_after = maintenance_margin(after_positions, bucket.portfolio, view)
    if (eq_fills - penalty) - mm_after <= eq - mm:
        return None
    return ppm / FRACTION_SCALE, fills, penalty


def _execute_partial(
    engine: Engine,
    bucket: Bucket,
    keeper: str,
    ts: int,
    view: MarketView,
    eq: int,
    mm: int,
    fraction: float,
    fills: list[_PlannedFill],
    penalty: int,
) -> LiquidationReport:
    for fill in fills:
        _emit_fill(engine, bucket.bucket_id, fill, ts, "liquidation")
    _charge_penalty(engine, bucket, keeper, ts, penalty)
    return _finish(
        engine, bucket, keeper, ts, view, "partial", fraction, eq, mm, penalty, 0, 0, 0, 0
    )


# -- full close-out, fund, ADL, socialization --------------------------------------------------
def _full_closeout(
    engine: Engine,
    bucket: Bucket,
    keeper: str,
    ts: int,
    view: MarketView,
    positions: list[Position],
    eq: int,
    mm: int,
) -> LiquidationReport:
    cfg = engine.config.liquidation
    fund_available = min(
        engine.state.insurance.fund, math.floor(cfg.insurance_cap_per_event_usd * MICRO)
    )
    # Measured before any fill: the fills shrink the state's Position objects in place.
    closed_notional = sum(notional(p, view) for p in positions)
    market = [_market_fill(view, p, -p.lots, ts) for p in positions]
    _, balance_after_market = _simulate(bucket, positions, market)
    step: Step = "full"
    adl_absorbed = 0
    if -balance_after_market > fund_available:
        step = "adl"
        adl_absorbed = _deleverage(engine, bucket, ts, view, positions, eq, fund_available)
    else:
        for fill in market:
            _emit_fill(engine, bucket.bucket_id, fill, ts, "liquidation")
    penalty = 0
    if bucket.balance > 0:
        penalty = min(charge(closed_notional, cfg.penalty_rate), bucket.balance)
        _charge_penalty(engine, bucket, keeper, ts, penalty)
    bad_debt = max(0, -bucket.balance)
    fund_paid = min(bad_debt, fund_available)
    if fund_paid:
        engine.emit(ts, "fund_cover", {"bucket": bucket.bucket_id, "amount": fund_paid})
    socialized = max(0, -bucket.balance)
    if socialized:
        _socialize(engine, bucket, ts, socialized)
    return _finish(
        engine,
        bucket,
        keeper,
        ts,
        view,
        step,
        1.0,
        eq,
        mm,
        penalty,
        bad_debt + adl_absorbed,
        fund_paid,
        adl_absorbed,
        socialized,
    )


def _deleverage(
    engine: Engine,
    bucket: Bucket,
    ts: int,
    view: MarketView,
    positions: list[Position],
    eq: int,
    fund_available: int,
) -> int:
    """Close ``positions`` against ranked opposite positions at the bankruptcy price.

    The deficit at oracle prices beyond what the fund may pay is spread over the positions in
    proportion to notional and passed to counterparties as a price concession, capped by
    their profit on the quantity taken. Returns the total concession (loss absorbed by ADL).
    """
    deficit = max(0, -eq)
    to_counterparties = max(0, deficit - fund_available)
    notionals = [notional(p, view) for p in positions]
    shares = (
        split_pro_rata(to_counterparties, notionals)
        if to_counterparties and sum(notionals) > 0
        else [0] * len(positions)
    )
    absorbed = 0
    for position, share in zip(positions, shares, strict=True):
        original = abs(position.lots)  # the state's Position object shrinks as fills land
        remaining = original
        sign = 1 if position.lots > 0 else -1
        price = view.price(position.asset)
        for candidate in _candidates(engine, bucket, position.asset, -sign, view):
            if remaining == 0:
                break
            take = min(remaining, abs(candidate.lots))
            concession = share * take // original
            cp = engine.state.buckets[candidate.bucket].positions[position.asset]
            cp_amounts = fill_amounts(cp, sign * take, price, ts)
            # A counterparty gives up at most its profit on the quantity taken, and never so
            # much that its own equity turns negative (fees may have drawn its balance down).
            concession = max(0, min(concession, cp_amounts.realized_pnl, candidate.equity))
            own = engine.state.buckets[bucket.bucket_id].positions[position.asset]
            own_amounts = fill_amounts(own, -sign * take, price, ts, adjustment=concession)
            _emit_raw(
                engine, bucket.bucket_id, position.asset, -sign * take, price, own_amounts, ts
            )
            _emit_raw(
                engine,
                candidate.bucket,
                position.asset,
                sign * take,
                price,
                fill_amounts(cp, sign * take, price, ts, adjustment=-concession),
                ts,
            )
            engine.sweep_isolated(candidate.bucket, ts)
            absorbed += concession
            remaining -= take
        if remaining:
            own = engine.state.buckets[bucket.bucket_id].positions[position.asset]
            fill = _market_fill(view, own, -own.lots, ts)
            _emit_fill(engine, bucket.bucket_id, fill, ts, "liquidation")
    return absorbed


def _candidates(
    engine: Engine, bucket: Bucket, symbol: str, side: int, view: MarketView
) -> list[AdlCandidate]:
    found = []
    price = view.price(symbol)
    for other_id, other in engine.state.buckets.items():
        if other_id == bucket.bucket_id:
            continue
        position = other.positions.get(symbol)
        if position is None or (position.lots > 0) != (side > 0):
            continue
        found.append(
            AdlCandidate(
                bucket=other_id,
                lots=position.lots,
                cost=position.cost,
                upnl=value(position.lots, price) - position.cost,
                notional=abs(value(position.lots, price)),
                equity=equity(other.balance, other.positions.values(), view),
            )
        )
    return rank_candidates(found)


def _socialize(engine: Engine, bucket: Bucket, ts: int, amount: int) -> None:
    payers = sorted(
        (b.bucket_id, b.balance)
        for b in engine.state.buckets.values()
        if b.bucket_id != bucket.bucket_id and b.balance > 0
    )
    total = sum(balance for _, balance in payers)
    charged = min(amount, total)
    charges = []
    if charged:
        parts = split_pro_rata(charged, [balance for _, balance in payers])
        charges = [[bid, part] for (bid, _), part in zip(payers, parts, strict=True) if part]
    engine.emit(
        ts,
        "socialize",
        {"bucket": bucket.bucket_id, "charges": charges, "written_off": amount - charged},
    )


# -- shared helpers --------------------------------------------------------------------------
def _finish(
    engine: Engine,
    bucket: Bucket,
    keeper: str,
    ts: int,
    view: MarketView,
    step: Step,
    fraction: float,
    eq: int,
    mm: int,
    penalty: int,
    bad_debt: int,
    fund_paid: int,
    adl_absorbed: int,
    socialized: int,
) -> LiquidationReport:
    positions = _ordered(bucket)
    eq_after = equity(bucket.balance, positions, view)
    mm_after = maintenance_margin(positions, bucket.portfolio, view)
    closed = not positions
    data: dict[str, Any] = {
        "bucket": bucket.bucket_id,
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
        "adl_absorbed": adl_absorbed,
        "socialized": socialized,
    }
    engine.emit(ts, "liquidation", data)
    engine.sweep_isolated(bucket.bucket_id, ts)
    return LiquidationReport(
        bucket=bucket.bucket_id,
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
        adl_absorbed=adl_absorbed,
        socialized=socialized,
    )


def _charge_penalty(engine: Engine, bucket: Bucket, keeper: str, ts: int, penalty: int) -> None:
    if penalty <= 0:
        return
    fund_amount = int(penalty * engine.state.insurance.fund_share)
    engine.emit(
        ts,
        "penalty",
        {
            "bucket": bucket.bucket_id,
            "keeper": keeper,
            "keeper_amount": penalty - fund_amount,
            "fund_amount": fund_amount,
        },
    )


def _slip(view: MarketView, position: Position, lots: int) -> float:
    margin = view.assets[position.asset]
    return margin.close_cost_rate(abs(value(lots, view.price(position.asset))))


def _market_fill(view: MarketView, position: Position, dq: int, ts: int) -> _PlannedFill:
    oracle = view.price(position.asset)
    rate = _slip(view, position, dq)
    exec_price = close_price(oracle, -dq, rate)
    amounts = fill_amounts(position, dq, exec_price, ts)
    return _PlannedFill(
        asset=position.asset,
        dq=dq,
        exec_price=exec_price,
        realized=amounts.realized_pnl,
        cost_delta=amounts.cost_delta,
        risk_since=amounts.risk_since_ms,
        closed_notional=abs(value(dq, oracle)),
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


def _emit_fill(engine: Engine, bucket: str, fill: _PlannedFill, ts: int, reason: str) -> None:
    engine.emit(
        ts,
        "fill",
        {
            "bucket": bucket,
            "asset": fill.asset,
            "dq": fill.dq,
            "price": fill.exec_price,
            "fee": 0,
            "fee_addon": 0,
            "realized_pnl": fill.realized,
            "cost_delta": fill.cost_delta,
            "risk_since": fill.risk_since,
            "reason": reason,
        },
    )


def _emit_raw(
    engine: Engine,
    bucket: str,
    asset: str,
    dq: int,
    price: int,
    amounts: FillAmounts,
    ts: int,
) -> None:
    engine.emit(
        ts,
        "fill",
        {
            "bucket": bucket,
            "asset": asset,
            "dq": dq,
            "price": price,
            "fee": 0,
            "fee_addon": 0,
            "realized_pnl": amounts.realized_pnl,
            "cost_delta": amounts.cost_delta,
            "risk_since": amounts.risk_since_ms,
            "reason": "adl",
        },
    )


def _ordered(bucket: Bucket) -> list[Position]:
    return [bucket.positions[a] for a in sorted(bucket.positions)]
