"""Execute a Greek-limit partial liquidation: the plan's closes, delta first, at the marks.

:func:`liquidation.options.ledger.account_risk` plans the steps
(:func:`liquidation.options.limits.deleveraging_plan`); this module carries them out. A
perpetual step is an ordinary reducing trade on the engine against its liquidity vault; an
option step closes against the vault in the options ledger at the series' mark (rounded
against the account: it buys back at the mark rounded up and sells at the mark rounded down).
The breach and its plan are logged first (a ``greek_breach`` event), so the audit trail reads
breach -> closes. Steps too small to trade (under one lot, or under the minimum order
notional for a perpetual) are skipped and reported.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from liquidation.admission import require_priced
from liquidation.money import MICRO, QTY_SCALE
from liquidation.options.ledger import OptionsLedger, account_risk, options_market
from liquidation.options.limits import ExecutedStep
from liquidation.options.risk import build_grid, series_risk
from liquidation.options.series import SeriesArrays


def execute_greek_plan(
    engine: Any, ledger: OptionsLedger, account: str, *, ts: int
) -> list[ExecutedStep]:
    """Close what the Greek-limit plan of ``account`` says, in its order; [] if within limits."""
    risk = account_risk(engine, ledger, account, ts)
    if not risk.plan:
        return []
    view = engine.view(ts)
    for underlying in sorted({s.breach.underlying for s in risk.plan}):
        # Refuse before logging anything: no close happens at a stale or guarded price.
        require_priced(view, underlying, f"liquidate {account!r} for its Greek limits")
    ledger.record_breach(
        account,
        [{"instrument": s.instrument, "qty": s.qty, "greek": s.breach.greek,
          "value": s.breach.value, "limit": s.breach.limit} for s in risk.plan],
        ts=ts,
    )  # fmt: skip
    marks = _marks(engine, ledger, ts)
    vault = engine.config.vault
    minimum = engine.config.fees.min_order_notional_usd
    done = []
    for step in risk.plan:
        if step.instrument.startswith("perp:"):
            asset = step.instrument.removeprefix("perp:")
            lots = _lots(step.qty, engine.state.buckets[account].positions[asset].lots)
            notional = abs(lots) / QTY_SCALE * engine.view(ts).price(asset) / MICRO
            if lots == 0 or notional < minimum:
                done.append(ExecutedStep(step.instrument, lots, step.breach.greek, None, True))
                continue
            engine.trade(account, asset, lots, ts=ts)
            done.append(ExecutedStep(step.instrument, lots, step.breach.greek, None, False))
            continue
        series = next(s for s in ledger.lots(account) if s.name == step.instrument)
        lots = _lots(step.qty, ledger.lots(account)[series])
        mark = marks[series]
        if lots == 0:
            done.append(ExecutedStep(step.instrument, 0, step.breach.greek, None, True))
            continue
        if lots > 0:  # buy back a short
            premium = math.ceil(mark * MICRO)
            ledger.trade(account, vault, series, lots, premium, ts=ts)
        else:
            premium = math.floor(mark * MICRO)
            ledger.trade(vault, account, series, -lots, premium, ts=ts)
        done.append(ExecutedStep(step.instrument, lots, step.breach.greek, premium, False))
    return done


def _lots(planned: float, held: int) -> int:
    """Lots to trade for a planned close: rounded up (so the breach is cured, not left a
    fraction of a lot over its limit) but never beyond the position held."""
    magnitude = min(math.ceil(abs(planned) * QTY_SCALE), abs(held))
    return -magnitude if held > 0 else magnitude


def _marks(engine: Any, ledger: OptionsLedger, ts: int) -> dict[Any, float]:
    market = options_market(engine, ts)
    series = sorted(ledger.series)
    arrays = SeriesArrays.of(series, engine.config.symbols)
    grid = build_grid(market, ledger.config.margin)
    risk = series_risk(arrays, ledger.vols(arrays, market), market, grid, ledger.config.margin)
    return {s: float(v) for s, v in zip(series, np.asarray(risk.value), strict=True)}
