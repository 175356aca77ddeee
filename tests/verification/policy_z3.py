"""``MultiplierPolicy.step`` in z3, for proofs over all inputs within stated bounds.

CrossHair models a Python ``float`` as a mathematical real, so it cannot settle claims that
depend on rounding (``previous + max_step_up`` is rounded). This module writes the decision
of :meth:`serving.policy.MultiplierPolicy.step` once (:func:`encode_step`) over two
arithmetics:

* :class:`Binary64`: z3 ``Float64`` with round-to-nearest-even, Python's own arithmetic, so a
  proof is a proof about the binary64 program and a concrete evaluation reproduces ``step``
  bit for bit. ``min(a, b)`` keeps ``a`` unless ``b < a`` and ``max(a, b)`` keeps ``a`` unless
  ``b > a`` (CPython's two-argument built-ins, NaN and signed zero included).
* :class:`RoundedReal`: each ``+``, ``-``, ``*`` is a fresh real within the binary64 error
  bound of the exact result (``|r - x| <= u |x| + eta``, ``u = 2**-53``, ``eta = 2**-1075``;
  no overflow within the bounds). Every binary64 execution is one of its executions, so a
  proof here holds for binary64 too; the solver proves the step limits in seconds this way,
  where bit-blasting the same claims in ``Float64`` does not finish in minutes.

What is *not* encoded, and why the proofs stay sound: the reason an input is unusable
(``check_input``), whether an override is still active and whether the last change lies within
``min_relax_delay`` are free booleans, so every combination is covered. ``(sigma / sigma_ref)
** exponent`` is a free non-NaN, non-negative ``ratio`` (``+inf`` when the division
overflows). The hysteresis test ``_in_hysteresis_band(target, previous, cfg)`` is one free
boolean shared by the code and the postcondition, both of which call that one function with
the same arguments. The encoding is tested against the Python function on many random inputs
(``tests/verification/test_policy_z3.py``), so the two cannot drift apart.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field, fields
from fractions import Fraction
from typing import Protocol

import z3

from serving.policy import _MIN_MOVE

#: Reasons as integer codes (``fallback`` stands for every ``fallback_*`` reason).
REASON_CODES = {
    "halted": 0,
    "override": 1,
    "fallback": 2,
    "hysteresis_hold": 3,
    "rate_limited_up": 4,
    "tightened": 5,
    "relax_delay_hold": 6,
    "rate_limited_down": 7,
    "relaxed": 8,
}
REASON_NAMES = {code: reason for reason, code in REASON_CODES.items()}

#: Bounds of the proofs (the README lists them): floor, cap, both step limits and the fallback
#: multiplier in ``[MIN_PARAM, MAX_PARAM]``; the stored multiplier and an override any finite
#: binary64 (they are clipped); hysteresis in ``[0, 1)`` as ``PolicyConfig`` requires.
MIN_PARAM = 1e-3
MAX_PARAM = 1e3

F64 = z3.Float64()
RNE = z3.RNE()
UNIT_ROUNDOFF = z3.RealVal(2) ** -53
SUBNORMAL_ERROR = z3.RealVal(2) ** -1075


class Arithmetic(Protocol):
    """The operations the encoding of ``step`` uses."""

    def var(self, name: str) -> z3.ExprRef: ...
    def const(self, value: float) -> z3.ExprRef: ...
    def add(self, a: z3.ExprRef, b: z3.ExprRef) -> z3.ExprRef: ...
    def sub(self, a: z3.ExprRef, b: z3.ExprRef) -> z3.ExprRef: ...
    def mul(self, a: z3.ExprRef, b: z3.ExprRef) -> z3.ExprRef: ...
    def abs(self, a: z3.ExprRef) -> z3.ExprRef: ...
    def lt(self, a: z3.ExprRef, b: z3.ExprRef) -> z3.BoolRef: ...
    def le(self, a: z3.ExprRef, b: z3.ExprRef) -> z3.BoolRef: ...
    def eq(self, a: z3.ExprRef, b: z3.ExprRef) -> z3.BoolRef: ...
    def finite(self, a: z3.ExprRef) -> z3.BoolRef: ...
    def not_nan(self, a: z3.ExprRef) -> z3.BoolRef: ...
    def side_conditions(self) -> list[z3.BoolRef]: ...


class Binary64:
    """IEEE-754 binary64 with round-to-nearest-even: Python's float arithmetic, exactly."""

    def var(self, name: str) -> z3.ExprRef:
        return z3.FP(name, F64)

    def const(self, value: float) -> z3.ExprRef:
        return z3.FPVal(value, F64)

    def add(self, a, b):
        return z3.fpAdd(RNE, a, b)

    def sub(self, a, b):
        return z3.fpSub(RNE, a, b)

    def mul(self, a, b):
        return z3.fpMul(RNE, a, b)

    def abs(self, a):
        return z3.fpAbs(a)

    def lt(self, a, b):
        return z3.fpLT(a, b)

    def le(self, a, b):
        return z3.fpLEQ(a, b)

    def eq(self, a, b):
        return z3.fpEQ(a, b)

    def finite(self, a):
        return z3.And(z3.Not(z3.fpIsNaN(a)), z3.Not(z3.fpIsInf(a)))

    def not_nan(self, a):
        return z3.Not(z3.fpIsNaN(a))

    def side_conditions(self) -> list[z3.BoolRef]:
        return []


