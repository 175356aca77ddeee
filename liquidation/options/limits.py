"""Limits on an account's net Greeks and the order of a Greek-limit partial liquidation.

When an account's net delta, gamma or vega on an underlying exceeds its limit
(:class:`~liquidation.options.config.GreekLimits`), it is partially liquidated: **delta
first**, then gamma, then vega. Each step closes part of the position that reduces the
breached Greek the most (the largest same-signed contribution), at most ``step_fraction`` of
that position and no more than the breach needs, and the Greeks are re-evaluated; perpetuals
and options compete on the same footing, so a delta breach of a hedged book closes the
unhedged excess, never the hedge. Only reductions are planned, so the plan ends.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from liquidation.options.config import GreekLimits

GREEKS: tuple[str, ...] = ("delta_usd", "gamma_usd", "vega_usd")


@dataclass(frozen=True)
class Holding:
    """One position of a book with its whole-position Greeks (USD, see ``net_greeks``)."""

    instrument: str
    underlying: str
    qty: float
    delta_usd: float
    gamma_usd: float
    vega_usd: float

    def scaled(self, fraction: float) -> Holding:
        """The same position with ``fraction`` of it left."""
        return replace(
            self,
            qty=self.qty * fraction,
            delta_usd=self.delta_usd * fraction,
            gamma_usd=self.gamma_usd * fraction,
            vega_usd=self.vega_usd * fraction,
        )


@dataclass(frozen=True)
class Breach:
    """A net Greek beyond its limit on one underlying."""

    underlying: str
    greek: str
    value: float
    limit: float


@dataclass(frozen=True)
class Step:
    """Close ``qty`` (signed, opposite to the position) of ``instrument`` because of ``breach``."""

    instrument: str
    qty: float
    breach: Breach


def net(holdings: list[Holding]) -> dict[tuple[str, str], float]:
    """Net Greek per (underlying, greek)."""
    total: dict[tuple[str, str], float] = {}
    for h in holdings:
        for g in GREEKS:
            key = (h.underlying, g)
            total[key] = total.get(key, 0.0) + getattr(h, g)
    return total


def breaches(holdings: list[Holding], limits: GreekLimits) -> list[Breach]:
    """Breaches in liquidation priority: delta, then gamma, then vega; largest first."""
    found = []
    for (underlying, greek), value in net(holdings).items():
        limit = getattr(limits, greek)
        if abs(value) > limit:
            found.append(Breach(underlying, greek, value, limit))
    return sorted(
        found, key=lambda b: (GREEKS.index(b.greek), -abs(b.value) / b.limit, b.underlying)
    )


def deleveraging_plan(
    holdings: list[Holding], limits: GreekLimits, max_steps: int = 10_000
) -> list[Step]:
    """Steps of a Greek-limit partial liquidation until every net Greek is within its limit.

    Returns the steps in order (empty if no limit is breached). If a breach has no position
    left that reduces it (it cannot happen for delta: every contribution can be closed), the
    plan stops there, having closed what helps.
    """
    book = {h.instrument: h for h in holdings}
    original = {h.instrument: abs(h.qty) for h in holdings}
    steps: list[Step] = []
    while len(steps) < max_steps:
        found = breaches(list(book.values()), limits)
        if not found:
            break
        breach = found[0]
        sign = 1.0 if breach.value > 0 else -1.0
        candidates = [
            h
            for h in book.values()
            if h.underlying == breach.underlying and getattr(h, breach.greek) * sign > 0
        ]
        if not candidates:
            break
        pick = max(candidates, key=lambda h: (abs(getattr(h, breach.greek)), h.instrument))
        contribution = abs(getattr(pick, breach.greek))
        # A hair over what the breach needs, so float rounding cannot leave it at the limit.
        needed = (abs(breach.value) - breach.limit) / contribution * (1.0 + 1e-9)
        cap = limits.step_fraction * original[pick.instrument] / abs(pick.qty)
        fraction = min(1.0, needed, cap)
        close_qty = -pick.qty * fraction
        steps.append(Step(pick.instrument, close_qty, breach))
        left = pick.scaled(1.0 - fraction)
        if fraction >= 1.0 or abs(left.qty) <= 1e-12 * original[pick.instrument]:
            del book[pick.instrument]
        else:
            book[pick.instrument] = left
    return steps


@dataclass(frozen=True)
class ExecutedStep:
    """One close carried out (``lots`` signed, the account's side) or skipped."""

    instrument: str
    lots: int
    greek: str
    price: int | None
    skipped: bool
