"""Margin admission of option trades: the engine's dYdX rule on the combined book.

An option fill changes two accounts' books. Each side must pass
:func:`liquidation.margin.may_update` on its combined margin state (engine cross bucket plus
options, :func:`liquidation.options.ledger.account_risk`): it meets the initial margin
afterwards, or it moves to a less risky state (maintenance does not rise and equity / MM does
not fall). The fill is planned on a copy of the ledger and applied only if both sides pass,
so a refused trade changes nothing.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from liquidation.errors import InsufficientMarginError
from liquidation.money import MICRO
from liquidation.options.ledger import OptionsLedger, account_risk
from liquidation.options.series import OptionSeries
from liquidation.rules.margin import MarginState, may_update


def margin_state(engine: Any, ledger: OptionsLedger, account: str, ts: int) -> MarginState:
    """Combined equity, IM and MM of ``account`` in micro-USD (requirements rounded up)."""
    if account not in engine.state.buckets and account not in ledger.cash:
        return MarginState(0, 0, 0)
    risk = account_risk(engine, ledger, account, ts)
    return MarginState(
        equity=math.floor(risk.equity * MICRO),
        initial=math.ceil(risk.requirement.initial * MICRO),
        maintenance=math.ceil(risk.requirement.maintenance * MICRO),
    )


def trade(
    engine: Any,
    ledger: OptionsLedger,
    buyer: str,
    seller: str,
    series: OptionSeries,
    lots: int,
    premium: int,
    *,
    ts: int,
) -> None:
    """:meth:`OptionsLedger.trade` if both sides pass the margin rule, else nothing.

    Raises
    ------
    InsufficientMarginError
        A side would end below initial margin without reducing its risk; the message names
        the side and the amounts.
    """
    planned = copy.deepcopy(ledger)
    planned.trade(buyer, seller, series, lots, premium, ts=ts)
    for account in (buyer, seller):
        before = margin_state(engine, ledger, account, ts)
        after = margin_state(engine, planned, account, ts)
        if not may_update(before, after):
            raise InsufficientMarginError(
                f"option trade of {lots} lots of {series.name} refused: {account!r} would have "
                f"equity {after.equity} below its initial margin {after.initial} (micro-USD) "
                "without reducing its risk; deposit or trade less"
            )
    ledger.trade(buyer, seller, series, lots, premium, ts=ts)