@dataclass
class RoundedReal:
    """Reals with one bounded rounding error per operation (a sound over-approximation).

    ``ratio`` may be ``+inf`` in Python; here it is a real, and the only place it enters,
    ``min(max(ratio, floor), cap)``, maps every value at or above ``cap`` to ``cap``, so a
    large finite real covers it.
    """

    conditions: list[z3.BoolRef] = field(default_factory=list)
    count: int = 0

    def var(self, name: str) -> z3.ExprRef:
        return z3.Real(name)

    def const(self, value: float) -> z3.ExprRef:
        if math.isinf(value) and value > 0:
            return z3.RealVal(10**400)  # stands for +inf: above any cap (see the class doc)
        exact = Fraction(value)  # the exact value of the binary64 number, not its decimal
        return z3.Q(exact.numerator, exact.denominator)

    def _rounded(self, exact: z3.ExprRef) -> z3.ExprRef:
        self.count += 1
        r = z3.Real(f"rounded_{self.count}")
        magnitude = z3.If(exact >= 0, exact, -exact)
        error = z3.If(r >= exact, r - exact, exact - r)
        self.conditions.append(error <= UNIT_ROUNDOFF * magnitude + SUBNORMAL_ERROR)
        return r

    def add(self, a, b):
        return self._rounded(a + b)

    def sub(self, a, b):
        return self._rounded(a - b)

    def mul(self, a, b):
        return self._rounded(a * b)

    def abs(self, a):
        return z3.If(a >= 0, a, -a)  # exact in binary64

    def lt(self, a, b):
        return a < b

    def le(self, a, b):
        return a <= b

    def eq(self, a, b):
        return a == b

    def finite(self, a):
        return z3.BoolVal(True)

    def not_nan(self, a):
        return z3.BoolVal(True)

    def side_conditions(self) -> list[z3.BoolRef]:
        return list(self.conditions)


