"""Pure fill arithmetic: what a trade does to a position's cost and realized PnL.

Opening or adding books the trade value as cost; reducing releases a pro-rata share of the
cost (truncated toward zero, all of it on a full close) and realizes ``value - cost share``.

Every fill has two legs, a taker and a counterparty, at one price: ``+dq`` and ``-dq``. For each
leg ``realized_pnl - cost_delta == -value(dq, price)`` exactly (``value`` truncates toward zero
symmetrically), so every fill is zero-sum to the micro-USD. A trade that would flip either
side's position is split at the flip (:func:`segments`), because a leg never flips.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from liquidation.accounts import Position
from liquidation.money import charge, div_trunc, value


@dataclass(frozen=True)
class FillAmounts:
    """Booked amounts of one fill (micro-USD) and the position's new ``risk_since_ms``."""

    cost_delta: int
    realized_pnl: int
    risk_since_ms: int


def fill_amounts(position: Position | None, dq: int, exec_price: int, ts_ms: int) -> FillAmounts:
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
        Fill time (new risk restarts the position's ramp class).
    """
    lots = position.lots if position is not None else 0
    if dq == 0:
        raise ValueError("a fill needs a non-zero quantity")
    if lots == 0 or (lots > 0) == (dq > 0):
        return FillAmounts(value(dq, exec_price), 0, ts_ms)
    if abs(dq) > abs(lots):
        raise ValueError(f"fill of {dq} lots flips a position of {lots}; split it in two")
    assert position is not None
    closed = -dq
    cost_share = div_trunc(position.cost * closed, lots)
    realized = value(closed, exec_price) - cost_share
    return FillAmounts(-cost_share, realized, position.risk_since_ms)


def segments(dq: int, taker_lots: int, maker_lots: int) -> list[int]:
    """Split a taker trade of ``dq`` lots so that neither side flips within one leg.

    The taker goes from ``taker_lots`` to ``taker_lots + dq``, the counterparty from
    ``maker_lots`` to ``maker_lots - dq``; each crosses zero at most once, so there are at most
    three segments. They have the sign of ``dq`` and sum to ``dq``.
    """
    size, sign = abs(dq), (1 if dq > 0 else -1)
    cuts = set()
    for held, side in ((taker_lots, sign), (maker_lots, -sign)):
        if held and (held > 0) != (side > 0) and size > abs(held):
            cuts.add(abs(held))
    bounds = [0, *sorted(cuts), size]
    return [sign * (b - a) for a, b in itertools.pairwise(bounds)]


def fill_events(
    asset: str,
    dq: int,
    price: int,
    ts_ms: int,
    *,
    taker: tuple[str, Position | None],
    maker: tuple[str, Position | None],
    reason: str,
    taker_fee_rate: float = 0.0,
    fee_addon_rate: float = 0.0,
    maker_fee_rate: float = 0.0,
    basis: int | None = None,
) -> list[dict[str, Any]]:
    """The ``fill`` event data of a matched trade: the taker buys ``dq`` from the maker.

    Parameters
    ----------
    asset : str
    dq : int
        Taker's signed lots (the maker trades ``-dq``), non-zero.
    price : int
        Execution price, micro-USD per unit.
    ts_ms : int
        Fill time (new risk restarts a position's ramp class).
    taker, maker : (bucket id, position or None)
        The two sides and their positions before the fill.
    reason : str
        ``trade``, ``liquidation``, ``backstop`` or ``adl``.
    taker_fee_rate, fee_addon_rate, maker_fee_rate : float
        Fees on the traded notional, rounded up per leg; the add-on goes to the fund.
    basis : int or None
        The mark basis after this fill, for a fill at a price the parties set.

    Returns
    -------
    list of dict
        One event per segment (:func:`segments`), each with two legs whose ``dq`` cancel;
        the basis rides on the last.
    """
    (taker_id, taker_pos), (maker_id, maker_pos) = taker, maker
    sides = [_Side(taker_id, taker_pos, asset), _Side(maker_id, maker_pos, asset)]
    parts = segments(dq, sides[0].lots, sides[1].lots)
    events = []
    for i, part in enumerate(parts):
        traded = abs(value(part, price))
        legs = [
            sides[0].leg(
                part,
                price,
                ts_ms,
                charge(traded, taker_fee_rate),
                charge(traded, fee_addon_rate),
            ),
            sides[1].leg(-part, price, ts_ms, charge(traded, maker_fee_rate), 0),
        ]
        events.append(
            {
                "asset": asset,
                "price": price,
                "reason": reason,
                "basis": basis if i == len(parts) - 1 else None,
                "legs": legs,
            }
        )
    return events


class _Side:
    """One side of a matched trade, its position updated segment by segment."""

    def __init__(self, bucket: str, position: Position | None, asset: str) -> None:
        self.bucket = bucket
        self.asset = asset
        self.lots = position.lots if position is not None else 0
        self.cost = position.cost if position is not None else 0
        self.since = position.risk_since_ms if position is not None else 0

    def leg(self, dq: int, price: int, ts_ms: int, fee: int, fee_addon: int) -> dict[str, Any]:
        current = Position(self.asset, self.lots, self.cost, self.since) if self.lots else None
        amounts = fill_amounts(current, dq, price, ts_ms)
        self.lots += dq
        self.cost += amounts.cost_delta
        self.since = amounts.risk_since_ms
        return {
            "bucket": self.bucket,
            "dq": dq,
            "fee": fee,
            "fee_addon": fee_addon,
            "realized_pnl": amounts.realized_pnl,
            "cost_delta": amounts.cost_delta,
            "risk_since": amounts.risk_since_ms,
        }
