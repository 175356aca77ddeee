"""MultiplierPolicy.step: its contract, z3 proofs of it, and the encoding tied to the code.

The contract lives in the docstring of ``step`` (PEP 316). Here it is (1) proved over all
inputs within the bounds of :mod:`tests.verification.policy_z3` by z3, (2) checked at run time
on every call of the policy's existing property tests, and (3) the z3 encoding is compared
with the Python function on random inputs, bit for bit, so a change of ``step`` that the
encoding does not follow fails here.
"""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import z3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.policy import (
    FALLBACK_REASONS,
    MultiplierPolicy,
    PolicyConfig,
    PolicyState,
    _in_hysteresis_band,
    _previous,
)
from tests.serving import test_policy as policy_properties
from tests.verification import policy_z3
from tests.verification.runtime_contracts import ContractViolation, conditions_of, enforced

NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)
#: Per-proof solver budget: short in CI, long under ``make verify``.
PROOF_TIMEOUT_MS = int(os.environ.get("DYNAMARGIN_VERIFY_Z3_TIMEOUT_MS", "120000"))

# The z3 postconditions, in the order of the ``post:`` lines of ``step``'s docstring.
POST_ORDER = (
    "within_floor_and_cap",
    "step_up_limit",
    "step_down_limit",
    "no_relaxation_within_delay",
    "fallback_never_relaxes",
    "hysteresis_never_moves",
)
POST_MARKERS = (
    "floor <= __return__.multiplier <= self.config.cap",
    "max_step_up",
    "max_step_down",
    "_in_relax_delay",
    "FALLBACK_REASONS",
    "_in_hysteresis_band",
)


def test_step_carries_the_contract_the_proofs_are_about() -> None:
    conditions = conditions_of(MultiplierPolicy, "step")
    assert len(conditions.pre) == 3
    posts = [c.expr_source for c in conditions.post]
    assert len(posts) == len(POST_ORDER) == len(policy_z3.PROOF_ARITHMETIC)
    for source, marker in zip(posts, POST_MARKERS, strict=True):
        assert marker in source, f"post line {source!r} lacks {marker!r}"
    assert set(POST_ORDER) == set(policy_z3.PROOF_ARITHMETIC)


@pytest.mark.parametrize("name", POST_ORDER)
def test_z3_proves_each_postcondition_of_step(name: str) -> None:
    verdict, model = policy_z3.prove(name, timeout_ms=PROOF_TIMEOUT_MS)
    assert verdict == "proved", f"{name}: {verdict}\n{model}"


@pytest.mark.parametrize("kind", ["binary64", "rounded_real"])
def test_z3_domain_reaches_every_branch(kind: str) -> None:
    """The proofs are not vacuous: within the domain every reason of ``step`` occurs."""
    arith = policy_z3.make_arithmetic(kind)
    v = policy_z3.StepInputs.fresh(arith)
    out = policy_z3.encode_step(v, arith)
    for reason, code in policy_z3.REASON_CODES.items():
        solver = z3.Solver()
        solver.set("timeout", PROOF_TIMEOUT_MS)
        solver.add(v.domain(arith), *arith.side_conditions(), out.reason == code)
        assert solver.check() == z3.sat, f"{kind}: {reason} unreachable in the domain"


def test_z3_finds_a_counterexample_to_a_false_claim() -> None:
    """The prover is live: a claim that is false ("the multiplier never rises") is refuted."""
    arith = policy_z3.Binary64()
    v = policy_z3.StepInputs.fresh(arith)
    out = policy_z3.encode_step(v, arith)
    solver = z3.Solver()
    solver.set("timeout", PROOF_TIMEOUT_MS)
    solver.add(v.domain(arith), arith.lt(out.previous, out.multiplier))
    assert solver.check() == z3.sat


# -- the encoding against the code -------------------------------------------------------------
positive = st.floats(policy_z3.MIN_PARAM, policy_z3.MAX_PARAM, allow_nan=False)


