"""Rules that CrossHair cannot settle, in z3: integer money as bit-vectors, rates as binary64.

CrossHair models a ``float`` as a mathematical real, and a product of a symbolic int and a
symbolic real is non-linear, so on the rules that mix integer money with float rates it hits
its budget (``make verify`` reported them as "budget cap"). Here each of those rules is
written once in z3 (``encode_*``), over the arithmetic Python itself performs:

* an ``int`` is a 64-bit two's-complement bit-vector; the domains keep every intermediate
  value far from overflow (money and prices at most :data:`liquidation.money.MAX_AMOUNT` /
  :data:`~liquidation.money.MAX_PRICE`, times at most ``MAX_TS_MS``), so the bit-vector
  arithmetic is Python's unbounded arithmetic on them;
* a ``float`` is a z3 ``Float64`` with round-to-nearest-even; ``int * float`` converts the int
  with the same rounding (``fpSignedToFP``), ``int(x)`` truncates (``fpToSBV`` toward zero),
  ``math.ceil(x)`` rounds toward +inf; ``int / int`` is one correctly rounded division of the
  two exact values (Python's true division of ints, equal to it while both are below 2**53,
  which the time bounds ensure); ``min`` / ``max`` of two floats keep the first argument
  unless the second is strictly smaller / larger (CPython's built-ins).

Each encoding is compared with the Python function on many random inputs, bit for bit
(``tests/verification/test_rules_z3.py``), so it cannot drift from the code; and each claim
is a ``post:`` line of the function's PEP 316 contract (or, for monotonicity in time, a
relation between two runs), proved unsatisfiable in negation over the whole domain.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import z3

from liquidation.money import MAX_AMOUNT, MAX_PRICE, MAX_TS_MS

F64 = z3.Float64()
RNE = z3.RNE()
BITS = 64
#: Largest slippage rate the proofs of ``close_price`` cover (``slippage_rate`` returns at most
#: ``max_slippage_bps / 1e4 < 1``; ``AssetConfig`` requires ``max_slippage_bps < 10_000``).
MAX_SLIP_RATE = 1.0


def int_var(name: str) -> z3.BitVecRef:
    return z3.BitVec(name, BITS)


def float_var(name: str) -> z3.FPRef:
    return z3.FP(name, F64)


def to_float(i: z3.BitVecRef) -> z3.FPRef:
    """``float(i)``: round to nearest even (exact below 2**53)."""
    return z3.fpSignedToFP(RNE, i, F64)


def trunc(x: z3.FPRef) -> z3.BitVecRef:
    """``int(x)`` of a finite float below 2**63 in magnitude."""
    return z3.fpToSBV(z3.RTZ(), x, z3.BitVecSort(BITS))


def ceil(x: z3.FPRef) -> z3.BitVecRef:
    """``math.ceil(x)`` of a finite float below 2**63 in magnitude."""
    return z3.fpToSBV(z3.RTP(), x, z3.BitVecSort(BITS))


def fmul(a: z3.FPRef, b: z3.FPRef) -> z3.FPRef:
    return z3.fpMul(RNE, a, b)


def py_min(a, b):
    """CPython's ``min(a, b)`` of two floats: ``b`` only if ``b < a``."""
    return z3.If(z3.fpLT(b, a), b, a)


def py_max(a, b):
    """CPython's ``max(a, b)`` of two floats: ``b`` only if ``b > a``."""
    return z3.If(z3.fpGT(b, a), b, a)


def imin(a, b):
    return z3.If(b < a, b, a)


def imax(a, b):
    return z3.If(b > a, b, a)


def fval(x: float) -> z3.FPRef:
    return z3.FPVal(x, F64)


def ival(i: int) -> z3.BitVecRef:
    return z3.BitVecVal(i, BITS)


def in_range(i: z3.BitVecRef, low: int, high: int) -> z3.BoolRef:
    return z3.And(i >= low, i <= high)


def finite_positive(x: z3.FPRef) -> z3.BoolRef:
    """``0 < x < inf`` (subnormals included)."""
    return z3.And(z3.fpGT(x, fval(0.0)), z3.Not(z3.fpIsInf(x)))


def as_float(value: z3.ExprRef) -> float:
    """The Python float of a concrete ``Float64`` term, bit for bit."""
    bits = z3.simplify(z3.fpToIEEEBV(z3.simplify(value))).as_long()
    return struct.unpack("<d", bits.to_bytes(8, "little"))[0]


def as_int(value: z3.ExprRef) -> int:
    """The Python int of a concrete bit-vector term (signed)."""
    return z3.simplify(value).as_signed_long()


