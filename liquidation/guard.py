"""Planning of oracle prints and of the guard's escalation on a transaction.

The pure decisions live in :mod:`liquidation.rules.oracle_guard`; this module turns them into
events: a ``price`` event with the verdict, the TWAP and the re-anchoring window; ``guard`` events
when the guard trips or clears; a ``guard_alert`` once a guard has lasted
``alert_after_ms``; and ``mark_source`` events when a guard that lasted ``fallback_after_ms``
hands the mark to the reference median, and back when the primary feed agrees again.
"""

from __future__ import annotations

from liquidation.rules.oracle_guard import (
    GuardVerdict,
    PriceObservation,
    advance,
    escalation,
    reference_price,
)
from liquidation.transaction import Transaction


def plan_print(tx: Transaction, symbol: str, price: int, confidence: int) -> GuardVerdict:
    """Plan one print of the primary oracle: the verdict, the TWAP and guard changes."""
    cfg = tx.config.oracle
    asset = tx.state.assets[symbol]
    reference = reference_price(asset.references, tx.ts, cfg)
    obs = PriceObservation(symbol, price, tx.ts, confidence, reference)
    verdict, twap, window = advance(obs, asset.twap, asset.twap_ms, asset.window, cfg)
    tx.emit(
        "price",
        {
            "asset": symbol,
            "price": price,
            "confidence": confidence,
            "reference": reference,
            "twap": twap,
            "window": list(window),
            "accepted": verdict.accepted,
            "reanchored": verdict.reanchored,
            "reason": verdict.detail or verdict.reason,
        },
    )
    if verdict.accepted:
        if asset.mark_source == "reference":
            tx.emit(
                "mark_source",
                {"asset": symbol, "source": "oracle", "reason": "the primary agrees again"},
            )
        if asset.guarded:
            tx.emit("guard", {"asset": symbol, "guarded": False, "reason": "ok"})
    elif not asset.guarded or asset.guard_reason != verdict.reason:
        tx.emit("guard", {"asset": symbol, "guarded": True, "reason": verdict.reason})
    return verdict


def plan_escalation(tx: Transaction, symbol: str) -> None:
    """Log a newly stale oracle, then alert on a long guard and fall back to references."""
    asset = tx.state.assets[symbol]
    if asset.mark_source == "reference":
        return
    if tx.view().assets[symbol].guarded and not asset.guarded:
        tx.emit("guard", {"asset": symbol, "guarded": True, "reason": "stale"})
        asset = tx.state.assets[symbol]
    if not asset.guarded:
        return
    cfg = tx.config.oracle
    reference = reference_price(asset.references, tx.ts, cfg)
    action = escalation(asset.guard_since_ms, asset.alerted, reference, tx.ts, cfg)
    if action == "alert":
        tx.emit(
            "guard_alert",
            {"asset": symbol, "since": asset.guard_since_ms, "reason": asset.guard_reason},
        )
    elif action == "fallback":
        tx.emit(
            "mark_source",
            {
                "asset": symbol,
                "source": "reference",
                "reason": f"guarded ({asset.guard_reason}) since {asset.guard_since_ms}; "
                "the mark follows the reference median",
            },
        )
