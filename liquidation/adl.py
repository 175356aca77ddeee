"""Auto-deleveraging: rank opposite positions by profit and leverage (Hyperliquid / Bybit).

The score of a counterparty is ``pnl_ratio * leverage`` with ``pnl_ratio = upnl / |entry
cost|`` and ``leverage = notional / equity``: the most profitable, most levered traders are
deleveraged first. Only profitable positions are eligible, and an ADL haircut never exceeds the
profit of the quantity taken, so a deleveraged trader never ends worse than at entry.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AdlCandidate:
    """An opposite position that may be deleveraged (money in micro-USD)."""

    bucket: str
    lots: int
    cost: int
    upnl: int
    notional: int
    equity: int

    @property
    def score(self) -> float:
        """``pnl_ratio * leverage``; infinite leverage when equity is not positive."""
        pnl_ratio = self.upnl / max(abs(self.cost), 1)
        leverage = self.notional / self.equity if self.equity > 0 else float("inf")
        return pnl_ratio * leverage


def rank_candidates(candidates: list[AdlCandidate]) -> list[AdlCandidate]:
    """Profitable candidates, highest score first; ties broken by bucket id (deterministic)."""
    eligible = [c for c in candidates if c.upnl > 0]
    return sorted(eligible, key=lambda c: (-c.score, c.bucket))