# -- rules.ramp.ramped_multiplier ----------------------------------------------------------------
def ramp_progress(start_ms, ramp_ms, ts_ms) -> z3.FPRef:
    """``(ts_ms - start_ms) / ramp_ms``: one correctly rounded division of two exact floats."""
    return z3.fpDiv(RNE, to_float(ts_ms - start_ms), to_float(ramp_ms))


class Binary64Ops:
    """The float operations ``ramped_multiplier`` uses, in binary64 (the default)."""

    def progress(self, start_ms, ramp_ms, ts_ms):
        return ramp_progress(start_ms, ramp_ms, ts_ms)

    def const(self, x: float):
        return fval(x)

    def add(self, a, b):
        return z3.fpAdd(RNE, a, b)

    def sub(self, a, b):
        return z3.fpSub(RNE, a, b)

    def mul(self, a, b):
        return fmul(a, b)

    def lt(self, a, b):
        return z3.fpLT(a, b)

    def le(self, a, b):
        return z3.fpLEQ(a, b)


class MonotoneRounding:
    """Reals where every operation is ``fl(exact result)`` for one unknown rounding ``fl``
    about which only two facts are assumed: it is monotone (``x <= y`` implies ``fl(x) <=
    fl(y)``) and it leaves a float unchanged (``fl(v) == v`` for each input and constant).
    Correct rounding to nearest (IEEE 754, Python's float operations and the correctly rounded
    ``int / int``) has both properties, so every binary64 run is a run here: a claim proved
    here holds in binary64. It proves relations between two runs, which bit-blasting does not
    finish (see :func:`ramp_monotone_claim`). Times are exact integers."""

    def __init__(self) -> None:
        self.fl = z3.Function("fl", z3.RealSort(), z3.RealSort())
        self.floats: list[z3.ArithRef] = []

    def rounded(self, exact):
        return self.fl(exact)

    def progress(self, start_ms, ramp_ms, ts_ms):
        return self.fl(z3.ToReal(ts_ms - start_ms) / z3.ToReal(ramp_ms))

    def const(self, x: float):
        value = z3.RealVal(x)
        self.floats.append(value)
        return value

    def add(self, a, b):
        return self.fl(a + b)

    def sub(self, a, b):
        return self.fl(a - b)

    def mul(self, a, b):
        return self.fl(a * b)

    def lt(self, a, b):
        return a < b

    def le(self, a, b):
        return a <= b

    def axioms(self, terms: list[z3.ExprRef], floats: list[z3.ArithRef]) -> z3.BoolRef:
        """Monotonicity on every pair of rounded ``terms``, and ``fl`` fixing ``floats``."""
        fixed = [self.fl(v) for v in [*floats, *self.floats]]
        terms = [*terms, *fixed]
        pairs = [
            z3.Implies(x.arg(0) <= y.arg(0), x <= y)
            for i, x in enumerate(terms)
            for j, y in enumerate(terms)
            if i != j
        ]
        return z3.And(*pairs, *(f == f.arg(0) for f in fixed))


def encode_ramped_multiplier(
    start_value, target, start_ms, ramp_ms, ts_ms, progress_raw=None, ops=None
) -> z3.ExprRef:
    """:func:`liquidation.rules.ramp.ramped_multiplier`, line for line.

    ``progress_raw`` stands for the division (:func:`ramp_progress`, the default): the proofs
    pass a free float constrained by the division lemma instead (see :func:`ramp_claims`).
    ``ops`` is the arithmetic (binary64 by default, or :class:`MonotoneRounding`).
    """
    ops = ops or Binary64Ops()

    def py_min_(a, b):
        return z3.If(ops.lt(b, a), b, a)

    def py_max_(a, b):
        return z3.If(ops.lt(a, b), b, a)

    if progress_raw is None:
        progress_raw = ops.progress(start_ms, ramp_ms, ts_ms)
    one = ops.const(1.0)
    progress = py_min_(one, py_max_(ops.const(0.0), progress_raw))
    ramped = py_min_(target, ops.add(start_value, ops.mul(ops.sub(target, start_value), progress)))
    return z3.If(
        z3.Or(ops.le(target, start_value), ramp_ms == 0),
        target,
        z3.If(ops.le(one, progress), target, ramped),
    )


