"""Admission of a change to margin buckets: prices that may be used, and the dYdX rule.

Two rules decide whether a planned change (a trade leg, a transfer, a withdrawal, a margin
mode switch, a vault taking a liquidated position) may happen:

* **No valuation at a guarded price.** A check that would value a leg whose oracle is guarded
  (stale, tripped) is refused. The only change admitted to a bucket holding a guarded leg is
  one that provably adds no risk without valuing that leg: in standard margin, positions only
  shrink (no flip) in unguarded assets and equity does not fall (see :func:`admit`).
* **The dYdX v4 rule** (:func:`liquidation.rules.margin.may_update`): the bucket meets initial
  margin afterwards, or its maintenance does not rise and ``equity / MM`` does not fall.
"""

from __future__ import annotations

from collections.abc import Callable

from liquidation.accounts import Bucket
from liquidation.errors import GuardedAssetError, InsufficientMarginError, StaleOracleError
from liquidation.money import value
from liquidation.rules.margin import MarginState, may_update
from liquidation.state import EngineState
from liquidation.valuation import (
    MarketView,
    bucket_equity,
    bucket_initial,
    bucket_maintenance,
    valued_legs,
)


def margin_state(state: EngineState, view: MarketView, bucket_id: str) -> MarginState:
    """Equity, IM (at ``state``'s open interest) and MM of a bucket; zeros if it is absent.

    Pre: no leg of the bucket is guarded (the caller checked :func:`guarded_legs`).
    """
    bucket = state.peek_bucket(bucket_id)
    if bucket is None:
        return MarginState(0, 0, 0)
    oi = {symbol: asset.long_oi_lots for symbol, asset in state.assets.items()}
    return MarginState(
        bucket_equity(bucket, view),
        bucket_initial(bucket, view, oi),
        bucket_maintenance(bucket, view),
    )


def require_initial_margin(
    state: EngineState,
    view: MarketView,
    bucket_id: str,
    action: str,
    advice: Callable[[MarginState], str] = lambda _: "deposit first",
) -> None:
    """Raise :class:`InsufficientMarginError` unless the bucket covers its initial margin.

    For changes that must leave the bucket fully margined (a withdrawal, a transfer out of a
    cross bucket, a margin-mode switch); ``advice(margin)`` ends the message.
    """
    margin = margin_state(state, view, bucket_id)
    if margin.equity < margin.initial:
        raise InsufficientMarginError(
            f"{action} at ts={view.ts_ms} would leave {bucket_id!r} with equity "
            f"{margin.equity} below its initial margin {margin.initial}; {advice(margin)}"
        )


def guarded_legs(view: MarketView, bucket: Bucket | None) -> list[str]:
    """Assets valuing ``bucket`` (positions, options' underlyings) whose oracle is guarded."""
    if bucket is None:
        return []
    return sorted(a for a in valued_legs(bucket, view) if view.assets[a].guarded)


def require_priced(view: MarketView, symbol: str, action: str) -> None:
    """Raise if ``symbol`` has no usable price at the view's time.

    Raises
    ------
    StaleOracleError
        No accepted price, or older than the heartbeat.
    GuardedAssetError
        The guard has tripped (deviation, confidence band).
    """
    margin = view.assets[symbol]
    if not margin.guarded:
        return
    heartbeat = view.config.oracle.heartbeat_ms
    if margin.price is None or margin.guard_reason in ("stale", "no_price"):
        raise StaleOracleError(
            f"cannot {action} at ts={view.ts_ms}: {symbol} oracle is stale (no accepted price "
            f"within the {heartbeat} ms heartbeat); retry after a fresh price"
        )
    raise GuardedAssetError(
        f"cannot {action} at ts={view.ts_ms}: {symbol} oracle guard tripped "
        f"({margin.guard_reason}); wait for a price within the guard rails"
    )


def require_unguarded(view: MarketView, bucket: Bucket | None, action: str) -> None:
    """Raise :class:`GuardedAssetError` if any leg of ``bucket`` is guarded."""
    legs = guarded_legs(view, bucket)
    if legs:
        assert bucket is not None
        raise GuardedAssetError(
            f"cannot {action} at ts={view.ts_ms}: {bucket.bucket_id!r} holds {', '.join(legs)}, "
            "whose oracle is guarded, and a margin check cannot value it; retry after a "
            "valid price"
        )


def admit(before: EngineState, after: EngineState, view: MarketView, bucket_id: str) -> str | None:
    """Whether the planned change of ``bucket_id`` from ``before`` to ``after`` may happen.

    Returns
    -------
    str or None
        None if admitted, else the reason, for the caller's error message.
    """
    old, new = before.peek_bucket(bucket_id), after.peek_bucket(bucket_id)
    guarded = sorted(set(guarded_legs(view, old)) | set(guarded_legs(view, new)))
    if not guarded:
        m0 = margin_state(before, view, bucket_id)
        m1 = margin_state(after, view, bucket_id)
        if may_update(m0, m1):
            return None
        return (
            f"equity after {m1.equity} < initial margin {m1.initial}, and the change does not "
            f"reduce risk (maintenance {m0.maintenance} -> {m1.maintenance}, equity "
            f"{m0.equity} -> {m1.equity})"
        )
    return _safe_without_valuation(old, new, view, guarded)


def _safe_without_valuation(
    old: Bucket | None, new: Bucket | None, view: MarketView, guarded: list[str]
) -> str | None:
    reason = f"it holds {', '.join(guarded)}, whose oracle is guarded"
    if old is None or new is None or new.portfolio or old.options != new.options:
        return reason
    change = new.balance - old.balance
    for symbol in sorted(set(old.positions) | set(new.positions)):
        p0, p1 = old.positions.get(symbol), new.positions.get(symbol)
        lots0 = p0.lots if p0 is not None else 0
        lots1 = p1.lots if p1 is not None else 0
        cost0 = p0.cost if p0 is not None else 0
        cost1 = p1.cost if p1 is not None else 0
        if (lots0, cost0) == (lots1, cost1):
            continue
        if symbol in guarded or abs(lots1) > abs(lots0) or lots0 * lots1 < 0:
            return f"{reason}, and the change adds risk"
        mark = view.price(symbol)
        change += (value(lots1, mark) - cost1) - (value(lots0, mark) - cost0)
    if change < 0:
        return f"{reason}, and the change lowers equity by {-change}"
    return None