@dataclass(frozen=True)
class StepInputs:
    """The z3 variables of one ``step``: the config's numbers, the state and the branches."""

    floor: z3.ExprRef
    cap: z3.ExprRef
    max_step_up: z3.ExprRef
    max_step_down: z3.ExprRef
    hysteresis: z3.ExprRef
    fallback_multiplier: z3.ExprRef
    multiplier: z3.ExprRef  # state.multiplier
    override_value: z3.ExprRef  # state.override_multiplier
    ratio: z3.ExprRef  # (sigma / sigma_ref) ** exponent
    halted: z3.BoolRef
    override_active: z3.BoolRef
    input_failed: z3.BoolRef
    in_relax_delay: z3.BoolRef
    in_band: z3.BoolRef  # _in_hysteresis_band(target, previous, cfg)

    @classmethod
    def fresh(cls, arith: Arithmetic) -> StepInputs:
        names = [f.name for f in fields(cls)]
        numbers = [arith.var(n) for n in names[:9]]
        return cls(*numbers, *(z3.Bool(n) for n in names[9:]))

    def domain(self, arith: Arithmetic) -> z3.BoolRef:
        """``PolicyConfig``'s validation, the bounds, and ``step``'s preconditions."""
        c = arith.const
        bounded = [
            z3.And(arith.le(c(MIN_PARAM), v), arith.le(v, c(MAX_PARAM)))
            for v in (
                self.floor,
                self.cap,
                self.max_step_up,
                self.max_step_down,
                self.fallback_multiplier,
            )
        ]
        return z3.And(
            arith.finite(self.multiplier),
            arith.finite(self.override_value),
            arith.not_nan(self.ratio),
            arith.le(c(0.0), self.ratio),
            *bounded,
            arith.lt(self.floor, self.cap),
            arith.le(c(0.0), self.hysteresis),
            arith.lt(self.hysteresis, c(1.0)),
            arith.le(self.floor, self.fallback_multiplier),
            arith.le(self.fallback_multiplier, self.cap),
        )


@dataclass(frozen=True)
class StepOutcome:
    """The encoded decision: the published multiplier, the reason code, and the target."""

    multiplier: z3.ExprRef
    reason: z3.ArithRef
    target: z3.ExprRef  # meaningful when has_target
    has_target: z3.BoolRef
    previous: z3.ExprRef


def encode_step(v: StepInputs, arith: Arithmetic) -> StepOutcome:
    """The decision of ``MultiplierPolicy.step``, branch by branch in the code's order."""

    def py_min(a, b):
        return z3.If(arith.lt(b, a), b, a)

    def py_max(a, b):
        return z3.If(arith.lt(a, b), b, a)

    def clip(value):
        return py_min(py_max(value, v.floor), v.cap)

    previous = clip(v.multiplier)  # _previous(state, cfg)
    target = clip(v.ratio)  # MultiplierPolicy.target

    # z3.If takes terms, not pairs: the multiplier and the reason are two parallel terms.
    def branch(pick: str) -> z3.ExprRef:
        def pair(multiplier: z3.ExprRef, reason: str) -> z3.ExprRef:
            return multiplier if pick == "m" else z3.IntVal(REASON_CODES[reason])

        down = z3.If(
            v.in_relax_delay,
            pair(previous, "relax_delay_hold"),
            z3.If(
                arith.lt(v.max_step_down, arith.sub(previous, target)),
                pair(arith.sub(previous, v.max_step_down), "rate_limited_down"),
                pair(target, "relaxed"),
            ),
        )
        up = z3.If(
            arith.lt(v.max_step_up, arith.sub(target, previous)),
            pair(arith.add(previous, v.max_step_up), "rate_limited_up"),
            pair(target, "tightened"),
        )
        normal = z3.If(
            v.in_band,
            pair(previous, "hysteresis_hold"),
            z3.If(arith.lt(previous, target), up, down),
        )
        fallback = pair(
            py_min(py_max(previous, v.fallback_multiplier), arith.add(previous, v.max_step_up)),
            "fallback",
        )
        return z3.If(
            v.halted,
            pair(previous, "halted"),
            z3.If(
                v.override_active,
                pair(v.override_value, "override"),
                z3.If(v.input_failed, fallback, normal),
            ),
        )

    has_target = z3.And(z3.Not(v.halted), z3.Not(v.override_active), z3.Not(v.input_failed))
    return StepOutcome(
        multiplier=clip(branch("m")),  # decide() clips every outcome
        reason=branch("r"),
        target=target,
        has_target=has_target,
        previous=previous,
    )