def ramp_monotone_claim() -> tuple[z3.BoolRef, z3.BoolRef]:
    """Monotone in time: at a later time the ramp never pays less (two runs, same state).

    Proved in :class:`MonotoneRounding`: multipliers any positive reals that ``fl`` leaves
    unchanged, times any integers with ``ramp >= 0``."""
    ops = MonotoneRounding()
    sv, t = z3.Reals("m_start_value m_target")
    start, ramp, ts, later = z3.Ints("m_start m_ramp m_ts m_later")
    r = encode_ramped_multiplier(sv, t, start, ramp, ts, ops=ops)
    r_later = encode_ramped_multiplier(sv, t, start, ramp, later, ops=ops)
    rounded = _applications(z3.And(r == r_later), ops.fl)
    domain = z3.And(sv > 0, t > 0, ramp >= 0, later >= ts, ops.axioms(rounded, [sv, t]))
    return domain, r <= r_later


def ramp_claims_fl() -> dict[str, tuple[z3.BoolRef, z3.BoolRef]]:
    """``ramped_multiplier``'s contract in :class:`MonotoneRounding` (``*_fl``): sound for
    binary64 (every binary64 run is a run there), proved in milliseconds, so CI runs these and
    ``make verify`` also the bit-blasted binary64 proofs (:func:`ramp_claims`, tens of seconds
    each). The division needs no lemma here: ``(ts - start) / ramp >= 1`` rounds to ``>= 1``
    by monotonicity. Multipliers any positive reals fixed by ``fl``, times any integers."""
    ops = MonotoneRounding()
    sv, t = z3.Reals("f_start_value f_target")
    start, ramp, ts = z3.Ints("f_start f_ramp f_ts")
    r = encode_ramped_multiplier(sv, t, start, ramp, ts, ops=ops)
    rounded = _applications(r == t, ops.fl)
    domain = z3.And(sv > 0, t > 0, ramp >= 0, ops.axioms(rounded, [sv, t]))
    low, high = z3.If(t < sv, t, sv), z3.If(t > sv, t, sv)
    return {
        "ramp_between_old_and_new_fl": (domain, z3.And(low <= r, r <= high)),
        "ramp_relaxation_at_once_fl": (domain, z3.Or(t > sv, r == t)),
        "ramp_reaches_target_fl": (domain, z3.Or(ts < start + ramp, r == t)),
    }


def ramp_monotone_in_target_claim() -> tuple[z3.BoolRef, z3.BoolRef]:
    """Monotone in the target: from the same start, a higher target never pays less at any
    time (two runs; what ``retarget`` relies on when a tightening keeps the base's schedule).

    Proved in :class:`MonotoneRounding`, as :func:`ramp_monotone_claim`."""
    ops = MonotoneRounding()
    sv, t, higher = z3.Reals("mt_start_value mt_target mt_higher")
    start, ramp, ts = z3.Ints("mt_start mt_ramp mt_ts")
    r = encode_ramped_multiplier(sv, t, start, ramp, ts, ops=ops)
    r_higher = encode_ramped_multiplier(sv, higher, start, ramp, ts, ops=ops)
    rounded = _applications(z3.And(r == r_higher), ops.fl)
    domain = z3.And(sv > 0, t > 0, higher >= t, ramp >= 0, ops.axioms(rounded, [sv, t, higher]))
    return domain, r <= r_higher


def _applications(expr: z3.ExprRef, fn: z3.FuncDeclRef) -> list[z3.ExprRef]:
    """Every distinct application of ``fn`` in ``expr``."""
    found: dict[int, z3.ExprRef] = {}
    stack = [expr]
    while stack:
        e = stack.pop()
        if z3.is_app(e) and e.decl().eq(fn):
            found.setdefault(e.get_id(), e)
        stack.extend(e.children())
    return list(found.values())


def _times(*names: str) -> tuple[list[z3.BitVecRef], z3.BoolRef]:
    """Times in ``[0, MAX_TS_MS]`` (so every difference and the ramp are exact as floats)."""
    times = [int_var(n) for n in names]
    return times, z3.And(*(in_range(t, 0, MAX_TS_MS) for t in times))


def ramp_lemmas() -> dict[str, tuple[z3.BoolRef, z3.BoolRef]]:
    """A fact about the division alone, proved on its own: bit-blasting the division inside
    the whole function does not finish in minutes, on its own it takes seconds."""
    (start, ramp, ts), times = _times("l_start", "l_ramp", "l_ts")
    q = ramp_progress(start, ramp, ts)
    return {
        # ts - start >= ramp >= 1  =>  the rounded quotient is >= 1 (rounding is monotone)
        "ramp_division_reaches_one": (
            z3.And(times, ramp >= 1),
            z3.Implies(ts - start >= ramp, z3.fpGEQ(q, fval(1.0))),
        ),
    }


