"""Reproducible liquidation prices: the oracle price at which each position is liquidated.

For a bucket (its positions and collateral), the engine's state at ``ts`` (the snapshot in
force, the ramp, the mark's basis) and optionally the funding accrued but not yet settled, the
liquidation price of a position is the **oracle print** at which the engine's own exact test
(:func:`liquidation.valuation.below_maintenance`) first says "liquidate", every other price
held fixed. Because the test itself is evaluated, everything it applies is in the answer:

* the maintenance multiplier of each position's ramp class and the ramp's progress at ``ts``;
* size scaling of the maintenance fraction (open-interest scaling applies to the *initial*
  fraction only, so it never moves a liquidation price);
* cross margin: the bucket's other positions and its whole collateral (a portfolio bucket's
  scenario grid included);
* the mark: ``oracle + basis`` with the basis decayed to ``ts`` and capped, as the engine
  marks it;
* funding: settled funding is already in the collateral; funding accrued since the last
  settlement can be given per asset (``accrued_funding``) and is charged at the probed mark
  with the engine's own zero-sum rule (:func:`liquidation.funding.funding_payments`);
* options: a bucket holding options is margined on the joint price x vol grid, and its
  options are repriced (Black-76) at every probed price of their underlying
  (:func:`liquidation.valuation.with_asset`); an underlying held only through options gets a
  row too (``lots`` 0).

The search walks outward from the current oracle price in each direction with doubling steps
and then bisects to one micro-USD tick, so the result is a crossing of the exact test: at the
returned price the engine liquidates, one tick closer to the current price it does not. For a
standard-margin bucket the excess ``equity - MM`` is monotone in each price, so the crossing
is unique on its side; for a portfolio bucket it is the first crossing the doubling walk meets.
A price is ``None`` when no positive oracle price in that direction liquidates (a long is never
liquidated by a rise; a fully collateralised position never is).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from liquidation import inputs
from liquidation.accounts import Bucket
from liquidation.errors import UnknownAccountError
from liquidation.funding import funding_payments
from liquidation.mark import decayed_basis, mark_price
from liquidation.money import MAX_PRICE, MICRO, QTY_SCALE
from liquidation.valuation import MarketView, below_maintenance, valued_legs, with_asset


@dataclass(frozen=True)
class LiquidationPrice:
    """Where one position of a bucket is liquidated, micro-USD oracle prices.

    ``below`` is the highest oracle price under the current one at which the bucket is
    liquidated, ``above`` the lowest one over it (``None``: no such price). When the bucket is
    liquidatable already, ``liquidatable_now`` is True and both are ``None``.
    """

    bucket: str
    asset: str
    lots: int
    oracle: int
    mark: int
    below: int | None
    above: int | None
    liquidatable_now: bool

    def to_dict(self) -> dict[str, object]:
        """Plain dict (for the CLI and the API)."""
        return dict(vars(self))


def crossings(liquidated: Callable[[int], bool], start: int) -> tuple[int | None, int | None]:
    """Nearest prices below and above ``start`` where ``liquidated`` turns true.

    ``liquidated(start)`` must be false. Doubling steps outward, then bisection to one tick:
    for the returned ``p`` below, ``liquidated(p)`` and not ``liquidated(p + 1)``; above,
    ``liquidated(p)`` and not ``liquidated(p - 1)``.
    """
    return _walk(liquidated, start, -1), _walk(liquidated, start, +1)


def _walk(liquidated: Callable[[int], bool], start: int, sign: int) -> int | None:
    safe, step = start, 1
    while True:
        probe = start + sign * step
        if probe < 1 or probe > MAX_PRICE:
            probe = 1 if sign < 0 else MAX_PRICE
            if probe == safe or not liquidated(probe):
                return None
            hit = probe
            break
        if liquidated(probe):
            hit = probe
            break
        safe, step = probe, step * 2
    # Invariant: not liquidated(safe), liquidated(hit), |hit - safe| >= 1.
    while abs(hit - safe) > 1:
        middle = (hit + safe) // 2
        if liquidated(middle):
            hit = middle
        else:
            safe = middle
    return hit


def liquidation_prices(
    engine: object,
    bucket_id: str,
    ts: int | None = None,
    accrued_funding: Mapping[str, float] | None = None,
) -> list[LiquidationPrice]:
    """Liquidation prices of every position of ``bucket_id`` at ``ts`` (engine clock default).

    Parameters
    ----------
    engine : liquidation.engine.Engine
    bucket_id : str
        ``"alice"`` (cross) or ``"alice:BTCUSDT"`` (isolated).
    ts : int, optional
    accrued_funding : mapping of str to float, optional
        Per asset, the funding rate accrued since the last settlement (positive: longs pay).

    Raises
    ------
    UnknownAccountError
        No such bucket.
    StaleOracleError
        An asset of the bucket has never had a price.
    """
    bucket: Bucket | None = engine.state.buckets.get(bucket_id)  # type: ignore[attr-defined]
    if bucket is None:
        raise UnknownAccountError(f"no margin bucket {bucket_id!r}")
    config = engine.config  # type: ignore[attr-defined]
    rates = {
        config.asset(a).symbol: inputs.rate(
            r, f"{a} accrued funding", bound=config.max_funding_rate
        )
        for a, r in (accrued_funding or {}).items()
    }
    view: MarketView = engine.view(ts)  # type: ignore[attr-defined]
    results = []
    for symbol in sorted(valued_legs(bucket, view)):
        position = bucket.positions.get(symbol)
        oracle = view.oracle(symbol)
        state = engine.state.assets[symbol]  # type: ignore[attr-defined]
        basis = decayed_basis(state.basis, state.basis_ms, view.ts_ms, config.mark)

        def liquidated(price: int, symbol: str = symbol, basis: int = basis) -> bool:
            margin = replace(
                view.assets[symbol],
                oracle=price,
                price=mark_price(price, basis, config.mark),
                guarded=False,
            )
            probe = with_asset(view, symbol, margin)
            return below_maintenance(_with_funding(engine, bucket, probe, rates), probe)

        now = liquidated(oracle)
        below, above = (None, None) if now else crossings(liquidated, oracle)
        results.append(
            LiquidationPrice(
                bucket=bucket_id,
                asset=symbol,
                lots=position.lots if position is not None else 0,
                oracle=oracle,
                mark=view.price(symbol),
                below=below,
                above=above,
                liquidatable_now=now,
            )
        )
    return results


def _with_funding(
    engine: object, bucket: Bucket, view: MarketView, rates: Mapping[str, float]
) -> Bucket:
    """The bucket with the accrued funding of ``rates`` settled at ``view``'s marks."""
    if not rates:
        return bucket
    copy = bucket.copy()
    for symbol, rate in rates.items():
        if symbol not in bucket.positions or rate == 0:
            continue
        holders = [
            (b, other.positions[symbol].lots)
            for b, other in sorted(engine.state.buckets.items())  # type: ignore[attr-defined]
            if symbol in other.positions
        ]
        for b, amount in funding_payments(holders, view.price(symbol), rate):
            if b == bucket.bucket_id:
                copy.balance += amount
    return copy


