"""ADL and socialized loss in z3: ``adl.allocate``, ``adl.rank_candidates``,
``socialization.socialize``, over lists of ``N`` symbolic elements.

CrossHair hit its budget on these rules (lists of symbolic length, and integer products of
symbolic values). Here each one is written once in z3, over the arithmetic Python performs:

* money and lots are z3 *integers* (unbounded, exactly Python's ints: no overflow and no bound
  on any amount); ``a // b`` with ``b > 0`` is z3's integer division, which is Python's floor
  division for a positive divisor;
* the candidates' ``score`` is binary64, as :class:`~liquidation.rules.adl.AdlCandidate`
  computes it (``int / int`` correctly rounded, ``float * int`` and ``float / int`` with the
  int rounded first);
* a loop over a list becomes ``N`` unrolled steps, ``N`` fixed per proof (up to
  :data:`MAX_SIZES`); a ``break`` on an exhausted amount is a step that does nothing (the
  amount never grows back, so each later step is a no-op, which the unrolled step is too).

Orders. ``allocate`` walks the ranked eligible candidates, then *every* candidate in an order
of its own (solvent, largest remaining first). Its claims hold for any order, so the proof
takes the first walk in list order (any list: so every ranking of it) and the second in a free
permutation; the drift test evaluates the encoding with the orders the code computes.

Divisions. A product of two symbolic integers divided by a third is non-linear; the proofs of
``allocate`` and ``socialize`` replace each ``a * t // h`` by a free integer constrained only
by :func:`division_facts`, which :func:`division_lemmas` proves on their own (and the remainders
of ``split_pro_rata`` by free integers in ``[0, h)`` with the sum fact it proves). A claim that
holds for every value admitted by the facts holds for the real quotient too.

Each encoding is compared with the Python function on random inputs, output for output
(``tests/verification/test_waterfall_z3.py``), so it cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import count

import z3

from tests.verification.rules_z3 import F64, RNE, fval

#: Largest list length of the whole-function proofs: in CI (``make test``) and in
#: ``make verify`` (``long``). Each length is a separate proof; the time grows fast with it
#: (``allocate`` at 4 candidates: ~40 s of CPU; at 5 it did not finish in 5 min).
MAX_SIZES = {
    "ci": {"allocate": 3, "socialize": 5, "rank": 6},
    "long": {"allocate": 4, "socialize": 6, "rank": 8},
}

Claims = dict[str, tuple[z3.BoolRef, z3.BoolRef]]


def imin(a, b):
    """``min(a, b)`` of two ints (``b`` only if ``b < a``; equal ints are the same value)."""
    return z3.If(b < a, b, a)


def iabs(a):
    return z3.If(a >= 0, a, -a)


def select(values: Sequence[z3.ExprRef], index: z3.ArithRef) -> z3.ExprRef:
    """``values[index]`` for a symbolic ``index`` in ``range(len(values))``."""
    out = values[-1]
    for i in range(len(values) - 2, -1, -1):
        out = z3.If(index == i, values[i], out)
    return out


# -- divisions -------------------------------------------------------------------------------------
def exact_div(a, t, h, tag: str = ""):
    """``a * t // h`` (``h > 0`` wherever the code divides)."""
    return (a * t) / h


def division_facts(q, a, t, h) -> z3.BoolRef:
    """What the proofs assume of ``q = a * t // h``: with ``h > 0``, ``0 <= t <= h`` and
    ``a >= 0``, ``0 <= q <= a``, ``q == a`` if ``t == h``, and ``q < a`` if ``t < h`` and
    ``a > 0``. Proved by :func:`division_lemmas`."""
    return z3.Implies(
        z3.And(h > 0, t >= 0, t <= h, a >= 0),
        z3.And(
            q >= 0,
            q <= a,
            z3.Implies(t == h, q == a),
            z3.Implies(z3.And(t < h, a > 0), q < a),
        ),
    )