def ramp_claims() -> dict[str, tuple[z3.BoolRef, z3.BoolRef]]:
    """``name -> (domain, claim)`` for ``ramped_multiplier``'s contract: multipliers any finite
    positive float, times and ramp in ``[0, MAX_TS_MS]``.

    The division is a free float ``q`` about which only the proved :func:`ramp_lemmas` is
    assumed, so each claim holds for the real division too. (Monotonicity in time, a claim
    about two runs, is :func:`ramp_monotone_claim`: bit-blasting two copies did not finish in
    5 min of CPU.)"""
    sv, t = float_var("start_value"), float_var("target")
    (start, ramp, ts), times = _times("start_ms", "ramp_ms", "ts_ms")
    q = float_var("q")
    domain = z3.And(finite_positive(sv), finite_positive(t), times)
    r = encode_ramped_multiplier(sv, t, start, ramp, ts, q)
    reaches_one = z3.Implies(z3.And(ramp >= 1, ts - start >= ramp), z3.fpGEQ(q, fval(1.0)))
    return {
        # post: min(start_value, target) <= __return__ <= max(start_value, target)
        "ramp_between_old_and_new": (
            domain,
            z3.And(z3.fpLEQ(py_min(sv, t), r), z3.fpLEQ(r, py_max(sv, t))),
        ),
        # post: target > start_value or __return__ == target  (a relaxation applies at once)
        "ramp_relaxation_at_once": (domain, z3.Or(z3.fpGT(t, sv), z3.fpEQ(r, t))),
        # post: ts_ms < start_ms + ramp_ms or __return__ == target
        "ramp_reaches_target": (
            z3.And(domain, reaches_one),
            z3.Or(ts < start + ramp, z3.fpEQ(r, t)),
        ),
    }


# -- rules.penalty.split_penalty -------------------------------------------------------------------
def encode_split_penalty(penalty, fund_share) -> tuple[z3.BitVecRef, z3.BitVecRef]:
    """:func:`liquidation.rules.penalty.split_penalty`, line for line."""
    fund_amount = imin(penalty, trunc(fmul(to_float(penalty), fund_share)))
    return penalty - fund_amount, fund_amount


def split_claims() -> dict[str, tuple[z3.BoolRef, z3.BoolRef]]:
    penalty, share = int_var("penalty"), float_var("fund_share")
    keeper, fund = encode_split_penalty(penalty, share)
    domain = z3.And(
        in_range(penalty, 0, MAX_AMOUNT),
        z3.fpLEQ(fval(0.0), share),
        z3.fpLEQ(share, fval(1.0)),
    )
    return {
        # post: __return__[0] + __return__[1] == penalty
        "split_sums_to_penalty": (domain, keeper + fund == penalty),
        # post: __return__[0] >= 0 and __return__[1] >= 0
        "split_shares_non_negative": (domain, z3.And(keeper >= 0, fund >= 0)),
    }


# -- rules.closeout.close_price --------------------------------------------------------------------
def encode_close_price(oracle, lots_closed, slip_rate) -> z3.BitVecRef:
    """:func:`liquidation.rules.closeout.close_price` (``charge``: ``ceil(amount * rate)``)."""
    slip = ceil(fmul(to_float(oracle), slip_rate))
    return z3.If(lots_closed > 0, imax(oracle - slip, ival(0)), oracle + slip)


def close_price_claims() -> dict[str, tuple[z3.BoolRef, z3.BoolRef]]:
    oracle, lots, rate = int_var("oracle"), int_var("lots_closed"), float_var("slip_rate")
    price = encode_close_price(oracle, lots, rate)
    domain = z3.And(
        in_range(oracle, 0, MAX_PRICE),
        in_range(lots, -MAX_AMOUNT, MAX_AMOUNT),
        z3.fpLEQ(fval(0.0), rate),
        z3.fpLEQ(rate, fval(MAX_SLIP_RATE)),
    )
    return {
        # post: lots_closed <= 0 or 0 <= __return__ <= oracle
        "close_long_at_or_below_oracle": (
            domain,
            z3.Or(lots <= 0, z3.And(price >= 0, price <= oracle)),
        ),
        # post: lots_closed > 0 or __return__ >= oracle
        "close_short_at_or_above_oracle": (domain, z3.Or(lots > 0, price >= oracle)),
    }


# -- rules.governance.review ----------------------------------------------------------------------
GOVERNANCE_FIELDS = (
    "fund_share_min",
    "fund_share_max",
    "share_step",
    "fee_addon_max_bps",
    "fee_addon_step_bps",
    "target_coverage",
    "comfort_coverage",
)


