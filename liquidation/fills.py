"""Pure fill arithmetic: what a trade does to a position's cost and realized PnL.

Opening or adding books the trade value as cost; reducing releases a pro-rata share of the
cost (truncated toward zero, all of it on a full close) and realizes ``value - cost share``.
"""

from __future__ import annotations

from dataclasses import dataclass

from liquidation.accounts import Position
from liquidation.money import charge, div_trunc, value


@dataclass(frozen=True)
class FillAmounts:
    """Booked amounts of one fill (micro-USD) and the position's new ``risk_since_ms``."""

    cost_delta: int
    realized_pnl: int
    risk_since_ms: int


def fill_amounts(
    position: Position | None, dq: int, exec_price: int, ts_ms: int, adjustment: int = 0
) -> FillAmounts:
    """Cost and PnL of changing ``position`` by ``dq`` lots at ``exec_price``.

    Parameters
    ----------
    position : Position or None
        The current position (None or zero lots for a new one).
    dq : int
        Signed lots; must not flip the position (split a flip into a close and an open).
    exec_price : int
        Execution price, micro-USD per unit.
    ts_ms : int
        Fill time (new risk restarts the position's ramp exemption clock).
    adjustment : int
        Extra realized PnL (ADL transfer at the bankruptcy price).
    """
    lots = position.lots if position is not None else 0
    if dq == 0:
        raise ValueError("a fill needs a non-zero quantity")
    if lots == 0 or (lots > 0) == (dq > 0):
        return FillAmounts(value(dq, exec_price), adjustment, ts_ms)
    if abs(dq) > abs(lots):
        raise ValueError(f"fill of {dq} lots flips a position of {lots}; split it in two")
    assert position is not None
    closed = -dq
    cost_share = div_trunc(position.cost * closed, lots)
    realized = value(closed, exec_price) - cost_share + adjustment
    return FillAmounts(-cost_share, realized, position.risk_since_ms)


def close_price(oracle: int, lots_closed: int, slip_rate: float) -> int:
    """Execution price of closing ``lots_closed`` (sign of the closed position) with slippage.

    Selling a long fills below the oracle, buying back a short above; the slippage per unit
    is rounded up (against the liquidated trader).
    """
    slip = charge(oracle, slip_rate)
    return max(oracle - slip, 0) if lots_closed > 0 else oracle + slip
