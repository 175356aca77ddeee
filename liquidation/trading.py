"""Planning of a matched trade on a transaction: margin moves, fills, admission, sweeps.

A trade is planned in full before any check that depends on its outcome: the margin moved into
an isolated bucket, the fill events of both legs (split where a side flips), then the admission
of each side (:mod:`liquidation.admission`). A refused plan is dropped with its transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from liquidation.accounts import bucket_id
from liquidation.admission import (
    admit,
    require_initial_margin,
    require_priced,
    require_unguarded,
)
from liquidation.errors import (
    InputError,
    InsufficientBalanceError,
    InsufficientLiquidityError,
    InsufficientMarginError,
    UnknownAccountError,
)
from liquidation.fills import fill_events
from liquidation.mark import decayed_basis, updated_basis
from liquidation.money import MICRO, value
from liquidation.transaction import Transaction


@dataclass(frozen=True)
class Order:
    """A validated trade: ``account`` takes ``dq`` lots of ``symbol`` from ``counterparty``.

    ``price`` None means the mark; ``margin`` micro-USD move into the isolated bucket first.
    """

    account: str
    symbol: str
    dq: int
    counterparty: str
    isolated: bool = False
    margin: int = 0
    price: int | None = None


def plan_trade(tx: Transaction, order: Order) -> None:
    """Plan ``order`` on ``tx``: every event it needs, or an error and nothing.

    Raises
    ------
    UnknownAccountError
        The taker has no account.
    InsufficientLiquidityError
        The counterparty has no account, or its side fails admission.
    InsufficientMarginError, InsufficientBalanceError
        The taker's side fails admission, or the margin move is not covered.
    GuardedAssetError, StaleOracleError, InputError
        A guarded price, a price too far from the mark, or an order below the minimum.
    """
    config = tx.config
    symbol, dq = order.symbol, order.dq
    cross = tx.state.peek_bucket(order.account)
    if cross is None:
        raise UnknownAccountError(f"no account {order.account!r}; deposit to it first")
    if tx.state.peek_bucket(order.counterparty) is None:
        raise InsufficientLiquidityError(
            f"counterparty {order.counterparty!r} has no account; deposit collateral into it"
        )
    view = tx.view()
    require_priced(view, symbol, f"trade {symbol} for {order.account!r}")
    mark, oracle = view.price(symbol), view.oracle(symbol)
    price = mark if order.price is None else order.price
    bound = config.mark.max_trade_deviation
    if abs(price - mark) > bound * mark:
        raise InputError(
            f"{symbol} trade price {price} is more than {bound:.2%} from the mark {mark}"
        )
    if abs(value(dq, price)) < config.fees.min_order_notional_usd * MICRO:
        raise InputError(
            f"order of {dq} lots of {symbol} at {price} is worth less than the minimum "
            f"{config.fees.min_order_notional_usd} USD (dust)"
        )
    target = bucket_id(order.account, symbol if order.isolated else None)
    if order.margin:
        _move_margin(tx, order.account, symbol, order.margin)
    basis = None
    if order.price is not None:
        asset = tx.state.assets[symbol]
        decayed = decayed_basis(asset.basis, asset.basis_ms, tx.ts, config.mark)
        basis = updated_basis(decayed, price - oracle, config.mark)
    taker = tx.state.peek_bucket(target)
    maker = tx.state.peek_bucket(order.counterparty)
    assert maker is not None
    filled = tx.savepoint()
    for data in fill_events(
        symbol,
        dq,
        price,
        tx.ts,
        taker=(target, taker.positions.get(symbol) if taker else None),
        maker=(order.counterparty, maker.positions.get(symbol)),
        reason="trade",
        taker_fee_rate=config.fees.taker_fee_rate,
        fee_addon_rate=tx.state.insurance.fee_addon_bps / 10_000,
        maker_fee_rate=config.fees.maker_fee_rate,
        basis=basis,
    ):
        filled.emit("fill", data)
    refused = admit(tx.state, filled.state, view, target)
    if refused:
        raise InsufficientMarginError(
            f"{target!r} trade of {dq} lots of {symbol} at ts={tx.ts} refused: {refused}; "
            "deposit or trade smaller"
        )
    refused = admit(tx.state, filled.state, view, order.counterparty)
    if refused:
        raise InsufficientLiquidityError(
            f"counterparty {order.counterparty!r} cannot take {-dq} lots of {symbol} at "
            f"ts={tx.ts}: {refused}; deposit collateral into it or trade smaller"
        )
    tx.adopt(filled)
    sweep_isolated(tx, target)


def sweep_isolated(tx: Transaction, bucket: str) -> None:
    """Return the balance of an emptied isolated bucket to its account's cross bucket."""
    found = tx.state.peek_bucket(bucket)
    if found is not None and found.is_isolated and not found.positions and found.balance > 0:
        tx.emit(
            "transfer",
            {"account": found.account, "asset": found.isolated_asset, "amount": -found.balance},
        )


def _move_margin(tx: Transaction, account: str, symbol: str, amount: int) -> None:
    """Move ``amount`` from the cross bucket into the isolated bucket of ``symbol``.

    Like a withdrawal from the cross bucket: refused if that bucket holds a guarded leg (its
    equity cannot be valued) or would fall below its initial margin.
    """
    cross = tx.state.peek_bucket(account)
    assert cross is not None
    view = tx.view()
    require_unguarded(view, cross, f"move margin out of {account!r}")
    if amount > cross.balance:
        raise InsufficientBalanceError(
            f"moving {amount} into isolated {account}:{symbol} at ts={tx.ts} exceeds the cross "
            f"balance {cross.balance}"
        )
    tx.emit("transfer", {"account": account, "asset": symbol, "amount": amount})
    require_initial_margin(
        tx.state, view, account, f"moving {amount} into isolated {account}:{symbol}"
    )