def encode_review(fund_share, fee_addon_bps, has_loss, coverage, cfg) -> tuple[z3.FPRef, z3.FPRef]:
    """:func:`liquidation.rules.governance.review`'s new ``(fund_share, fee_addon_bps)``.

    ``has_loss`` is ``stressed_loss > 0`` and ``coverage`` stands for ``fund / stressed_loss``:
    the code and the contract compute that one quotient the same way, so a free float for it
    (any non-negative non-NaN value) covers every division."""
    below = z3.And(has_loss, z3.fpLT(coverage, cfg["target_coverage"]))
    above = z3.Or(z3.Not(has_loss), z3.fpGT(coverage, cfg["comfort_coverage"]))
    share = z3.If(
        below,
        py_min(cfg["fund_share_max"], z3.fpAdd(RNE, fund_share, cfg["share_step"])),
        z3.If(
            above,
            py_max(cfg["fund_share_min"], z3.fpSub(RNE, fund_share, cfg["share_step"])),
            fund_share,
        ),
    )
    addon = z3.If(
        below,
        py_min(cfg["fee_addon_max_bps"], z3.fpAdd(RNE, fee_addon_bps, cfg["fee_addon_step_bps"])),
        z3.If(
            above,
            py_max(fval(0.0), z3.fpSub(RNE, fee_addon_bps, cfg["fee_addon_step_bps"])),
            fee_addon_bps,
        ),
    )
    share = py_min(cfg["fund_share_max"], py_max(cfg["fund_share_min"], share))
    addon = py_min(cfg["fee_addon_max_bps"], py_max(fval(0.0), addon))
    return share, addon


def review_claims() -> dict[str, tuple[z3.BoolRef, z3.BoolRef]]:
    """``review``'s contract over its preconditions: bounds any floats with ``0 <= min <= max
    <= 1``, ``share_step > 0``, ``0 <= fee_addon_max_bps < inf``, ``0 < fee_addon_step_bps <
    inf``, ``0 < target < comfort``; current share and add-on any finite float."""
    cfg = {name: float_var(name) for name in GOVERNANCE_FIELDS}
    share0, addon0 = float_var("fund_share"), float_var("fee_addon_bps")
    has_loss, cov = z3.Bool("has_loss"), float_var("coverage")
    share, addon = encode_review(share0, addon0, has_loss, cov, cfg)
    zero, one, inf = fval(0.0), fval(1.0), fval(float("inf"))
    finite = [z3.And(z3.Not(z3.fpIsNaN(x)), z3.Not(z3.fpIsInf(x))) for x in (share0, addon0)]
    domain = z3.And(
        *finite,
        z3.fpLEQ(zero, cfg["fund_share_min"]),
        z3.fpLEQ(cfg["fund_share_min"], cfg["fund_share_max"]),
        z3.fpLEQ(cfg["fund_share_max"], one),
        z3.fpGT(cfg["share_step"], zero),
        z3.fpLEQ(zero, cfg["fee_addon_max_bps"]),
        z3.fpLT(cfg["fee_addon_max_bps"], inf),
        z3.fpGT(cfg["fee_addon_step_bps"], zero),
        z3.fpLT(cfg["fee_addon_step_bps"], inf),
        z3.fpGT(cfg["target_coverage"], zero),
        z3.fpLT(cfg["target_coverage"], cfg["comfort_coverage"]),
        z3.Not(z3.fpIsNaN(cov)),
        z3.fpGEQ(cov, zero),
    )
    below = z3.And(has_loss, z3.fpLT(cov, cfg["target_coverage"]))
    above = z3.Or(z3.Not(has_loss), z3.fpGT(cov, cfg["comfort_coverage"]))
    between = z3.And(
        has_loss,
        z3.fpLEQ(cfg["target_coverage"], cov),
        z3.fpLEQ(cov, cfg["comfort_coverage"]),
    )
    return {
        # post: config.fund_share_min <= __return__.fund_share <= config.fund_share_max
        "review_share_in_bounds": (
            domain,
            z3.And(z3.fpLEQ(cfg["fund_share_min"], share), z3.fpLEQ(share, cfg["fund_share_max"])),
        ),
        # post: 0 <= __return__.fee_addon_bps <= config.fee_addon_max_bps
        "review_addon_in_bounds": (
            domain,
            z3.And(z3.fpLEQ(zero, addon), z3.fpLEQ(addon, cfg["fee_addon_max_bps"])),
        ),
        # post: below the target neither the share nor the add-on falls
        "review_below_target_never_falls": (
            domain,
            z3.Implies(
                below,
                z3.And(
                    z3.fpGEQ(share, py_min(share0, cfg["fund_share_max"])),
                    z3.fpGEQ(addon, py_min(addon0, cfg["fee_addon_max_bps"])),
                ),
            ),
        ),
        # post: above the comfort coverage (or no loss) neither rises
        "review_above_comfort_never_rises": (
            domain,
            z3.Implies(
                above,
                z3.And(
                    z3.fpLEQ(share, py_max(share0, cfg["fund_share_min"])),
                    z3.fpLEQ(addon, py_max(addon0, zero)),
                ),
            ),
        ),
        # post: in between, only back into the bounds
        "review_between_only_clips": (
            domain,
            z3.Implies(
                between,
                z3.And(
                    z3.fpEQ(
                        share,
                        py_min(cfg["fund_share_max"], py_max(cfg["fund_share_min"], share0)),
                    ),
                    z3.fpEQ(addon, py_min(cfg["fee_addon_max_bps"], py_max(zero, addon0))),
                ),
            ),
        ),
    }