@st.composite
def step_cases(draw: st.DrawFn) -> tuple[MultiplierPolicy, dict, dict]:
    """A config, a state and step arguments, with the encoding's inputs they amount to."""
    floor, cap = sorted(draw(st.lists(positive, min_size=2, max_size=2, unique=True)))
    fallback = draw(st.floats(floor, cap))
    base_imf = min(0.05, 1.0 / cap)
    config = PolicyConfig(
        floor=floor,
        cap=cap,
        initial_multiplier=floor,
        fallback_multiplier=fallback,
        max_step_up=draw(positive),
        max_step_down=draw(positive),
        hysteresis=draw(st.one_of(st.just(0.0), st.floats(0.0, 0.999))),
        exponent=draw(st.sampled_from([1.0, 1.5, 2.0, 3.0])),
        min_relax_delay_hours=6.0,
        base_imf=base_imf,
        base_mmf=base_imf / 2,
    )
    policy = MultiplierPolicy(config)
    halted, override, failed, in_delay = (draw(st.booleans()) for _ in range(4))
    multiplier = draw(
        st.one_of(st.floats(floor, cap), st.floats(-1e6, 1e6), st.sampled_from([floor, cap, 0.0]))
    )
    override_value = draw(st.floats(floor, cap))
    state = PolicyState(
        asset="BTCUSDT",
        multiplier=multiplier,
        halted=halted,
        last_tighten_at=NOW - timedelta(hours=draw(st.floats(0.0, 5.9))) if in_delay else None,
        last_relax_at=None if in_delay else NOW - timedelta(hours=draw(st.floats(6.0, 99.0))),
        override_multiplier=override_value if override else None,
        override_until=None,
    )
    sigma = draw(st.floats(config.sigma_min, config.sigma_max))
    reference = draw(st.floats(1e-6, 10.0))
    ratio = (sigma / reference) ** config.exponent
    previous = _previous(state, config)
    values = {
        "floor": floor,
        "cap": cap,
        "max_step_up": config.max_step_up,
        "max_step_down": config.max_step_down,
        "hysteresis": config.hysteresis,
        "fallback_multiplier": fallback,
        "multiplier": multiplier,
        "override_value": override_value,
        "ratio": ratio,
        "halted": halted,
        "override_active": override,
        "input_failed": failed,
        "in_relax_delay": in_delay,
        "in_band": _in_hysteresis_band(policy.target(sigma, reference), previous, config),
    }
    call = {
        "state": state,
        "forecast_sigma": None if failed else sigma,
        "as_of": NOW,
        "now": NOW,
        "sigma_ref": reference,
    }
    return policy, call, values


def _reason(reason: str) -> str:
    return "fallback" if reason in FALLBACK_REASONS else reason


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=step_cases())
def test_binary64_encoding_is_step_bit_for_bit(case) -> None:
    policy, call, values = case
    decision = policy.step(**call)
    multiplier, reason = policy_z3.evaluate_binary64(values)
    assert (multiplier, reason) == (decision.multiplier, _reason(decision.reason))
    assert multiplier.hex() == decision.multiplier.hex()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=step_cases())
def test_rounded_real_encoding_admits_every_run_of_step(case) -> None:
    policy, call, values = case
    decision = policy.step(**call)
    assert policy_z3.rounded_real_admits(values, decision.multiplier, _reason(decision.reason))


# -- the contract at run time -------------------------------------------------------------------
@pytest.mark.parametrize(
    "test",
    [
        policy_properties.test_multiplier_always_within_floor_and_cap,
        policy_properties.test_no_step_exceeds_its_limit,
        policy_properties.test_monotone_in_sigma_with_all_else_fixed,
        policy_properties.test_sigma_oscillating_inside_hysteresis_band_changes_nothing,
        policy_properties.test_expired_input_gives_stale_fallback,
        policy_properties.test_nan_missing_or_implausible_input_gives_fallback,
        policy_properties.test_rules_in_order_with_reasons,
        policy_properties.test_operator_halt_override_and_audit_records,
    ],
    ids=lambda t: t.__name__,
)
def test_policy_tests_pass_with_the_contract_checked_on_every_step(test) -> None:
    with enforced((MultiplierPolicy, "step")):
        test()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=step_cases())
def test_contract_holds_on_random_configs_states_and_branches(case) -> None:
    policy, call, _ = case
    with enforced((MultiplierPolicy, "step")):
        policy.step(**call)


def test_runtime_check_catches_a_broken_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run-time check is live: a NaN target falls back; with that guard switched off it
    would publish NaN, which the bound catches; a NaN stored multiplier is refused by the
    precondition."""
    policy = MultiplierPolicy(PolicyConfig(sigma_ref=0.03))
    with enforced((MultiplierPolicy, "step")), pytest.raises(ContractViolation, match="pre"):
        policy.step(PolicyState("X", float("nan")), 0.03, NOW, NOW)
    monkeypatch.setattr(MultiplierPolicy, "target", lambda self, sigma, ref: float("nan"))
    with enforced((MultiplierPolicy, "step")):
        assert policy.step(PolicyState("X", 2.0), 0.03, NOW, NOW).reason == "fallback_nonfinite"
    no_guard = SimpleNamespace(isnan=lambda _x: False, isfinite=math.isfinite, inf=math.inf)
    monkeypatch.setattr("serving.policy.math", no_guard)
    with enforced((MultiplierPolicy, "step")), pytest.raises(ContractViolation, match="post"):
        policy.step(PolicyState("X", 2.0), 0.03, NOW, NOW)
