"""The engine's invariants, checked from its state (the fuzzer and the tests call them).

* **Ledger identity**: sources equal sinks to the micro-USD (:mod:`liquidation.state`).
* **Matched open interest**: per asset the positions sum to zero lots, and the tracked long
  open interest equals both the summed longs and the summed shorts.
* **Zero-sum PnL and funding**: funding nets to zero, realized PnL equals the entry cost of the
  open positions, and all positions valued at one mark sum to zero within one micro-USD per
  position (the truncation of each value).
* **Fund**: the insurance fund is never negative.
* **No debt without positions**: a bucket without positions (perpetual or option) has a
  non-negative balance.
* **Matched options**: every series held is listed, its long lots equal its short lots, and
  only cross buckets hold options.
* **Scan equals exact check**: the buckets the engine would liquidate (vectorised scan
  confirmed exactly) are exactly those the integer valuation finds below maintenance.

:func:`violations` returns the broken ones as messages; an empty list means all hold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from liquidation.money import value
from liquidation.options.engine_book import open_interest
from liquidation.valuation import below_maintenance

if TYPE_CHECKING:
    from liquidation.engine import Engine


def violations(engine: Engine, ts: int | None = None) -> list[str]:
    """Messages for every invariant ``engine`` breaks at ``ts`` (default: its clock)."""
    state = engine.state
    found = []
    residual = engine.ledger_discrepancy()
    if residual:
        found.append(f"ledger identity off by {residual}")
    if state.insurance.fund < 0:
        found.append(f"insurance fund {state.insurance.fund} < 0")
    if state.ledger.funding != 0:
        found.append(f"funding nets to {state.ledger.funding}, not 0")
    open_cost = 0
    lots: dict[str, list[int]] = {s: [0, 0] for s in state.assets}
    for bucket_id, bucket in state.buckets.items():
        if bucket.options and bucket.is_isolated:
            found.append(f"{bucket_id}: an isolated bucket holds options")
        if not bucket.positions and not bucket.options and bucket.balance < 0:
            found.append(f"{bucket_id}: balance {bucket.balance} with no positions")
        for symbol, position in bucket.positions.items():
            lots[symbol][0 if position.lots > 0 else 1] += abs(position.lots)
            open_cost += position.cost
    if state.ledger.realized_pnl != open_cost:
        found.append(f"realized PnL {state.ledger.realized_pnl} != open entry cost {open_cost}")
    for name, (long, short) in sorted(open_interest(state.buckets.values()).items()):
        if name not in state.options.series:
            found.append(f"{name}: held but not listed")
        if long != short:
            found.append(f"{name}: long {long} lots, short {short}")
    view = engine.view(ts)
    for symbol, (longs, shorts) in lots.items():
        tracked = state.assets[symbol].long_oi_lots
        if not longs == shorts == tracked:
            found.append(f"{symbol}: long OI {longs}, short OI {shorts}, tracked {tracked}")
        mark = view.assets[symbol].price
        if mark is not None:
            holders = [
                b.positions[symbol].lots for b in state.buckets.values() if symbol in b.positions
            ]
            total = sum(value(q, mark) for q in holders)
            if abs(total) > len(holders):
                found.append(f"{symbol}: positions at the mark sum to {total}, not ~0")
    exact = sorted(b for b, bucket in state.buckets.items() if below_maintenance(bucket, view))
    scanned = sorted(engine.liquidatable(ts))
    if scanned != exact:
        found.append(f"scan finds {scanned}, the exact check {exact}")
    return found