# -- rules.oracle_guard.check_observation and advance --------------------------------------------
#: Reasons of a guard verdict as integer codes.
GUARD_REASONS = {"ok": 0, "no_price": 1, "confidence": 2, "deviation": 3}


@dataclass(frozen=True)
class GuardInputs:
    """One print and the guard state, as z3 terms.

    Integers are z3 integers (exact, unbounded: the guard only adds, compares and takes the
    window's length). The three float comparisons of the guard are free booleans, because the
    code and the contract each evaluate them by the same expression on the same values:
    ``band_bad`` is ``obs.confidence / obs.price > config.max_confidence_ratio``,
    ``deviation_ok`` is ``abs(obs.price - reference) / reference <= config.max_deviation`` for
    the reference in use, ``run_consistent`` is ``consistent(next_window(window, obs.price,
    config), config.reanchor_band)``. The window enters only through its length."""

    price: z3.ArithRef
    confidence: z3.ArithRef
    has_reference: z3.BoolRef
    reference: z3.ArithRef
    has_twap: z3.BoolRef
    twap: z3.ArithRef
    window_len: z3.ArithRef
    reanchor_prints: z3.ArithRef
    band_bad: z3.BoolRef
    deviation_ok: z3.BoolRef
    run_consistent: z3.BoolRef

    @classmethod
    def fresh(cls) -> GuardInputs:
        ints = ("price", "confidence", "reference", "twap", "window_len", "reanchor_prints")
        i = {n: z3.Int("g_" + n) for n in ints}
        flags = ("has_reference", "has_twap", "band_bad", "deviation_ok", "run_consistent")
        b = {n: z3.Bool("g_" + n) for n in flags}
        return cls(**i, **b)

    def domain(self) -> z3.BoolRef:
        """The preconditions: ``confidence >= 0``, reference and TWAP positive when present,
        ``reanchor_prints >= 1``; any price (the guard refuses a non-positive one)."""
        return z3.And(
            self.confidence >= 0,
            z3.Implies(self.has_reference, self.reference > 0),
            z3.Implies(self.has_twap, self.twap > 0),
            self.window_len >= 0,
            self.reanchor_prints >= 1,
        )

    def run_len(self) -> z3.ArithRef:
        """``len(next_window(window, price, config))``: the last ``reanchor_prints``."""
        n = self.window_len + 1
        return z3.If(n < self.reanchor_prints, n, self.reanchor_prints)

    def completes_run(self) -> z3.BoolRef:
        """``_completes_run(obs, window, config)``."""
        return z3.And(self.run_len() == self.reanchor_prints, self.run_consistent)

    def passes_confidence(self) -> z3.BoolRef:
        return z3.And(self.price > 0, z3.Not(self.band_bad))


@dataclass(frozen=True)
class GuardVerdictTerms:
    accepted: z3.BoolRef
    reason: z3.ArithRef
    reanchored: z3.BoolRef


def encode_check_observation(v: GuardInputs, reanchors: bool = True) -> GuardVerdictTerms:
    """:func:`liquidation.rules.oracle_guard.check_observation`, branch for branch
    (``reanchors=False`` is the guard deadlock's defect, for the prover's liveness test)."""

    def verdict(accepted: bool, reason: str, reanchored: bool = False) -> tuple:
        return z3.BoolVal(accepted), z3.IntVal(GUARD_REASONS[reason]), z3.BoolVal(reanchored)

    def pick(cond, a: tuple, b: tuple) -> tuple:
        return tuple(z3.If(cond, x, y) for x, y in zip(a, b, strict=True))

    no_reference = z3.And(z3.Not(v.has_reference), z3.Not(v.has_twap))
    out = pick(
        v.price <= 0,
        verdict(False, "no_price"),
        pick(
            v.band_bad,
            verdict(False, "confidence"),
            pick(
                z3.Or(no_reference, v.deviation_ok),
                verdict(True, "ok"),
                pick(
                    z3.And(z3.Not(v.has_reference), v.completes_run(), z3.BoolVal(reanchors)),
                    verdict(True, "ok", True),
                    verdict(False, "deviation"),
                ),
            ),
        ),
    )
    return GuardVerdictTerms(*out)


