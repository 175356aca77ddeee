"""The ramp's class bookkeeping in z3: ``ramp.retarget`` (and ``ramp.multiplier`` to read it).

CrossHair hit its budget on ``retarget`` (a list of floors of symbolic length, floats). Here it
is written once in z3:

* times are z3 integers (exact); the floors are a list of ``L`` symbolic ``(since, level)``
  pairs, ``L`` fixed per proof (up to :data:`MAX_FLOORS`), and the lists ``retarget`` builds are
  fixed-size lists with a symbolic length (the compaction of the kept floors and each merge
  written out);
* the multipliers are compared, never computed, except in two places: the base level
  (``ramped_multiplier``, proved in :mod:`tests.verification.rules_z3`) and the gaps between
  floors that pick which two merge. The proofs take each base level as a free value bounded
  by ``ramped_multiplier``'s proved contract, and the merge as a free choice of any two
  adjacent floors (the claims hold whichever two merge); the multipliers are then reals
  (:class:`RealOps`): on positive floats ``<``, ``==``, ``min`` and ``max`` are those of the
  reals, so a claim proved for all positive reals holds for all positive floats;
* the drift tests evaluate the same encoding in binary64 (:class:`FloatOps`), with the base
  level from the proved ``ramped_multiplier`` encoding and the code's choice of merge (the
  first smallest gap), and compare the state with ``retarget``'s, bit for bit
  (``tests/verification/test_waterfall_z3.py``).

The claims are ``retarget``'s contract, for *every* ``risk_since_ms`` (the contract checks one
probe per class; one per class is every position, since a class pays one multiplier).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import z3

from tests.verification import rules_z3

#: Most floors of the state before the change, per proof: in CI and in ``make verify``
#: (a reachable state has at most ``max_classes - 2``; 6 covers ``max_classes`` up to 8).
MAX_FLOORS = {"ci": 3, "long": 6}

Claims = dict[str, tuple[z3.BoolRef, z3.BoolRef]]


class FloatOps:
    """Binary64, as the code computes (CPython's ``min``/``max`` keep the first argument
    unless the second is strictly smaller / larger)."""

    @staticmethod
    def lt(a, b):
        return z3.fpLT(a, b)

    @staticmethod
    def le(a, b):
        return z3.fpLEQ(a, b)

    @staticmethod
    def eq(a, b):
        return z3.fpEQ(a, b)

    @staticmethod
    def sub(a, b):
        return z3.fpSub(rules_z3.RNE, a, b)


class RealOps:
    """The same comparisons over reals (the proofs; no arithmetic is needed there)."""

    @staticmethod
    def lt(a, b):
        return a < b

    @staticmethod
    def le(a, b):
        return a <= b

    @staticmethod
    def eq(a, b):
        return a == b

    @staticmethod
    def sub(a, b):
        return a - b


def py_min(ops, a, b):
    return z3.If(ops.lt(b, a), b, a)


def py_max(ops, a, b):
    return z3.If(ops.lt(a, b), b, a)


def select(values: Sequence, index) -> z3.ExprRef:
    """``values[index]`` for a symbolic ``index`` (the last value past the end)."""
    out = values[-1]
    for i in range(len(values) - 2, -1, -1):
        out = z3.If(index == i, values[i], out)
    return out


@dataclass(frozen=True)
class RampTerms:
    """A :class:`~liquidation.rules.ramp.RampState` whose floors are ``slots`` of which the
    first ``count`` are in use (``count`` a z3 int, or the number of slots)."""

    target: z3.ExprRef
    base_from: z3.ExprRef
    base_start_ms: z3.ArithRef
    changed_ms: z3.ArithRef
    slots: tuple[tuple[z3.ArithRef, z3.ExprRef], ...]
    count: z3.ArithRef

    @classmethod
    def fresh(cls, prefix: str, n_floors: int) -> RampTerms:
        slots = tuple(
            (z3.Int(f"{prefix}_since{i}"), z3.Real(f"{prefix}_floor{i}")) for i in range(n_floors)
        )
        return cls(
            z3.Real(f"{prefix}_target"),
            z3.Real(f"{prefix}_base_from"),
            z3.Int(f"{prefix}_base_start"),
            z3.Int(f"{prefix}_changed"),
            slots,
            z3.IntVal(n_floors),
        )

    @classmethod
    def of(cls, state) -> RampTerms:
        f = rules_z3.fval
        return cls(
            f(state.target),
            f(state.base_from),
            z3.IntVal(state.base_start_ms),
            z3.IntVal(state.changed_ms),
            tuple((z3.IntVal(s), f(level)) for s, level in state.floors),
            z3.IntVal(len(state.floors)),
        )

    def used(self, j: int) -> z3.BoolRef:
        return z3.IntVal(j) < self.count


def well_formed(ops, s: RampTerms) -> z3.BoolRef:
    """:func:`liquidation.rules.ramp._well_formed` (``0 < base_from`` over the reals)."""
    n = len(s.slots)
    conds = [s.base_start_ms <= s.changed_ms, ops.lt(0, s.base_from), ops.le(s.base_from, s.target)]
    for j in range(n):
        since, level = s.slots[j]
        conds.append(
            z3.Implies(
                s.used(j),
                z3.And(since < s.changed_ms, ops.lt(s.base_from, level), ops.le(level, s.target)),
            )
        )
        if j + 1 < n:
            since2, level2 = s.slots[j + 1]
            conds.append(z3.Implies(s.used(j + 1), z3.And(since < since2, ops.lt(level, level2))))
    return z3.And(*conds)


def encode_multiplier(ops, s: RampTerms, base, risk_since) -> z3.ExprRef:
    """:func:`liquidation.rules.ramp.multiplier` of a well-formed state at the time whose base
    level is ``base`` (``bisect_right`` over ascending ``since``: the number of used floors with
    ``since <= risk_since``)."""
    n = len(s.slots)
    k = z3.Sum(
        [z3.If(z3.And(s.used(j), s.slots[j][0] <= risk_since), 1, 0) for j in range(n)]
        or [z3.IntVal(0)]
    )
    if n == 0:
        in_class = base
    else:
        level = select([lv for _, lv in s.slots], k - 1)
        in_class = z3.If(k == 0, base, py_min(ops, s.target, py_max(ops, base, level)))
    return z3.If(risk_since >= s.changed_ms, s.target, in_class)


def exact_merge(ops, slots, count) -> z3.ArithRef:
    """``gaps.index(min(gaps))``: the first of the smallest gaps between used floors."""
    n = len(slots)
    gaps = [ops.sub(slots[i + 1][1], slots[i][1]) for i in range(n - 1)]
    smallest = gaps[0]
    for i in range(1, n - 1):
        smallest = z3.If(z3.IntVal(i + 1) < count, py_min(ops, smallest, gaps[i]), smallest)
    out = z3.IntVal(n - 2)
    for i in range(n - 3, -1, -1):
        out = z3.If(ops.eq(gaps[i], smallest), z3.IntVal(i), out)
    return out


def encode_retarget(
    ops,
    state: RampTerms,
    target,
    ts_ms,
    max_classes,
    base,
    merge: Callable | None = None,
    keep_schedule: bool = True,
) -> RampTerms:
    """:func:`liquidation.rules.ramp.retarget` for ``target != state.target`` (otherwise it
    returns ``state`` itself), with ``base`` the base level at ``ts_ms``; ``merge(slots,
    count, step)`` picks the floors ``i, i + 1`` that merge (the code's by default)."""
    merge = merge or (lambda slots, count, step: exact_merge(ops, slots, count))
    old = [(s, lv) for s, lv in state.slots]
    paying = [(s, py_min(ops, state.target, py_max(ops, base, lv))) for s, lv in old]
    paying.append((state.changed_ms, state.target))
    relax = ops.lt(target, state.target)
    base2 = z3.If(relax, py_min(ops, base, target), base)
    paying = [(s, z3.If(relax, py_min(ops, p, target), p)) for s, p in paying]
    # the kept floors, compacted
    keep, last, has_last = [], None, z3.BoolVal(False)
    for since, level in paying:
        dominated = z3.Or(ops.le(level, base2), since >= ts_ms)
        same = z3.And(has_last, ops.eq(last, level)) if last is not None else z3.BoolVal(False)
        kept = z3.And(z3.Not(dominated), z3.Not(same))
        keep.append(kept)
        last = level if last is None else z3.If(kept, level, last)
        has_last = z3.Or(has_last, kept)
    m = len(paying)
    position = [
        z3.Sum([z3.If(keep[j], 1, 0) for j in range(i)] or [z3.IntVal(0)]) for i in range(m)
    ]
    slots = []
    for j in range(m):
        pick = [z3.And(keep[i], position[i] == j) for i in range(m)]
        since = paying[-1][0]
        level = paying[-1][1]
        for i in range(m - 1, -1, -1):
            since = z3.If(pick[i], paying[i][0], since)
            level = z3.If(pick[i], paying[i][1], level)
        slots.append((since, level))
    count = z3.Sum([z3.If(k, 1, 0) for k in keep])
    limit = z3.If(max_classes - 2 > 1, max_classes - 2, 1)
    for step in range(m - 1):
        active = count > limit
        i = merge(slots, count, step)
        merged = []
        for j in range(m):
            after = slots[j + 1] if j + 1 < m else slots[j]
            since = z3.If(j < i, slots[j][0], z3.If(j == i, slots[j][0], after[0]))
            level = z3.If(j < i, slots[j][1], z3.If(j == i, after[1], after[1]))
            merged.append((z3.If(active, since, slots[j][0]), z3.If(active, level, slots[j][1])))
        slots = merged
        count = z3.If(active, count - 1, count)
    # a tightening while the base still ramps keeps the base's schedule
    still_ramping = z3.And(
        ops.lt(state.target, target), ops.lt(base, state.target), z3.BoolVal(keep_schedule)
    )
    base_from = z3.If(still_ramping, state.base_from, base2)
    base_start = z3.If(still_ramping, state.base_start_ms, ts_ms)
    return RampTerms(target, base_from, base_start, ts_ms, tuple(slots), count)


def retarget_claims(n_floors: int, keep_schedule: bool = True) -> Claims:
    """``retarget``'s contract from a well-formed state with ``n_floors`` floors: positive real
    multipliers, any integer times with ``ts_ms >= changed_ms``, any ``max_classes >= 3``, any
    ``ramp_ms >= 0``, any merge of two adjacent floors; the base levels free within
    ``ramped_multiplier``'s proved contract."""
    ops = RealOps
    state = RampTerms.fresh("o", n_floors)
    target, base, base_new = z3.Reals("n_target n_base n_base_new")
    ts, max_classes, since = z3.Ints("n_ts n_max_classes n_risk_since")
    choices = [z3.Int(f"n_merge{k}") for k in range(n_floors)]

    def free_merge(slots, count, step):  # any adjacent pair of the floors in use
        c = choices[step]
        return z3.If(z3.And(c >= 0, c <= count - 2), c, 0)

    new = encode_retarget(ops, state, target, ts, max_classes, base, free_merge, keep_schedule)
    # The base levels, old and new state, at ts and at a later time t2: free values bound by
    # ramped_multiplier's proved contract (between its start value and its target, the target
    # if not above the start), its monotonicity in time and, where the new state keeps the old
    # schedule (same start value and start time, a higher target), its monotonicity in the
    # target (rules_z3: ramp_monotone_in_time, ramp_monotone_in_target).
    base_later, base_new, base_new_later = z3.Reals("n_base_later n_base_new n_base_new_later")
    later = z3.Int("n_later")

    def ramp_contract(level, start_value, to):
        return z3.And(
            py_min(ops, start_value, to) <= level,
            level <= py_max(ops, start_value, to),
            z3.Or(to > start_value, level == to),
        )

    kept_schedule = z3.And(
        new.base_from == state.base_from, new.base_start_ms == state.base_start_ms
    )
    domain = z3.And(
        well_formed(ops, state),
        target > 0,
        target != state.target,
        ts >= state.changed_ms,
        later >= ts,
        max_classes >= 3,
        ramp_contract(base, state.base_from, state.target),
        ramp_contract(base_later, state.base_from, state.target),
        base <= base_later,
        ramp_contract(base_new, new.base_from, target),
        ramp_contract(base_new_later, new.base_from, target),
        base_new <= base_new_later,
        z3.Implies(later == ts, z3.And(base_later == base, base_new_later == base_new)),
        z3.Implies(
            z3.And(kept_schedule, target >= state.target),
            z3.And(base <= base_new, base_later <= base_new_later),
        ),
    )
    m_old = encode_multiplier(ops, state, base, since)
    m_new = encode_multiplier(ops, new, base_new, since)
    m_old_later = encode_multiplier(ops, state, base_later, since)
    m_new_later = encode_multiplier(ops, new, base_new_later, since)
    limit = z3.If(max_classes - 2 > 1, max_classes - 2, 1)
    return {
        # post: _well_formed(__return__)
        f"retarget_keeps_the_state_well_formed_{n_floors}": (domain, well_formed(ops, new)),
        # post: multiplier(__return__, ts_ms, ts_ms, ramp_ms) == target (new risk: the target)
        f"retarget_new_positions_pay_the_target_{n_floors}": (
            domain,
            z3.And(new.target == target, z3.Implies(since >= ts, m_new == target)),
        ),
        # post: min(target, old) <= new <= max(target, old), for every risk_since_ms
        f"retarget_between_old_and_new_{n_floors}": (
            domain,
            z3.And(
                py_min(ops, target, m_old) <= m_new,
                m_new <= py_max(ops, target, m_old),
            ),
        ),
        # a tightening never lowers what a position pays
        f"retarget_tightening_never_lowers_{n_floors}": (
            domain,
            z3.Implies(target > state.target, m_new >= m_old),
        ),
        # ... nor at any later time than with no change (so expiry never relaxes: at_time is
        # retarget to max(fallback, target) at the expiry, read at a later ts_ms)
        f"retarget_tightening_never_lowers_later_{n_floors}": (
            domain,
            z3.Implies(target > state.target, m_new_later >= m_old_later),
        ),
        # every class of the new state is monotone in time (each class pays min(target,
        # max(base, floor)) and the base is monotone in time: ramp_monotone_in_time)
        f"retarget_classes_monotone_in_time_{n_floors}": (domain, m_new <= m_new_later),
        # at most max_classes classes: the base, max(1, max_classes - 2) floors, the target
        f"retarget_within_max_classes_{n_floors}": (domain, new.count <= limit),
    }


def claims(budget: str = "ci") -> dict[str, Claims]:
    """``retarget``'s claims for every floor count up to :data:`MAX_FLOORS` of ``budget``."""
    out: Claims = {}
    for n in range(MAX_FLOORS[budget] + 1):
        out.update(retarget_claims(n))
    return {"liquidation.rules.ramp.retarget": out}


# -- concrete evaluation (the drift tests) -------------------------------------------------------
def _base_level(state, ts_ms: int, ramp_ms: int) -> z3.ExprRef:
    """The base's level at ``ts_ms`` in binary64, by the proved ``ramped_multiplier`` encoding."""
    return rules_z3.encode_ramped_multiplier(
        rules_z3.fval(state.base_from),
        rules_z3.fval(state.target),
        rules_z3.ival(state.base_start_ms),
        rules_z3.ival(ramp_ms),
        rules_z3.ival(ts_ms),
    )


def eval_retarget(state, target: float, ts_ms: int, ramp_ms: int, max_classes: int):
    """The encoding at concrete inputs in binary64 (the base level by the proved
    ``ramped_multiplier`` encoding), as a :class:`~liquidation.rules.ramp.RampState`."""
    from liquidation.rules.ramp import RampState

    if target == state.target:
        return state
    base = _base_level(state, ts_ms, ramp_ms)
    new = encode_retarget(
        FloatOps,
        RampTerms.of(state),
        rules_z3.fval(target),
        z3.IntVal(ts_ms),
        z3.IntVal(max_classes),
        z3.simplify(base),
    )
    count = z3.simplify(new.count).as_long()
    floors = tuple((z3.simplify(s).as_long(), rules_z3.as_float(lv)) for s, lv in new.slots[:count])
    return RampState(
        target=rules_z3.as_float(new.target),
        base_from=rules_z3.as_float(new.base_from),
        base_start_ms=z3.simplify(new.base_start_ms).as_long(),
        changed_ms=z3.simplify(new.changed_ms).as_long(),
        floors=floors,
    )


def eval_multiplier(state, risk_since_ms: int, ts_ms: int, ramp_ms: int) -> float:
    base = _base_level(state, ts_ms, ramp_ms)
    m = encode_multiplier(
        FloatOps, RampTerms.of(state), z3.simplify(base), z3.IntVal(risk_since_ms)
    )
    return rules_z3.as_float(m)