def postconditions(v: StepInputs, out: StepOutcome, arith: Arithmetic) -> dict[str, z3.BoolRef]:
    """The ``post:`` lines of ``MultiplierPolicy.step``, one z3 formula each."""
    m, prev = out.multiplier, out.previous
    override = out.reason == REASON_CODES["override"]
    slack = arith.const(_MIN_MOVE)
    return {
        "within_floor_and_cap": z3.And(arith.le(v.floor, m), arith.le(m, v.cap)),
        "step_up_limit": z3.Or(
            override, arith.le(m, arith.add(arith.add(prev, v.max_step_up), slack))
        ),
        "step_down_limit": z3.Or(
            override, arith.le(arith.sub(arith.sub(prev, v.max_step_down), slack), m)
        ),
        "no_relaxation_within_delay": z3.Or(override, z3.Not(v.in_relax_delay), arith.le(prev, m)),
        "fallback_never_relaxes": z3.Or(out.reason != REASON_CODES["fallback"], arith.le(prev, m)),
        "hysteresis_never_moves": z3.Or(
            z3.Not(out.has_target), z3.Not(v.in_band), arith.eq(m, prev)
        ),
    }


#: Which arithmetic proves which postcondition in CI: the exact claims in binary64 itself,
#: the step limits (which hold up to rounding) on the rounded reals.
PROOF_ARITHMETIC = {
    "within_floor_and_cap": "binary64",
    "no_relaxation_within_delay": "binary64",
    "fallback_never_relaxes": "binary64",
    "hysteresis_never_moves": "binary64",
    "step_up_limit": "rounded_real",
    "step_down_limit": "rounded_real",
}


def make_arithmetic(kind: str) -> Arithmetic:
    if kind == "binary64":
        return Binary64()
    if kind == "rounded_real":
        return RoundedReal()
    raise ValueError(f"unknown arithmetic {kind!r}")


def prove(
    name: str, kind: str | None = None, timeout_ms: int = 120_000
) -> tuple[str, z3.ModelRef | None]:
    """Prove one postcondition of ``step`` over the whole domain.

    Returns
    -------
    verdict : str
        ``"proved"`` (the negation is unsatisfiable), ``"counterexample"`` or ``"unknown"``
        (the solver ran out of ``timeout_ms``).
    model : z3.ModelRef or None
        The counterexample, if any.
    """
    arith = make_arithmetic(kind or PROOF_ARITHMETIC[name])
    v = StepInputs.fresh(arith)
    out = encode_step(v, arith)
    claim = postconditions(v, out, arith)[name]
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(v.domain(arith), *arith.side_conditions(), z3.Not(claim))
    result = solver.check()
    if result == z3.unsat:
        return "proved", None
    if result == z3.sat:
        return "counterexample", solver.model()
    return "unknown", None


def _substitutions(v: StepInputs, values: dict[str, float | bool], arith: Arithmetic) -> list:
    subs = []
    for f in fields(v):
        var, value = getattr(v, f.name), values[f.name]
        subs.append((var, z3.BoolVal(value) if isinstance(value, bool) else arith.const(value)))
    return subs


def evaluate_binary64(values: dict[str, float | bool]) -> tuple[float, str]:
    """The binary64 encoding at concrete inputs: ``(multiplier, reason)``, bit for bit."""
    arith = Binary64()
    v = StepInputs.fresh(arith)
    out = encode_step(v, arith)
    subs = _substitutions(v, values, arith)
    multiplier = z3.simplify(z3.substitute(out.multiplier, *subs))
    reason = z3.simplify(z3.substitute(out.reason, *subs)).as_long()
    return fp_to_float(multiplier), REASON_NAMES[reason]


def rounded_real_admits(values: dict[str, float | bool], multiplier: float, reason: str) -> bool:
    """True if the rounded-real encoding has an execution giving ``(multiplier, reason)``.

    Soundness of the over-approximation needs exactly this: every concrete binary64 run of
    ``step`` is one of its executions.
    """
    arith = RoundedReal()
    v = StepInputs.fresh(arith)
    out = encode_step(v, arith)
    solver = z3.Solver()
    solver.add(*(var == value for var, value in _substitutions(v, values, arith)))
    solver.add(*arith.side_conditions())
    solver.add(out.multiplier == arith.const(multiplier), out.reason == REASON_CODES[reason])
    return solver.check() == z3.sat


def fp_to_float(value: z3.ExprRef) -> float:
    """The Python float of a concrete z3 ``Float64`` value, bit for bit."""
    bits = z3.simplify(z3.fpToIEEEBV(value)).as_long()
    return struct.unpack("<d", bits.to_bytes(8, "little"))[0]
