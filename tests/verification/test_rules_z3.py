"""z3 proofs of the rules CrossHair cannot settle, and their encodings tied to the code.

:mod:`tests.verification.rules_z3` writes ``ramped_multiplier``, ``split_penalty``,
``close_price``, governance's ``review`` and the guard's decision (``check_observation``,
``advance``) in z3. Here (1) each encoding is compared with the Python function on random
inputs, bit for bit, so a change of the rule that the encoding does not follow fails; (2) each
claim (a ``post:`` line of the rule's contract) is proved over its whole domain; (3) the
prover is shown to be live. ``ramped_multiplier``'s contract is proved in CI in the
monotone-rounding model (``*_fl``, sound for binary64) and, with ``DYNAMARGIN_VERIFY_Z3_BUDGET=
long`` (``make verify``), also bit-blasted in binary64.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import pytest
import z3
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from liquidation.config import OracleGuardConfig
from liquidation.money import MAX_AMOUNT, MAX_PRICE, MAX_TS_MS
from liquidation.rules.closeout import close_price
from liquidation.rules.governance import review
from liquidation.rules.oracle_guard import PriceObservation, check_observation
from liquidation.rules.penalty import split_penalty
from liquidation.rules.ramp import ramped_multiplier
from tests.verification import rules_z3
from tests.verification.runtime_contracts import conditions_of

#: Per-proof solver budget: short in CI, long under ``make verify``.
PROOF_TIMEOUT_MS = int(os.environ.get("DYNAMARGIN_VERIFY_Z3_TIMEOUT_MS", "120000"))
#: ``ci`` (default) or ``long`` (``make verify``: adds the bit-blasted binary64 ramp proofs)
BUDGET = os.environ.get("DYNAMARGIN_VERIFY_Z3_BUDGET", "ci")
DRIFT = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

multipliers = st.one_of(
    st.floats(min_value=5e-324, max_value=1e3, allow_subnormal=True),
    st.floats(min_value=5e-324, max_value=1.7e308),
    st.sampled_from([1.0, 1.5, 2.0, 1.0 + 2**-52]),
)
times = st.integers(0, MAX_TS_MS)


# -- the encodings against the code --------------------------------------------------------------
@DRIFT
@given(multipliers, multipliers, times, st.one_of(st.just(0), st.integers(1, 10**7), times), times)
@example(1.0, 2.0, 0, 3, 1)
@example(1.0, 2.0, 0, 3, 3)
@example(2.0, 1.0, 5, 3, 0)
def test_ramp_encoding_is_ramped_multiplier_bit_for_bit(sv, t, start, ramp, ts) -> None:
    expected = ramped_multiplier(sv, t, start, ramp, ts)
    assert rules_z3.eval_ramped_multiplier(sv, t, start, ramp, ts).hex() == expected.hex()


fund_shares = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0, 0.37, 1 - 2**-53]))
penalties = st.one_of(
    st.integers(0, 10**15), st.integers(0, MAX_AMOUNT), st.integers(2**53 - 8, 2**54 + 8)
)


@DRIFT
@given(penalties, fund_shares)
@example(2**54 - 1, 1.0)
def test_split_encoding_is_split_penalty(penalty: int, share: float) -> None:
    assert rules_z3.eval_split_penalty(penalty, share) == split_penalty(penalty, share)


@DRIFT
@given(
    st.integers(0, MAX_PRICE),
    st.integers(-MAX_AMOUNT, MAX_AMOUNT),
    st.one_of(st.floats(0.0, 1.0), st.floats(0.0, 0.05), st.just(0.0)),
)
@example(MAX_PRICE, 1, 1.0)
def test_close_price_encoding_is_close_price(oracle: int, lots: int, rate: float) -> None:
    assert rules_z3.eval_close_price(oracle, lots, rate) == close_price(oracle, lots, rate)


@dataclass(frozen=True)
class Terms:
    """Any bounds ``review``'s preconditions admit (wider than ``InsuranceConfig``'s checks)."""

    fund_share_min: float
    fund_share_max: float
    share_step: float
    fee_addon_max_bps: float
    fee_addon_step_bps: float
    target_coverage: float
    comfort_coverage: float


@st.composite
def governance_cases(draw: st.DrawFn) -> tuple[Terms, int, int, float, float]:
    low, high = sorted(draw(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=2)))
    target = draw(st.floats(1e-6, 10.0))
    terms = Terms(
        fund_share_min=low,
        fund_share_max=high,
        share_step=draw(st.floats(1e-9, 2.0)),
        fee_addon_max_bps=draw(st.floats(0.0, 100.0)),
        fee_addon_step_bps=draw(st.floats(1e-9, 50.0)),
        target_coverage=target,
        comfort_coverage=draw(st.floats(target, 20.0).filter(lambda c: c > target)),
    )
    fund = draw(st.integers(0, MAX_AMOUNT))
    loss = draw(st.one_of(st.just(0), st.integers(1, MAX_AMOUNT), st.integers(1, 10**9)))
    share = draw(st.one_of(st.floats(-2.0, 3.0), st.sampled_from([low, high])))
    addon = draw(st.floats(-10.0, 200.0))
    return terms, fund, loss, share, addon


@DRIFT
@given(governance_cases())
def test_review_encoding_is_review(case) -> None:
    terms, fund, loss, share, addon = case
    decision = review(fund, loss, share, addon, terms)
    got = rules_z3.eval_review(share, addon, fund, loss, asdict(terms))
    assert (got[0].hex(), got[1].hex()) == (
        decision.fund_share.hex(),
        decision.fee_addon_bps.hex(),
    )


@DRIFT
@given(
    price=st.one_of(st.integers(-5, 0), st.integers(1, 10**6), st.integers(1, MAX_PRICE)),
    confidence=st.one_of(st.just(0), st.integers(0, 10**4)),
    reference=st.one_of(st.none(), st.integers(1, 10**6)),
    twap=st.one_of(st.none(), st.integers(1, 10**6)),
    window=st.lists(st.integers(1, 10**6), max_size=7).map(tuple),
    reanchor_prints=st.integers(2, 6),
    ratio=st.sampled_from([0.001, 0.01, 0.05]),
    deviation=st.sampled_from([0.001, 0.01, 0.05, 0.5]),
    band=st.sampled_from([0.001, 0.05, 0.2, 0.9]),
)
@example(101, 0, None, 10, (100, 100, 100, 100), 5, 0.01, 0.05, 0.05)  # re-anchored
@example(101, 0, None, 10, (100, 300, 100, 100), 5, 0.01, 0.05, 0.05)  # run not consistent
@example(150, 0, 100, 10, (150, 150, 150, 150), 5, 0.01, 0.05, 0.05)  # reference: no run
@example(100, 5, None, None, (), 2, 0.01, 0.05, 0.05)  # confidence band
def test_guard_encoding_is_check_observation(
    price, confidence, reference, twap, window, reanchor_prints, ratio, deviation, band
) -> None:
    config = OracleGuardConfig(
        reanchor_prints=reanchor_prints,
        max_confidence_ratio=ratio,
        max_deviation=deviation,
        reanchor_band=band,
    )
    obs = PriceObservation("BTC", price, 0, confidence, reference)
    verdict = check_observation(obs, twap, window, config)
    expected = (verdict.accepted, verdict.reason, verdict.reanchored)
    assert rules_z3.eval_check_observation(obs, twap, window, config) == expected


# -- the proofs -----------------------------------------------------------------------------------
def test_each_proved_rule_carries_the_contract_its_claims_are_about() -> None:
    """Every ``post:`` line of the proved rules has its claim here (same order)."""
    import importlib

    expected = {
        "liquidation.rules.ramp.ramped_multiplier": [
            "ramp_between_old_and_new_fl",  # and, long budget: ramp_between_old_and_new
            "ramp_relaxation_at_once_fl",  # ramp_relaxation_at_once
            "ramp_reaches_target_fl",  # ramp_reaches_target
        ],
        "liquidation.rules.penalty.split_penalty": [
            "split_sums_to_penalty",
            "split_shares_non_negative",
        ],
        "liquidation.rules.closeout.close_price": [
            "close_long_at_or_below_oracle",
            "close_short_at_or_above_oracle",
        ],
        "liquidation.rules.governance.review": [
            "review_share_in_bounds",
            "review_addon_in_bounds",
            None,  # stressed_loss and coverage passed through: by construction, run time
            "review_below_target_never_falls",
            "review_above_comfort_never_rises",
            "review_between_only_clips",
        ],
        "liquidation.rules.oracle_guard.check_observation": [
            "guard_accepts_positive_prices",
            "guard_accepts_within_confidence",
            "guard_accepts_within_deviation",
            "guard_reanchors_only_on_a_run",
            "guard_accepts_a_completed_run",
        ],
        "liquidation.rules.oracle_guard.advance": [
            "advance_window_takes_confidence_passing_prints",
            "advance_twap_reset_or_kept",
            "advance_twap_positive",
            "advance_liveness_step",
        ],
    }
    assert set(expected) == set(rules_z3.CLAIMS)
    for dotted, names in expected.items():
        module, name = dotted.rsplit(".", 1)
        posts = [c.expr_source for c in conditions_of(importlib.import_module(module), name).post]
        assert len(posts) == len(names), dotted
        assert {n for n in names if n} <= set(rules_z3.CLAIMS[dotted](BUDGET))
    long_ramp = rules_z3.CLAIMS["liquidation.rules.ramp.ramped_multiplier"]("long")
    assert {"ramp_between_old_and_new", "ramp_relaxation_at_once", "ramp_reaches_target"} <= set(
        long_ramp
    )


@pytest.mark.parametrize("name", sorted(rules_z3.all_claims(BUDGET)))
def test_z3_proves_each_claim(name: str) -> None:
    verdict, model = rules_z3.prove(name, timeout_ms=PROOF_TIMEOUT_MS, budget=BUDGET)
    assert verdict == "proved", f"{name}: {verdict}\n{model}"


def test_z3_finds_the_split_penalty_counterexample_without_its_min() -> None:
    """The prover is live: the former ``int(penalty * fund_share)`` alone is refuted (the
    float product rounds up past a penalty above 2**53)."""
    penalty, share = rules_z3.int_var("penalty"), rules_z3.float_var("fund_share")
    fund = rules_z3.trunc(rules_z3.fmul(rules_z3.to_float(penalty), share))
    solver = z3.Solver()
    solver.set("timeout", PROOF_TIMEOUT_MS)
    solver.add(rules_z3.in_range(penalty, 2**53, MAX_AMOUNT), z3.fpEQ(share, rules_z3.fval(1.0)))
    solver.add(fund > penalty)
    assert solver.check() == z3.sat
    found = solver.model()[penalty].as_signed_long()
    assert int(found * 1.0) > found  # the float product itself, outside z3


@pytest.mark.skipif(
    BUDGET != "long",
    reason="bit-blasts the ramp (2-20 s of CPU); CI checks the same liveness in the "
    "monotone-rounding model (test_ramp_fl_model_refutes_a_false_claim)",
)
def test_z3_refutes_a_false_ramp_claim() -> None:
    """The prover is live: "the ramp pays the target before ``start + ramp``" is false."""
    domain, _ = rules_z3.ramp_claims()["ramp_reaches_target"]
    sv, t = rules_z3.float_var("start_value"), rules_z3.float_var("target")
    start, ramp, ts = (rules_z3.int_var(n) for n in ("start_ms", "ramp_ms", "ts_ms"))
    r = rules_z3.encode_ramped_multiplier(sv, t, start, ramp, ts, rules_z3.float_var("q"))
    solver = z3.Solver()
    solver.set("timeout", PROOF_TIMEOUT_MS)
    solver.add(domain, ts < start + ramp, z3.fpLT(sv, t), z3.Not(z3.fpEQ(r, t)))
    assert solver.check() == z3.sat
    model = solver.model()  # the witness, with the real division (cheap once concrete)
    values = [model.eval(x, model_completion=True) for x in (sv, t, start, ramp, ts)]
    sv_, t_ = (rules_z3.as_float(x) for x in values[:2])
    start_, ramp_, ts_ = (x.as_signed_long() for x in values[2:])
    progress = (ts_ - start_) / ramp_ if ramp_ else 0.0
    assert ramped_multiplier(sv_, t_, start_, ramp_, ts_) != t_ or progress >= 1.0


def test_z3_refutes_the_guard_deadlock() -> None:
    """The prover is live: ``check_observation`` without its re-anchoring (mutant d1) breaks
    the inductive step of the liveness bound."""
    domain, claim = rules_z3.guard_claims(reanchors=False)["advance_liveness_step"]
    solver = z3.Solver()
    solver.add(domain, z3.Not(claim))
    assert solver.check() == z3.sat


def test_ramp_monotone_proof_is_not_vacuous() -> None:
    """The monotone-rounding domain admits a run where the later time pays strictly more (so
    the axioms are consistent and the proof is not vacuous)."""
    domain, _ = rules_z3.ramp_monotone_claim()
    sv, t = z3.Reals("m_start_value m_target")
    start, ramp, ts, later = z3.Ints("m_start m_ramp m_ts m_later")
    ops = rules_z3.MonotoneRounding()
    ops.fl = z3.Function("fl", z3.RealSort(), z3.RealSort())  # the same name: the same function
    r = rules_z3.encode_ramped_multiplier(sv, t, start, ramp, ts, ops=ops)
    r_later = rules_z3.encode_ramped_multiplier(sv, t, start, ramp, later, ops=ops)
    solver = z3.Solver()
    solver.set("timeout", PROOF_TIMEOUT_MS)
    solver.add(domain, r < r_later)
    solver.add(sv == 1, t == 2, start == 0, ramp == 4, ts == 1, later == 2)
    assert solver.check() == z3.sat


def test_ramp_fl_model_refutes_a_false_claim() -> None:
    """The CI ramp proofs' model is live: "the ramp is at the target at once" is refuted there
    (so its domain is not empty and ``fl`` does not make every claim hold)."""
    domain, _ = rules_z3.ramp_claims_fl()["ramp_reaches_target_fl"]
    ops = rules_z3.MonotoneRounding()
    sv, t = z3.Reals("f_start_value f_target")
    start, ramp, ts = z3.Ints("f_start f_ramp f_ts")
    r = rules_z3.encode_ramped_multiplier(sv, t, start, ramp, ts, ops=ops)
    solver = z3.Solver()
    solver.set("timeout", PROOF_TIMEOUT_MS)
    solver.add(domain, r != t)
    assert solver.check() == z3.sat