def account_liquidation_prices(
    engine: object,
    account: str,
    ts: int | None = None,
    accrued_funding: Mapping[str, float] | None = None,
) -> list[LiquidationPrice]:
    """:func:`liquidation_prices` of every bucket of ``account`` that holds positions."""
    return [
        result
        for bucket in engine.buckets_of(account)  # type: ignore[attr-defined]
        if engine.state.buckets[bucket].positions  # type: ignore[attr-defined]
        or engine.state.buckets[bucket].options  # type: ignore[attr-defined]
        for result in liquidation_prices(engine, bucket, ts, accrued_funding=accrued_funding)
    ]


def wire_row(result: LiquidationPrice) -> dict[str, object]:
    """One result as the CLI's ``--json`` and the venue's endpoint print it.

    Prices are exact decimal strings of USD (six decimals: one micro-USD tick), the
    quantity a decimal string of units (eight decimals: one lot); no float on the way.
    """
    return {
        "bucket": result.bucket,
        "asset": result.asset,
        "qty": _decimal_text(result.lots, QTY_SCALE, 8),
        "oracle": _decimal_text(result.oracle, MICRO, 6),
        "mark": _decimal_text(result.mark, MICRO, 6),
        "liquidation_below": _decimal_text(result.below, MICRO, 6),
        "liquidation_above": _decimal_text(result.above, MICRO, 6),
        "liquidatable_now": result.liquidatable_now,
    }


def _decimal_text(units: int | None, scale: int, places: int) -> str | None:
    if units is None:
        return None
    whole, fraction = divmod(abs(units), scale)
    return f"{'-' if units < 0 else ''}{whole}.{fraction:0{places}d}"
