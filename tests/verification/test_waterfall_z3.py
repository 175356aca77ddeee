"""z3 proofs of ADL, socialized loss and the ramp's class bookkeeping, tied to the code.

:mod:`tests.verification.waterfall_z3` writes ``adl.allocate``, ``adl.rank_candidates`` and
``socialization.socialize`` in z3, :mod:`tests.verification.ramp_z3` ``ramp.retarget`` (and
``ramp.multiplier`` to read its result). Here (1) each encoding is compared with the Python
function on random inputs, output for output, so a change of the rule that the encoding does
not follow fails; (2) each claim (a ``post:`` line of the rule's contract, or one of issue
#22's properties) is proved within its stated bounds (``DYNAMARGIN_VERIFY_Z3_BUDGET``:
``ci`` by default, ``long`` under ``make verify``); (3) the prover is shown to be live and the
domains non-empty; (4) the defect z3 found in ``retarget`` stays fixed.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

import pytest
import z3
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from liquidation.rules import ramp as ramp_rules
from liquidation.rules.adl import AdlCandidate, allocate, rank_candidates
from liquidation.rules.ramp import RampState, at_time, multiplier, retarget
from liquidation.rules.socialization import socialize
from tests.verification import ramp_z3, rules_z3, waterfall_z3
from tests.verification.runtime_contracts import checking, conditions_of

PROOF_TIMEOUT_MS = int(os.environ.get("DYNAMARGIN_VERIFY_Z3_TIMEOUT_MS", "120000"))
BUDGET = os.environ.get("DYNAMARGIN_VERIFY_Z3_BUDGET", "ci")
DRIFT = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CLAIMS = {**waterfall_z3.claims(BUDGET), **ramp_z3.claims(BUDGET)}
ALL = {name: claim for by_rule in CLAIMS.values() for name, claim in by_rule.items()}


def _money(limit: int) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(-5, 5), st.integers(-(10**6), 10**6), st.integers(-limit, limit))


# -- the encodings against the code --------------------------------------------------------------
@st.composite
def adl_cases(draw: st.DrawFn) -> tuple[list[AdlCandidate], int, int]:
    n = draw(st.integers(0, 6))
    buckets = draw(st.lists(st.sampled_from("abcdefgh"), min_size=n, max_size=n, unique=True))
    cands = [
        AdlCandidate(
            bucket,
            draw(st.integers(1, 10**9)) * draw(st.sampled_from([1, -1])),
            draw(_money(10**15)),
            draw(st.one_of(_money(10**15), st.integers(1, 10**9))),
            draw(_money(10**15)),
            draw(st.one_of(_money(10**15), st.integers(1, 10**9))),
        )
        for bucket in buckets
    ]
    quantity = draw(st.one_of(st.integers(1, 10), st.integers(1, 10**9)))
    deficit = draw(st.one_of(st.just(0), st.integers(0, 10**6), st.integers(0, 10**12)))
    return cands, quantity, deficit


@DRIFT
@given(adl_cases())
@example(
    ([AdlCandidate("a", 10, 100, 50, 1000, 40), AdlCandidate("b", -5, 100, 30, 500, 1)], 12, 90)
)
def test_allocate_encoding_is_allocate(case) -> None:
    cands, quantity, deficit = case
    fills, unabsorbed = allocate(cands, quantity, deficit)
    expected = ([(f.bucket, f.lots, f.concession, f.room) for f in fills], unabsorbed)
    assert waterfall_z3.eval_allocate(cands, quantity, deficit) == expected


@DRIFT
@given(adl_cases(), st.lists(st.sampled_from("ab"), max_size=3))
def test_rank_encoding_is_rank_candidates(case, repeated: list[str]) -> None:
    """Same order, ties by bucket included (``repeated`` adds candidates with a bucket and a
    score already present: a stable sort keeps them in list order)."""
    cands = case[0] + [AdlCandidate(b, 1, 1, 5, 10, 2) for b in repeated]
    assert waterfall_z3.eval_rank(cands) == [c.bucket for c in rank_candidates(cands)]
    for c in cands:
        if c.eligible and all(abs(v) <= waterfall_z3.MAX_RANK_MONEY for v in (c.cost, c.upnl)):
            assert rules_z3.as_float(waterfall_z3.eval_score(c)).hex() == c.score.hex()


@DRIFT
@given(
    st.one_of(st.integers(0, 100), st.integers(0, 10**16)),
    st.lists(_money(10**15), max_size=7),
)
@example(10, [3, 3, 3])
@example(7, [5, -2, 0, 5])
def test_socialize_encoding_is_socialize(amount: int, equities: list[int]) -> None:
    holders = [(f"h{i}", e) for i, e in enumerate(equities)]
    assert waterfall_z3.eval_socialize(amount, holders) == socialize(amount, holders)


@dataclass(frozen=True)
class RampRun:
    start: float
    ramp_ms: int
    max_classes: int
    steps: list[tuple[int, float]]


@st.composite
def ramp_runs(draw: st.DrawFn) -> RampRun:
    """Reachable states: a run of retargets from :meth:`RampState.start` (tightenings, many
    small ones so floors build up, relaxations and republications)."""
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from([0, 1, 5, 100, 1_000, 100_000]),
                st.one_of(
                    st.floats(1.0, 1.3), st.floats(0.8, 1.0), st.just(1.0), st.floats(0.5, 3.0)
                ),
            ),
            min_size=1,
            max_size=10,
        )
    )
    return RampRun(
        start=draw(st.floats(0.5, 4.0)),
        ramp_ms=draw(st.sampled_from([0, 10, 100_000, 1_000_000])),
        max_classes=draw(st.integers(3, 7)),
        steps=steps,
    )


@DRIFT
@given(ramp_runs())
def test_retarget_encoding_is_retarget(run: RampRun) -> None:
    state, ts = RampState.start(run.start), 0
    for dt, factor in run.steps:
        ts += dt
        target = state.target * factor
        expected = retarget(state, target, ts, run.ramp_ms, run.max_classes)
        got = ramp_z3.eval_retarget(state, target, ts, run.ramp_ms, run.max_classes)
        assert repr(got) == repr(expected)  # bit for bit (repr round-trips floats)
        for since in (*ramp_rules._probes(state, ts), ts - 1, ts // 2):
            for at in (ts, ts + run.ramp_ms // 3):
                got_m = ramp_z3.eval_multiplier(state, since, at, run.ramp_ms)
                assert got_m.hex() == multiplier(state, since, at, run.ramp_ms).hex()
        state = expected


# -- the proofs -----------------------------------------------------------------------------------
def test_each_proved_rule_has_a_claim_for_each_postcondition() -> None:
    """Every ``post:`` line of the rules proved here has its claim (same order; ``None``:
    by construction, see the comment)."""
    n_alloc, n_soc, n_rank = (
        waterfall_z3.MAX_SIZES[BUDGET][k] for k in ("allocate", "socialize", "rank")
    )
    expected = {
        "liquidation.rules.adl.allocate": [
            f"allocate_unabsorbed_within_deficit_{n_alloc}",
            f"allocate_conserves_value_{n_alloc}",
            f"allocate_fills_positive_{n_alloc}",
            f"allocate_concession_within_profit_and_equity_{n_alloc}",
            f"allocate_room_non_negative_{n_alloc}",
            f"allocate_unabsorbed_only_without_room_{n_alloc}",
            f"allocate_lots_within_position_{n_alloc}",
            f"allocate_places_every_lot_{n_alloc}",
        ],
        "liquidation.rules.socialization.socialize": [
            f"socialize_conserves_value_{n_soc}",
            f"socialize_charges_non_negative_{n_soc}",  # and every listed charge > 0: filtered
            f"socialize_charge_within_equity_{n_soc}",
        ],
        "liquidation.rules.adl.rank_candidates": [
            f"rank_is_a_permutation_of_the_eligible_{n_rank}",  # post: all eligible, each once
            f"rank_highest_score_first_{n_rank}",
        ],
        "liquidation.rules.ramp.retarget": [
            f"retarget_keeps_the_state_well_formed_{ramp_z3.MAX_FLOORS[BUDGET]}",
            None,  # an unchanged target returns the state itself: the encoding's first line
            f"retarget_new_positions_pay_the_target_{ramp_z3.MAX_FLOORS[BUDGET]}",
            f"retarget_between_old_and_new_{ramp_z3.MAX_FLOORS[BUDGET]}",
        ],
    }
    assert set(expected) == set(CLAIMS)
    for dotted, names in expected.items():
        module, name = dotted.rsplit(".", 1)
        posts = [c.expr_source for c in conditions_of(importlib.import_module(module), name).post]
        assert len(posts) == len(names), dotted
        assert {n for n in names if n} <= set(CLAIMS[dotted])


#: Claims in non-linear integer arithmetic (the division lemmas): z3's default solver took
#: 0.1 s to over 3 min on the same lemma depending on what the process built before, its
#: QF_NIA solver 0.3 s (and the reverse at 7 weights), so these try both, QF_NIA first.
NONLINEAR = ("division_facts", "pro_rata_left")


def _solvers(name: str) -> list[z3.Solver]:
    default = z3.Solver()
    default.set("timeout", PROOF_TIMEOUT_MS)
    if not name.startswith(NONLINEAR):
        return [default]
    first = z3.SolverFor("QF_NIA")
    first.set("timeout", min(PROOF_TIMEOUT_MS, 30_000))
    return [first, default]


@pytest.mark.parametrize("name", sorted(ALL))
def test_z3_proves_each_claim(name: str) -> None:
    """Unsat in negation, by any solver tried (each is a decision procedure: an unsat is a
    proof; a sat answer fails at once)."""
    domain, claim = ALL[name]
    verdicts = []
    for solver in _solvers(name):
        solver.add(domain, z3.Not(claim))
        verdict = solver.check()
        assert verdict != z3.sat, f"{name}: counterexample\n{solver.model()}"
        if verdict == z3.unsat:
            return
        verdicts.append(verdict)
    pytest.fail(f"{name}: {verdicts}")


def test_the_domains_are_not_empty() -> None:
    """A proof over an empty domain would prove anything: each domain has a model."""
    for name, (domain, _) in ALL.items():
        solver = z3.Solver()
        solver.set("timeout", PROOF_TIMEOUT_MS)
        solver.add(domain)
        assert solver.check() == z3.sat, name


def _refuted(domain: z3.BoolRef, claim: z3.BoolRef) -> bool:
    solver = z3.Solver()
    solver.set("timeout", PROOF_TIMEOUT_MS)
    solver.add(domain, z3.Not(claim))
    return solver.check() == z3.sat


def test_z3_refutes_false_claims_about_the_waterfall() -> None:
    """The prover is live: ADL can leave a deficit unabsorbed, socialization can write off,
    and the ranking is not the list order."""
    domain, _ = waterfall_z3.allocate_claims(2)["allocate_conserves_value_2"]
    out = waterfall_z3.encode_allocate(
        [waterfall_z3.CandidateTerms.fresh(f"a{i}") for i in range(2)],
        z3.Int("a_quantity"),
        z3.Int("a_deficit"),
        [z3.Int(f"a_order2_{j}") for j in range(2)],
        waterfall_z3.FreeDivisions("a"),
    )
    assert _refuted(domain, out.unabsorbed == 0)
    domain, _ = waterfall_z3.socialize_claims(2)["socialize_conserves_value_2"]
    assert _refuted(domain, z3.Int("s_amount") <= z3.Int("s_equity0") + z3.Int("s_equity1"))
    eligible = [z3.BoolVal(True)] * 2
    scores, buckets = z3.Reals("x0 x1"), z3.Ints("b0 b1")
    pos = waterfall_z3.encode_rank(eligible, scores, buckets, waterfall_z3.RealOrder)
    assert _refuted(z3.BoolVal(True), pos[0] == 0)


def test_z3_finds_the_ramp_restart_defect_without_the_fix() -> None:
    """The defect z3 found: restarting the base from its current level on a tightening (the
    code before the fix) lets the oldest positions pay less later than with no change."""
    domain, claim = ramp_z3.retarget_claims(0, keep_schedule=False)[
        "retarget_tightening_never_lowers_later_0"
    ]
    assert _refuted(domain, claim)


@dataclass(frozen=True)
class _Snapshot:
    multiplier: float
    status: str
    valid_until_ms: int


@dataclass(frozen=True)
class _Asset:
    fallback_multiplier: float


def test_expiry_mid_ramp_never_relaxes_the_oldest_positions() -> None:
    """Regression (z3's counterexample, concretely): the base ramps 1.0 -> 2.0 over 100 ms from
    0; the snapshot expires at 50 into a fallback of 2.01. Restarting the base from 1.5 at 50
    ramped it to 2.01 by 150, so at 90 the oldest positions paid 1.704 instead of 1.9; now the
    base keeps its schedule toward 2.01 (1.909 at 90), and ``at_time``'s contract holds."""
    state = RampState(target=2.0, base_from=1.0, base_start_ms=0, changed_ms=0)
    snap, asset = _Snapshot(2.0, "ok", 50), _Asset(2.01)
    after = checking(ramp_rules, "at_time")(state, snap, None, asset, 90, 100, 5)
    oldest = -(2**63)
    assert after.target == 2.01
    for ts in (50, 60, 90, 99, 100, 150, 200):
        assert multiplier(after, oldest, ts, 100) >= multiplier(state, oldest, ts, 100)
    assert multiplier(after, oldest, 90, 100) > multiplier(state, oldest, 90, 100)
    assert multiplier(after, oldest, 100, 100) == 2.01  # at the new target by the old end
    assert at_time(state, snap, None, asset, 50, 100, 5) is state  # not expired yet