def guard_claims(reanchors: bool = True) -> dict[str, tuple[z3.BoolRef, z3.BoolRef]]:
    """``check_observation``'s contract and ``advance``'s, over any ints and any outcome of the
    float comparisons. ``advance`` is the verdict plus: the window takes the print iff the
    reason is neither ``confidence`` nor ``no_price``; the TWAP becomes the price on a
    re-anchoring, :func:`~liquidation.rules.oracle_guard.update_twap` on an acceptance (whose
    own contract, which CrossHair verifies over all paths, puts it between the old TWAP and
    the price, or at the price without one), and stays otherwise."""
    v = GuardInputs.fresh()
    out = encode_check_observation(v, reanchors)
    acc, reanch = out.accepted, out.reanchored
    reference_none = z3.And(z3.Not(v.has_reference), z3.Not(v.has_twap))
    deviation_ok = z3.Or(reference_none, v.deviation_ok)  # _deviation_ok(obs, twap, config)
    # advance: the window and the TWAP after the print
    window_joins = z3.Not(z3.Or(out.reason == GUARD_REASONS["confidence"],
                                out.reason == GUARD_REASONS["no_price"]))  # fmt: skip
    updated = z3.Int("g_updated_twap")  # update_twap(twap, twap_ms, price, ...)
    update_contract = z3.If(
        v.has_twap,
        z3.And(
            updated >= z3.If(v.twap < v.price, v.twap, v.price),
            updated <= z3.If(v.twap > v.price, v.twap, v.price),
        ),
        updated == v.price,
    )
    twap_has = z3.Or(reanch, acc, v.has_twap)  # the new TWAP is not None
    twap_new = z3.If(reanch, v.price, z3.If(acc, updated, v.twap))
    return {
        # check_observation, post: not accepted or obs.price > 0
        "guard_accepts_positive_prices": (v.domain(), z3.Or(z3.Not(acc), v.price > 0)),
        # post: not accepted or the confidence band passes
        "guard_accepts_within_confidence": (v.domain(), z3.Or(z3.Not(acc), z3.Not(v.band_bad))),
        # post: not accepted or reanchored or within max_deviation of the reference
        "guard_accepts_within_deviation": (
            v.domain(),
            z3.Or(z3.Not(acc), reanch, deviation_ok),
        ),
        # post: not reanchored or (no reference and the print completes a consistent run)
        "guard_reanchors_only_on_a_run": (
            v.domain(),
            z3.Or(z3.Not(reanch), z3.And(z3.Not(v.has_reference), v.completes_run())),
        ),
        # post: a confidence-passing print without reference that completes a run is accepted
        "guard_accepts_a_completed_run": (
            v.domain(),
            z3.Or(acc, v.has_reference, z3.Not(v.passes_confidence()), z3.Not(v.completes_run())),
        ),
        # advance, post: the window takes the print iff it passes the confidence check
        "advance_window_takes_confidence_passing_prints": (
            v.domain(),
            window_joins == v.passes_confidence(),
        ),
        # advance, post: a re-anchoring resets the TWAP to the price; a rejection keeps it
        "advance_twap_reset_or_kept": (
            v.domain(),
            z3.If(reanch, twap_new == v.price, z3.Or(acc, twap_new == v.twap)),
        ),
        # advance, post: the TWAP stays None or positive
        "advance_twap_positive": (
            z3.And(v.domain(), update_contract),
            z3.Or(z3.Not(twap_has), twap_new > 0),
        ),
        # advance, post (liveness step): no reference, confidence passes, run completes => accepted
        "advance_liveness_step": (
            v.domain(),
            z3.Or(
                z3.Not(z3.And(z3.Not(v.has_reference), v.passes_confidence(), v.completes_run())),
                acc,
            ),
        ),
    }