class FreeDivisions:
    """Each ``a * t // h`` as a fresh integer constrained by :func:`division_facts`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.facts: list[z3.BoolRef] = []
        self.quotients: list[z3.ArithRef] = []
        self._n = count()

    def __call__(self, a, t, h, tag: str = ""):
        q = z3.Int(f"{self.prefix}_q{next(self._n)}_{tag}")
        self.facts.append(division_facts(q, a, t, h))
        self.quotients.append(q)
        return q


def division_lemmas() -> Claims:
    """:func:`division_facts` for the real quotient (non-linear integer arithmetic, proved on
    its own in well under a second)."""
    a, t, h = z3.Ints("dl_a dl_t dl_h")
    q = exact_div(a, t, h)
    return {"division_facts_hold": (z3.BoolVal(True), division_facts(q, a, t, h))}


def pro_rata_sum_lemma(n: int) -> Claims:
    """The largest-remainder split hands out fewer than ``n`` extra units: with ``n`` weights
    ``w_i > 0`` of sum ``W`` and ``0 <= c <= W``, ``c - n < sum(c * w_i // W) <= c``."""
    c = z3.Int("pl_c")
    w = [z3.Int(f"pl_w{i}") for i in range(n)]
    total = z3.Sum(w)
    base = z3.Sum([exact_div(c, wi, total) for wi in w])
    domain = z3.And(*(wi > 0 for wi in w), c >= 0, c <= total)
    return {f"pro_rata_left_below_n_{n}": (domain, z3.And(base <= c, base > c - n))}


# -- rules.adl.allocate ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CandidateTerms:
    """One :class:`~liquidation.rules.adl.AdlCandidate` (its bucket is its list position)."""

    lots: z3.ArithRef
    cost: z3.ArithRef
    upnl: z3.ArithRef
    notional: z3.ArithRef
    equity: z3.ArithRef

    @classmethod
    def fresh(cls, prefix: str) -> CandidateTerms:
        return cls(
            *(z3.Int(f"{prefix}_{f}") for f in ("lots", "cost", "upnl", "notional", "equity"))
        )

    @classmethod
    def of(cls, c) -> CandidateTerms:
        return cls(
            *(z3.IntVal(getattr(c, f)) for f in ("lots", "cost", "upnl", "notional", "equity"))
        )

    def eligible(self) -> z3.BoolRef:
        return z3.And(self.upnl > 0, self.equity > 0)


@dataclass(frozen=True)
class AllocationTerms:
    """``allocate``'s result: per candidate the first-walk fill (``present1``, lots,
    concession, room) and the second-walk lots; the second walk's steps in order (candidate
    index, present, lots); the unabsorbed deficit."""

    present1: list[z3.BoolRef]
    lots1: list[z3.ArithRef]
    concession: list[z3.ArithRef]
    room: list[z3.ArithRef]
    lots2: list[z3.ArithRef]
    steps2: list[tuple[z3.ArithRef, z3.BoolRef, z3.ArithRef]]
    unabsorbed: z3.ArithRef


def walk_step(c: CandidateTerms, left_q, left_d, div: Callable = exact_div, tag: str = ""):
    """One step of ``allocate``'s walk down the ranking: ``(present, take, concession, room,
    left_q, left_d)`` after candidate ``c`` (``present``: a fill is appended)."""
    held = iabs(c.lots)
    take = imin(left_q, held)
    take = z3.If(left_d > 0, imin(take, div(c.equity, left_q, left_d, f"cover{tag}")), take)
    present = z3.And(c.eligible(), left_q != 0, take > 0)
    capacity = imin(div(c.upnl, take, held, f"cap{tag}"), c.equity)
    at_rate = z3.If(take == left_q, left_d, div(left_d, take, left_q, f"rate{tag}"))
    concession = imin(at_rate, capacity)
    room = capacity - concession
    left_q = z3.If(present, left_q - take, left_q)
    left_d = z3.If(present, left_d - concession, left_d)
    return present, take, concession, room, left_q, left_d


def room_step(present, concession, room, left_d):
    """One step of the loop over the fills that collects their room while a deficit is left
    (the ``break`` at ``left_d == 0`` is a step with ``more <= 0``): the new ``(concession,
    room, left_d)``."""
    more = imin(room, left_d)
    topped = z3.And(present, more > 0)
    return (
        z3.If(topped, concession + more, concession),
        z3.If(topped, room - more, room),
        z3.If(topped, left_d - more, left_d),
    )


def rest_step(remaining, left_q):
    """One step of the walk over every candidate for the lots left: ``(present, take,
    left_q)`` (the ``break`` at ``left_q == 0`` is a step with ``take <= 0``)."""
    take = imin(left_q, remaining)
    present = take > 0
    return present, take, z3.If(present, left_q - take, left_q)


def encode_allocate(
    cands: Sequence[CandidateTerms],
    quantity,
    deficit,
    order2: Sequence[z3.ArithRef],
    div: Callable = exact_div,
) -> AllocationTerms:
    """:func:`liquidation.rules.adl.allocate`, line for line, with the first walk over
    ``cands`` in list order (skipping the ineligible: the ranked list is one such order) and
    the second over ``order2`` (a permutation of the indices)."""
    n = len(cands)
    left_q, left_d = quantity, deficit
    present1, lots1, conc1, room1 = [], [], [], []
    for i, c in enumerate(cands):
        present, take, concession, room, left_q, left_d = walk_step(c, left_q, left_d, div, str(i))
        present1.append(present)
        lots1.append(take)
        conc1.append(concession)
        room1.append(room)
    for i in range(n):  # the fills in execution order (list order)
        conc1[i], room1[i], left_d = room_step(present1[i], conc1[i], room1[i], left_d)
    taken = [z3.If(present1[i], lots1[i], 0) for i in range(n)]
    remaining = [iabs(c.lots) - taken[i] for i, c in enumerate(cands)]
    steps2 = []
    for p in order2:
        present, take, left_q = rest_step(select(remaining, p), left_q)
        steps2.append((p, present, take))
    lots2 = [z3.Sum([z3.If(z3.And(p == i, s), t, 0) for p, s, t in steps2]) for i in range(n)]
    return AllocationTerms(present1, lots1, conc1, room1, lots2, steps2, left_d)


def allocate_step_claims() -> Claims:
    """``allocate``'s contract for *any* number of candidates, by induction over its three
    loops: each claim is one loop step preserving an invariant (and the step's own fill
    within bounds), for any candidate and any state the invariant admits; the last one
    composes the loops' results. (Each candidate is visited once per walk: the ranking is a
    sub-permutation of the list, :func:`rank_claims`, and the second walk is ``sorted`` of
    the list.)

    Composition, on paper: the walk's invariant holds at its start (nothing placed or
    conceded) and so at its end; the room loop starts from the walk's ``left_d`` and
    concessions with no fill seen, so at its end ``unabsorbed = left_d`` lies in ``[0,
    deficit]``, the concessions sum to ``deficit - unabsorbed``, and ``unabsorbed == 0`` or
    every fill has no room; each fill's bounds hold when made and the room step keeps
    ``concession + room``; the second walk sees every candidate's remaining lots once (in
    all ``total_held - placed``), which the last claim turns into ``sum(lots) ==
    min(quantity, total_held)``; a candidate's lots are its first-walk take plus its
    second-walk take, at most its position."""
    c = CandidateTerms.fresh("i")
    quantity, deficit, left_q, left_d = z3.Ints("i_quantity i_deficit i_left_q i_left_d")
    placed, conceded = z3.Ints("i_placed i_conceded")
    divs = FreeDivisions("i")
    present, take, conc, room, left_q2, left_d2 = walk_step(c, left_q, left_d, divs)
    held = iabs(c.lots)
    # walk invariant: amounts left within their totals, what was placed / conceded accounted
    walk_inv = z3.And(
        quantity > 0,
        deficit >= 0,
        left_q >= 0,
        left_q <= quantity,
        left_d >= 0,
        left_d <= deficit,
        placed == quantity - left_q,
        conceded == deficit - left_d,
    )
    walk_domain = z3.And(walk_inv, c.lots != 0, *divs.facts)
    placed2 = placed + z3.If(present, take, 0)
    conceded2 = conceded + z3.If(present, conc, 0)
    walk_inv2 = z3.substitute(
        walk_inv,
        (left_q, left_q2),
        (left_d, left_d2),
        (placed, placed2),
        (conceded, conceded2),
    )
    # the room loop: conceded + left == deficit; left == 0 or every fill seen has no room
    r_present, r_conc, r_room, r_left = z3.Bools("r_present")[0], *z3.Ints("r_conc r_room r_left")
    all_empty = z3.Bool("r_all_empty")  # every fill seen so far has no room left
    r_conceded = z3.Int("r_conceded")
    room_inv = z3.And(
        deficit >= 0,
        r_left >= 0,
        r_left <= deficit,
        r_conceded == deficit - r_left,
        z3.Or(r_left == 0, all_empty),
    )
    c2, room2, left2 = room_step(r_present, r_conc, r_room, r_left)
    room_domain = z3.And(room_inv, z3.Implies(r_present, z3.And(r_conc >= 0, r_room >= 0)))
    room_inv2 = z3.substitute(
        room_inv,
        (r_left, left2),
        (r_conceded, r_conceded + z3.If(r_present, c2 - r_conc, 0)),
        (all_empty, z3.And(all_empty, z3.Or(z3.Not(r_present), room2 == 0))),
    )
    # the second walk: left == max(0, start - remaining seen), placed == start - left
    q_start, q_left, seen, placed_rest, remaining = z3.Ints("w_start w_left w_seen w_placed w_rem")
    rest_inv = z3.And(
        q_start >= 0,
        seen >= 0,
        q_left == z3.If(q_start - seen > 0, q_start - seen, 0),
        placed_rest == q_start - q_left,
    )
    p2, take2, q_left2 = rest_step(remaining, q_left)
    rest_inv2 = z3.substitute(
        rest_inv,
        (q_left, q_left2),
        (seen, seen + remaining),
        (placed_rest, placed_rest + z3.If(p2, take2, 0)),
    )
    # composition: the first walk placed `placed` of `quantity`, taking `placed` from lots
    # held in total `total_held`; the second walk saw every remaining lot (total_held - placed)
    total_held = z3.Int("k_total_held")
    q1 = quantity - placed
    composed_domain = z3.And(quantity > 0, placed >= 0, placed <= quantity, placed <= total_held)
    after_rest = z3.If(q1 - (total_held - placed) > 0, q1 - (total_held - placed), 0)
    return {
        "allocate_walk_keeps_invariant": (walk_domain, walk_inv2),
        "allocate_walk_fill_within_bounds": (
            walk_domain,
            z3.Implies(
                present,
                z3.And(
                    take > 0,
                    take <= held,
                    take <= left_q,
                    conc >= 0,
                    room >= 0,
                    conc + room <= imin(c.upnl, c.equity),
                ),
            ),
        ),
        "allocate_room_step_keeps_invariant": (room_domain, room_inv2),
        "allocate_room_step_keeps_fill_within_bounds": (
            room_domain,
            z3.Implies(r_present, z3.And(room2 >= 0, c2 >= r_conc, c2 + room2 == r_conc + r_room)),
        ),
        "allocate_rest_step_keeps_invariant": (
            z3.And(rest_inv, remaining >= 0),
            z3.And(rest_inv2, z3.Implies(p2, z3.And(take2 > 0, take2 <= remaining))),
        ),
        "allocate_walks_place_every_lot": (
            composed_domain,
            placed + (q1 - after_rest) == imin(quantity, total_held),
        ),
    }


def allocate_claims(n: int) -> Claims:
    """``allocate``'s contract over ``n`` candidates: any integers with ``quantity > 0``,
    ``deficit >= 0``, no zero position (distinct buckets: the list positions); the first walk
    in any order of the eligible ones, the second in any permutation."""
    cands = [CandidateTerms.fresh(f"a{i}") for i in range(n)]
    quantity, deficit = z3.Ints("a_quantity a_deficit")
    order2 = [z3.Int(f"a_order2_{j}") for j in range(n)]
    divs = FreeDivisions("a")
    out = encode_allocate(cands, quantity, deficit, order2, divs)
    domain = z3.And(
        quantity > 0,
        deficit >= 0,
        *(c.lots != 0 for c in cands),
        *(z3.And(p >= 0, p < n) for p in order2),
        z3.Distinct(*order2) if n > 1 else z3.BoolVal(True),
        *divs.facts,
    )
    p1, conc, room, un = out.present1, out.concession, out.room, out.unabsorbed
    fills_conc = z3.Sum([z3.If(p1[i], conc[i], 0) for i in range(n)])
    lots_of = [z3.If(p1[i], out.lots1[i], 0) + out.lots2[i] for i in range(n)]
    held = [iabs(c.lots) for c in cands]
    total_held = z3.Sum(held)
    return {
        # post: 0 <= __return__[1] <= deficit
        f"allocate_unabsorbed_within_deficit_{n}": (domain, z3.And(un >= 0, un <= deficit)),
        # post: sum(concessions) == deficit - __return__[1]  (value conserved to the micro-dollar)
        f"allocate_conserves_value_{n}": (domain, fills_conc == deficit - un),
        # post: all(f.lots > 0 and f.concession >= 0 for f in fills)
        f"allocate_fills_positive_{n}": (
            domain,
            z3.And(
                *(z3.Implies(p1[i], z3.And(out.lots1[i] > 0, conc[i] >= 0)) for i in range(n)),
                *(z3.Implies(s, t > 0) for _, s, t in out.steps2),
            ),
        ),
        # post: concession + room <= max(0, min(upnl, equity)) for each counterparty
        f"allocate_concession_within_profit_and_equity_{n}": (
            domain,
            z3.And(
                *(
                    z3.Implies(p1[i], conc[i] + room[i] <= imin(c.upnl, c.equity))
                    for i, c in enumerate(cands)
                )
            ),
        ),
        # post: all(f.room >= 0 for f in fills)
        f"allocate_room_non_negative_{n}": (
            domain,
            z3.And(*(z3.Implies(p1[i], room[i] >= 0) for i in range(n))),
        ),
        # post: __return__[1] == 0 or all(f.room == 0 ...)  (ADL before socialization)
        f"allocate_unabsorbed_only_without_room_{n}": (
            domain,
            z3.Or(un == 0, z3.And(*(z3.Implies(p1[i], room[i] == 0) for i in range(n)))),
        ),
        # post: lots per counterparty <= its position
        f"allocate_lots_within_position_{n}": (
            domain,
            z3.And(*(lots_of[i] <= held[i] for i in range(n))),
        ),
        # post: sum(lots) == min(quantity, sum(abs(c.lots)))
        f"allocate_places_every_lot_{n}": (
            domain,
            z3.Sum(lots_of) == imin(quantity, total_held),
        ),
    }


def eval_allocate(candidates, quantity: int, deficit: int) -> tuple[list[tuple], int]:
    """The encoding at concrete inputs, in the code's orders (the ranking by
    :func:`~liquidation.rules.adl.rank_candidates`, whose order its own proof covers, and the
    second walk's key), as ``([(bucket, lots, concession, room), ...], unabsorbed)``."""
    from liquidation.rules.adl import rank_candidates

    ranked = rank_candidates(candidates)
    listed = [*ranked, *(c for c in candidates if not c.eligible)]
    terms = [CandidateTerms.of(c) for c in listed]
    n = len(listed)

    def value(term) -> int:
        return z3.simplify(term).as_long()

    # First evaluate with any second order to read what the first walk took, then the code's.
    probe = encode_allocate(
        terms, z3.IntVal(quantity), z3.IntVal(deficit), [z3.IntVal(i) for i in range(n)]
    )
    taken = {
        listed[i].bucket: value(probe.lots1[i])
        for i in range(n)
        if z3.is_true(z3.simplify(probe.present1[i]))
    }
    order2 = sorted(
        range(n),
        key=lambda i: (
            listed[i].equity <= 0,
            -(abs(listed[i].lots) - taken.get(listed[i].bucket, 0)),
            listed[i].bucket,
        ),
    )
    out = encode_allocate(
        terms, z3.IntVal(quantity), z3.IntVal(deficit), [z3.IntVal(i) for i in order2]
    )
    fills = [
        (listed[i].bucket, value(out.lots1[i]), value(out.concession[i]), value(out.room[i]))
        for i in range(n)
        if z3.is_true(z3.simplify(out.present1[i]))
    ]
    for p, present, take in out.steps2:
        if z3.is_true(z3.simplify(present)):
            fills.append((listed[value(p)].bucket, value(take), 0, 0))
    return fills, value(out.unabsorbed)


# -- rules.socialization.socialize -----------------------------------------------------------------
@dataclass(frozen=True)
class SocializationTerms:
    """``socialize``'s result: each holder's charge (0 = not listed) and the written-off part."""

    charges: list[z3.ArithRef]
    written_off: z3.ArithRef


def encode_socialize(
    amount, equities: Sequence[z3.ArithRef], div: Callable = exact_div, remainders=None
) -> SocializationTerms:
    """:func:`liquidation.rules.socialization.socialize` with
    :func:`liquidation.money.split_pro_rata` inlined. Weights are the payers' equities (a
    non-payer's weight 0 changes no sum); ``remainders`` stand for ``charged * w % total``
    (exact by default)."""
    n = len(equities)
    payer = [e > 0 for e in equities]
    weights = [z3.If(payer[i], equities[i], 0) for i in range(n)]
    total = z3.Sum(weights)
    charged = imin(amount, total)
    base = [div(w, charged, total, f"base{i}") for i, w in enumerate(weights)]
    if remainders is None:
        remainders = [(charged * w) % total for w in weights]
    left = charged - z3.Sum(base)

    def before(j: int, i: int) -> z3.BoolRef:  # j sorts before i: key (-remainder, index)
        return z3.Or(remainders[j] > remainders[i], z3.And(remainders[j] == remainders[i], j < i))

    ranks = [
        z3.Sum([z3.If(z3.And(payer[j], before(j, i)), 1, 0) for j in range(n) if j != i] or [0])
        for i in range(n)
    ]
    parts = [z3.If(payer[i], base[i] + z3.If(ranks[i] < left, 1, 0), 0) for i in range(n)]
    nothing = charged == 0
    charges = [z3.If(nothing, 0, p) for p in parts]
    return SocializationTerms(charges, amount - charged)


def socialize_claims(n: int) -> Claims:
    """``socialize``'s contract over ``n`` holders: any integer equities, ``amount >= 0``
    (distinct buckets: the list positions)."""
    amount = z3.Int("s_amount")
    equities = [z3.Int(f"s_equity{i}") for i in range(n)]
    divs = FreeDivisions("s")
    payer = [e > 0 for e in equities]
    total = z3.Sum([z3.If(p, e, 0) for p, e in zip(payer, equities, strict=True)])
    remainders = [z3.Int(f"s_rem{i}") for i in range(n)]
    out = encode_socialize(amount, equities, divs, remainders)
    charged = imin(amount, total)
    quotients = divs.quotients  # charged * w_i // total, in holder order
    n_payers = z3.Sum([z3.If(p, 1, 0) for p in payer])
    domain = z3.And(
        amount >= 0,
        *divs.facts,
        *(z3.Implies(p, z3.And(r >= 0, r < total)) for p, r in zip(payer, remainders, strict=True)),
        # pro_rata_sum_lemma: fewer than n_payers extra units (none if nothing is charged)
        z3.Implies(
            charged > 0,
            z3.And(z3.Sum(quotients) <= charged, z3.Sum(quotients) > charged - n_payers),
        ),
    )
    charges, off = out.charges, out.written_off
    return {
        # post: sum(charges) + written_off == amount  (value conserved to the micro-dollar)
        f"socialize_conserves_value_{n}": (domain, z3.Sum(charges) + off == amount),
        # post: written_off >= 0 and every listed charge > 0 (a charge is never negative)
        f"socialize_charges_non_negative_{n}": (
            domain,
            z3.And(off >= 0, *(c >= 0 for c in charges)),
        ),
        # post: each charge <= the holder's equity
        f"socialize_charge_within_equity_{n}": (
            domain,
            z3.And(*(z3.Implies(c > 0, c <= e) for c, e in zip(charges, equities, strict=True))),
        ),
        # written off only once every holder's positive equity is charged in full
        f"socialize_writes_off_only_beyond_equity_{n}": (
            domain,
            z3.Or(
                off == 0,
                z3.And(
                    *(z3.Implies(e > 0, c == e) for c, e in zip(charges, equities, strict=True))
                ),
            ),
        ),
    }


def eval_socialize(
    amount: int, holders: Sequence[tuple[str, int]]
) -> tuple[list[tuple[str, int]], int]:
    out = encode_socialize(z3.IntVal(amount), [z3.IntVal(e) for _, e in holders])
    charges = [z3.simplify(c).as_long() for c in out.charges]
    listed = [(bucket, c) for (bucket, _), c in zip(holders, charges, strict=True) if c]
    return listed, z3.simplify(out.written_off).as_long()


# -- rules.adl.rank_candidates --------------------------------------------------------------------
#: Bound of the candidates' money in the ranking proofs (below 2**53: every int converts to a
#: float exactly, and ``int / int`` is one rounded division of the converted values).
MAX_RANK_MONEY = 10**15


def to_f(i: z3.ArithRef) -> z3.FPRef:
    """``float(i)`` of an integer below 2**53 in magnitude (exact)."""
    return z3.fpToFP(RNE, z3.ToReal(i), F64)


def encode_score(c: CandidateTerms) -> z3.FPRef:
    """:attr:`~liquidation.rules.adl.AdlCandidate.score`:
    ``upnl / max(abs(cost), 1) * notional / max(equity, 1)`` in binary64."""
    one = z3.IntVal(1)
    ratio = z3.fpDiv(RNE, to_f(c.upnl), to_f(z3.If(iabs(c.cost) > 1, iabs(c.cost), one)))
    levered = z3.fpMul(RNE, ratio, to_f(c.notional))
    return z3.fpDiv(RNE, levered, to_f(z3.If(c.equity > 1, c.equity, one)))


class FloatOrder:
    """Comparisons of binary64 terms, as the code makes them (the drift tests)."""

    @staticmethod
    def neg(x):
        return z3.fpNeg(x)

    @staticmethod
    def lt(a, b):
        return z3.fpLT(a, b)

    @staticmethod
    def eq(a, b):
        return z3.fpEQ(a, b)


class RealOrder:
    """The same comparisons over reals (the proofs). On non-NaN floats ``<`` and ``==`` are
    those of the extended reals (``-0.0 == 0.0``, infinities at the ends) and negation is
    exact, so any finite set of non-NaN scores compares as some set of reals does: a claim
    proved for every real score holds for every non-NaN float score. (Bit-blasted float
    comparisons took 80 s at six candidates; reals, well under a second.)"""

    @staticmethod
    def neg(x):
        return -x

    @staticmethod
    def lt(a, b):
        return a < b

    @staticmethod
    def eq(a, b):
        return a == b


def encode_rank(eligible, scores, buckets, order=FloatOrder) -> list[z3.ArithRef]:
    """:func:`~liquidation.rules.adl.rank_candidates` as each candidate's position in the
    result (meaningful for the eligible ones): ``sorted`` with the key ``(-score, bucket)`` is
    stable, so a candidate's position is the number of eligible candidates whose key is
    smaller, or equal and earlier in the list (tuple comparison: ``==`` on the first element,
    then ``<``)."""
    n = len(scores)

    def key_lt(j: int, i: int) -> z3.BoolRef:
        neg_j, neg_i = order.neg(scores[j]), order.neg(scores[i])
        return z3.If(order.eq(neg_j, neg_i), buckets[j] < buckets[i], order.lt(neg_j, neg_i))

    def key_eq(j: int, i: int) -> z3.BoolRef:
        return z3.And(order.eq(scores[j], scores[i]), buckets[j] == buckets[i])

    return [
        z3.Sum(
            [
                z3.If(z3.And(eligible[j], z3.Or(key_lt(j, i), z3.And(key_eq(j, i), j < i))), 1, 0)
                for j in range(n)
                if j != i
            ]
            or [z3.IntVal(0)]
        )
        for i in range(n)
    ]


def score_claims() -> Claims:
    """The score of an eligible candidate whose money lies within :data:`MAX_RANK_MONEY` is a
    finite float (so the sort key is a total order: no NaN), in four lemmas over the three
    rounded operations of :func:`encode_score`: the ints convert to floats within the bound
    (and a divisor ``>= 1`` to a float ``>= 1``); ``|x / y| <= B`` for ``|x| <= B``, ``y >= 1``;
    ``|x * y| <= 2**100`` for ``|x|, |y| <= B``; ``|x / y| <= 2**100`` for ``|x| <= 2**100``,
    ``y >= 1``. Composed: ``|score| <= 2**100``, finite and not NaN. (The whole score at
    once did not finish in 5 min; each lemma takes seconds.)"""
    bound, big = fval(float(MAX_RANK_MONEY)), fval(2.0**100)
    x, y = z3.FP("sc_x", F64), z3.FP("sc_y", F64)
    i = z3.Int("sc_i")

    def within(v, b):  # -b <= v <= b (false for NaN)
        return z3.And(z3.fpLEQ(z3.fpNeg(b), v), z3.fpLEQ(v, b))

    one = fval(1.0)
    converted = to_f(i)
    return {
        "rank_score_ints_convert_within_bound": (
            z3.And(i >= -MAX_RANK_MONEY, i <= MAX_RANK_MONEY),
            z3.And(within(converted, bound), z3.Implies(i >= 1, z3.fpGEQ(converted, one))),
        ),
        "rank_score_ratio_within_bound": (
            z3.And(within(x, bound), z3.fpGEQ(y, one)),
            within(z3.fpDiv(RNE, x, y), bound),
        ),
        "rank_score_product_within_2_100": (
            z3.And(within(x, bound), within(y, bound)),
            within(z3.fpMul(RNE, x, y), big),
        ),
        "rank_score_quotient_within_2_100": (
            z3.And(within(x, big), z3.fpGEQ(y, one)),
            within(z3.fpDiv(RNE, x, y), big),
        ),
    }


def rank_claims(n: int) -> Claims:
    """``rank_candidates``' contract over ``n`` candidates: eligibility any, scores any reals
    (so any non-NaN floats, :class:`RealOrder`; :func:`score_claims` proves an eligible
    candidate's score finite), buckets any values of a total order (distinct or not)."""
    eligible = [z3.Bool(f"r_eligible{i}") for i in range(n)]
    scores = [z3.Real(f"r_score{i}") for i in range(n)]
    buckets = [z3.Int(f"r_bucket{i}") for i in range(n)]
    pos = encode_rank(eligible, scores, buckets, RealOrder)
    k = z3.Sum([z3.If(e, 1, 0) for e in eligible])
    domain = z3.BoolVal(True)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    return {
        # the result is the eligible candidates, each once: positions 0..k-1, all distinct
        f"rank_is_a_permutation_of_the_eligible_{n}": (
            domain,
            z3.And(
                *(z3.Implies(eligible[i], z3.And(pos[i] >= 0, pos[i] < k)) for i in range(n)),
                *(z3.Implies(z3.And(eligible[i], eligible[j]), pos[i] != pos[j]) for i, j in pairs),
            ),
        ),
        # post: all(a.score >= b.score for a, b in zip(__return__, __return__[1:]))
        f"rank_highest_score_first_{n}": (
            domain,
            z3.And(
                *(
                    z3.Implies(
                        z3.And(eligible[i], eligible[j], pos[i] < pos[j]),
                        scores[i] >= scores[j],
                    )
                    for i, j in pairs
                )
            ),
        ),
    }


def eval_rank(candidates) -> list[str]:
    """The encoding's ranking at concrete candidates (buckets as z3 strings)."""
    terms = [CandidateTerms.of(c) for c in candidates]
    eligible = [z3.BoolVal(c.eligible) for c in candidates]
    scores = [encode_score(t) for t in terms]
    pos = encode_rank(eligible, scores, [z3.StringVal(c.bucket) for c in candidates])
    placed = {
        z3.simplify(p).as_long(): c.bucket
        for p, c in zip(pos, candidates, strict=True)
        if c.eligible
    }
    return [placed[i] for i in range(len(placed))]


def eval_score(c) -> z3.FPRef:
    return z3.simplify(encode_score(CandidateTerms.of(c)))


def claims(budget: str = "ci") -> dict[str, Claims]:
    """Dotted name of each rule proved here -> its claims, the list sizes of ``budget``
    (``"ci"`` or ``"long"``; the score's float lemmas run in ``long`` only)."""
    sizes = MAX_SIZES[budget]
    allocate = {**division_lemmas(), **allocate_step_claims()}
    for n in range(1, sizes["allocate"] + 1):
        allocate.update(allocate_claims(n))
    socialize: Claims = {}
    for n in range(1, sizes["socialize"] + 1):
        socialize.update(pro_rata_sum_lemma(n))
        socialize.update(socialize_claims(n))
    rank = score_claims() if budget == "long" else {}
    for n in range(2, sizes["rank"] + 1):
        rank.update(rank_claims(n))
    return {
        "liquidation.rules.adl.allocate": allocate,
        "liquidation.rules.socialization.socialize": socialize,
        "liquidation.rules.adl.rank_candidates": rank,
    }
