"""Auto-deleveraging: rank opposite positions and place a bankrupt position on them.

Ranking (Hyperliquid / Bybit): ``score = pnl_ratio * leverage`` with ``pnl_ratio = upnl /
|entry cost|`` and ``leverage = notional / equity``, so the most profitable, most levered
traders are deleveraged first. Only positions in profit held in buckets of positive equity are
*eligible* to give a price concession: a bucket with no equity has nothing to give, and ranking
it first (its leverage is unbounded) would let it take the whole quantity while giving nothing.

Placement (:func:`allocate`): the bankrupt position of ``quantity`` lots is transferred at
the mark with a total price concession ``deficit`` (the bankruptcy price). Walking down the
ranking, each counterparty takes only what it can absorb at the going rate ``deficit_left /
quantity_left`` per lot (at most its position, and no more lots than its equity covers), and
gives a concession of at most its profit on the lots taken and its equity. What one cannot
absorb raises the rate of the lots left for the next. If a deficit remains when the lots are
placed, the counterparties that took lots give more, in ranking order, up to their capacity on
those lots; only then is anything left over. Lots still unplaced when the eligible
counterparties are exhausted go, with no concession, to the other opposite positions, solvent
ones first (in a matched book they always suffice); the deficit left is the caller's to
socialize. A counterparty that is itself bankrupt and is closed out this way realizes its own
debt; the caller settles it in the same step.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    def eligible(self) -> bool:
        """True if it can give a concession: in profit, in a bucket of positive equity."""
        return self.upnl > 0 and self.equity > 0

    @property
    def score(self) -> float:
        """``pnl_ratio * leverage`` (finite: only defined for eligible candidates)."""
        pnl_ratio = self.upnl / max(abs(self.cost), 1)
        return pnl_ratio * self.notional / max(self.equity, 1)


@dataclass(frozen=True)
class AdlFill:
    """Lots (absolute) one counterparty takes, the concession it gives, and the concession it
    could still give on those lots (``room``), micro-USD."""

    bucket: str
    lots: int
    concession: int
    room: int = 0


def rank_candidates(candidates: Sequence[AdlCandidate]) -> list[AdlCandidate]:
    """Eligible candidates, highest score first; ties broken by bucket id (deterministic).

    Contract (PEP 316; CrossHair and tests/verification check it):

    post: all(c.eligible for c in __return__)
    post: all(a.score >= b.score for a, b in zip(__return__, __return__[1:]))
    """
    return sorted((c for c in candidates if c.eligible), key=lambda c: (-c.score, c.bucket))


def allocate(
    candidates: Sequence[AdlCandidate], quantity: int, deficit: int
) -> tuple[list[AdlFill], int]:
    """Place ``quantity`` lots carrying a ``deficit`` concession on opposite positions.

    Parameters
    ----------
    candidates : sequence of AdlCandidate
        Every opposite position (any order; ranked here).
    quantity : int
        Lots to place, ``> 0``.
    deficit : int
        Concession to collect, micro-USD, ``>= 0``.

    Returns
    -------
    fills : list of AdlFill
        In execution order: ranked eligible candidates first, then the others by size.
    unabsorbed : int
        The part of ``deficit`` no counterparty could give (``0 <= unabsorbed <= deficit``).

    Notes
    -----
    Post: ``sum(lots) == quantity`` if the candidates hold enough lots; each fill's lots
    ``<=`` its candidate's position; each concession, *plus the room left for the engine's
    exact settlement*, ``<=`` the candidate's profit on the lots taken (floored) and ``<=``
    its equity; concessions sum to ``deficit - unabsorbed``. Waterfall order: something is
    left unabsorbed (for the caller to socialize) only if every counterparty that took lots
    has given all it can on them (no room left).

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: quantity > 0 and deficit >= 0
    pre: len({c.bucket for c in candidates}) == len(candidates)
    pre: all(c.lots != 0 for c in candidates)
    post: 0 <= __return__[1] <= deficit
    post: sum(f.concession for f in __return__[0]) == deficit - __return__[1]
    post: all(f.lots > 0 and f.concession >= 0 for f in __return__[0])
    post: all(sum(f.concession + f.room for f in __return__[0] if f.bucket == c.bucket) <= max(0, min(c.upnl, c.equity)) for c in candidates)
    post: all(f.room >= 0 for f in __return__[0])
    post: __return__[1] == 0 or all(f.room == 0 for f in __return__[0])
    post: all(sum(f.lots for f in __return__[0] if f.bucket == c.bucket) <= abs(c.lots) for c in candidates)
    post: sum(f.lots for f in __return__[0]) == min(quantity, sum(abs(c.lots) for c in candidates))
    """  # noqa: E501
    if quantity <= 0 or deficit < 0:
        raise ValueError(f"allocate needs quantity > 0 and deficit >= 0, got {quantity}, {deficit}")
    fills: list[AdlFill] = []
    left_q, left_d = quantity, deficit
    for c in rank_candidates(candidates):
        if left_q == 0:
            break
        held = abs(c.lots)
        take = min(left_q, held)
        if left_d > 0:
            take = min(take, c.equity * left_q // left_d)  # lots its equity covers at the rate
        if take <= 0:
            continue
        capacity = min(c.upnl * take // held, c.equity)
        at_rate = left_d if take == left_q else left_d * take // left_q
        concession = min(at_rate, capacity)
        fills.append(AdlFill(c.bucket, take, concession, capacity - concession))
        left_q -= take
        left_d -= concession
    for i, fill in enumerate(fills):
        if left_d == 0:
            break
        more = min(fill.room, left_d)
        if more > 0:
            fills[i] = AdlFill(fill.bucket, fill.lots, fill.concession + more, fill.room - more)
            left_d -= more
    taken = {f.bucket: f.lots for f in fills}
    # Solvent holders first, the largest first; a bankrupt one only if nobody else is left.
    rest = sorted(
        candidates,
        key=lambda c: (c.equity <= 0, -(abs(c.lots) - taken.get(c.bucket, 0)), c.bucket),
    )
    for c in rest:
        if left_q == 0:
            break
        take = min(left_q, abs(c.lots) - taken.get(c.bucket, 0))
        if take > 0:
            fills.append(AdlFill(c.bucket, take, 0))
            left_q -= take
    return fills, left_d