CLAIMS: dict[str, Callable[..., dict[str, tuple[z3.BoolRef, z3.BoolRef]]]] = {
    # CI proves the ramp's contract in the monotone-rounding model (ms); the long run also
    # bit-blasts it in binary64 (tens of seconds each, the most of this file's CPU in CI)
    "liquidation.rules.ramp.ramped_multiplier": lambda budget="ci": {
        **ramp_claims_fl(),
        "ramp_monotone_in_time": ramp_monotone_claim(),
        "ramp_monotone_in_target": ramp_monotone_in_target_claim(),
        **({**ramp_lemmas(), **ramp_claims()} if budget == "long" else {}),
    },
    "liquidation.rules.penalty.split_penalty": lambda budget="ci": split_claims(),
    "liquidation.rules.closeout.close_price": lambda budget="ci": close_price_claims(),
    "liquidation.rules.governance.review": lambda budget="ci": review_claims(),
    "liquidation.rules.oracle_guard.check_observation": lambda budget="ci": {
        k: c for k, c in guard_claims().items() if k.startswith("guard_")
    },
    "liquidation.rules.oracle_guard.advance": lambda budget="ci": {
        k: c for k, c in guard_claims().items() if k.startswith("advance_")
    },
}
"""Dotted name of each rule proved here, and its claims."""


def all_claims(budget: str = "ci") -> dict[str, tuple[z3.BoolRef, z3.BoolRef]]:
    """Every claim of ``budget`` (``"ci"``, or ``"long"``: ``make verify``)."""
    return {name: claim for make in CLAIMS.values() for name, claim in make(budget).items()}


def prove(
    name: str, timeout_ms: int = 120_000, budget: str = "long"
) -> tuple[str, z3.ModelRef | None]:
    """``("proved", None)`` if the claim holds over its domain, ``("counterexample", model)``
    or ``("unknown", None)`` when the solver ran out of ``timeout_ms``."""
    domain, claim = all_claims(budget)[name]
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(domain, z3.Not(claim))
    result = solver.check()
    if result == z3.unsat:
        return "proved", None
    if result == z3.sat:
        return "counterexample", solver.model()
    return "unknown", None


# -- concrete evaluation (the drift tests) -------------------------------------------------------
def eval_ramped_multiplier(start_value: float, target: float, start_ms: int, ramp_ms: int,
                           ts_ms: int) -> float:  # fmt: skip
    return as_float(
        encode_ramped_multiplier(
            fval(start_value), fval(target), ival(start_ms), ival(ramp_ms), ival(ts_ms)
        )
    )


def eval_split_penalty(penalty: int, fund_share: float) -> tuple[int, int]:
    keeper, fund = encode_split_penalty(ival(penalty), fval(fund_share))
    return as_int(keeper), as_int(fund)


def eval_close_price(oracle: int, lots_closed: int, slip_rate: float) -> int:
    return as_int(encode_close_price(ival(oracle), ival(lots_closed), fval(slip_rate)))


def eval_review(
    fund_share: float, fee_addon_bps: float, fund: int, stressed_loss: int, cfg: dict[str, float]
) -> tuple[float, float]:
    coverage = fund / stressed_loss if stressed_loss > 0 else 0.0
    share, addon = encode_review(
        fval(fund_share),
        fval(fee_addon_bps),
        z3.BoolVal(stressed_loss > 0),
        fval(coverage),
        {name: fval(cfg[name]) for name in GOVERNANCE_FIELDS},
    )
    return as_float(share), as_float(addon)


def eval_check_observation(obs, twap, window, config) -> tuple[bool, str, bool]:
    """The encoding at a concrete print and state; the three float comparisons are made as
    the code makes them (see :class:`GuardInputs`)."""
    from liquidation.rules.oracle_guard import consistent, next_window

    reference = obs.reference if obs.reference is not None else twap
    price_ok = obs.price > 0
    values = GuardInputs(
        price=z3.IntVal(obs.price),
        confidence=z3.IntVal(obs.confidence),
        has_reference=z3.BoolVal(obs.reference is not None),
        reference=z3.IntVal(obs.reference or 0),
        has_twap=z3.BoolVal(twap is not None),
        twap=z3.IntVal(twap or 0),
        window_len=z3.IntVal(len(window)),
        reanchor_prints=z3.IntVal(config.reanchor_prints),
        band_bad=z3.BoolVal(price_ok and obs.confidence / obs.price > config.max_confidence_ratio),
        deviation_ok=z3.BoolVal(
            reference is not None and abs(obs.price - reference) / reference <= config.max_deviation
        ),
        run_consistent=z3.BoolVal(
            consistent(next_window(window, obs.price, config), config.reanchor_band)
        ),
    )
    out = encode_check_observation(values)
    reasons = {code: name for name, code in GUARD_REASONS.items()}
    return (
        z3.is_true(z3.simplify(out.accepted)),
        reasons[z3.simplify(out.reason).as_long()],
        z3.is_true(z3.simplify(out.reanchored)),
    )
