"""Review gates on hand-built evidence (pure: no MLflow store)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.review import (
    CandidateEvidence,
    GateConfig,
    GateReport,
    GateResult,
    ReviewInputError,
    evaluate_gates,
    freshness_gate,
    var_zones,
)
from tests.models.registry_factory import DATA_THROUGH, evaluation_dict, forecasts_frame


def evidence(
    *,
    error: float = 0.15,
    bias: float = 1.0,
    seed: int = 0,
    zones: dict | None = None,
    leakage: bool | None = True,
    version: str = "2",
) -> CandidateEvidence:
    frame = forecasts_frame(challenger_error=error, challenger_bias=bias, seed=seed)
    return CandidateEvidence(
        model="lgbm",
        evaluation=evaluation_dict(frame, zones),
        forecasts=frame,
        data_through=DATA_THROUGH,
        horizon_hours=24,
        leakage_passed=leakage,
        version=version,
    )


def test_good_challenger_passes_every_gate() -> None:
    report = evaluate_gates(
        evidence(),
        evidence(error=0.3, seed=1, version="1"),
        reference_time=DATA_THROUGH + timedelta(hours=3),
    )
    assert report.passed, [f"{r.name}: {r.summary}" for r in report.failures]
    assert [r.name for r in report.results] == [
        "qlike_vs_champion",
        "qlike_vs_har",
        "var_green_zone",
        "leakage",
        "data_freshness",
    ]
    har = report.gate("qlike_vs_har").metrics
    assert har["dm_statistic"] < 0 and har["qlike_challenger"] < har["qlike_other"]
    assert har["hac_lag"] >= 23, "overlapping 24h targets need a HAC lag of at least H-1"


def test_biased_challenger_is_significantly_worse() -> None:
    report = evaluate_gates(evidence(bias=3.0), evidence(version="1"), reference_time=DATA_THROUGH)
    champion_gate = report.gate("qlike_vs_champion")
    assert not champion_gate.passed and "significantly worse" in champion_gate.summary
    assert champion_gate.metrics["p_worse"] < 0.05
    assert not report.passed


def test_require_improvement_fails_an_equal_model() -> None:
    same = evidence(seed=0)
    config = GateConfig(require_improvement=True, baselines=())
    report = evaluate_gates(same, same, config, reference_time=DATA_THROUGH)
    gate = report.gate("qlike_vs_champion")
    assert not gate.passed and "not significantly better" in gate.summary
    assert gate.metrics["dm_statistic"] == 0.0


def test_no_champion_passes_champion_gate_and_says_so() -> None:
    report = evaluate_gates(evidence(), None, reference_time=DATA_THROUGH)
    assert report.gate("qlike_vs_champion").passed
    assert "no champion" in report.gate("qlike_vs_champion").summary
    assert report.champion_version is None


def test_too_little_overlap_fails_rather_than_guessing() -> None:
    mine = evidence()
    short = mine.forecasts[mine.forecasts["ts"] < mine.forecasts["ts"].min() + timedelta(hours=50)]
    other = CandidateEvidence("lgbm", mine.evaluation, short, DATA_THROUGH, 24, True, version="1")
    gate = evaluate_gates(mine, other, reference_time=DATA_THROUGH).gate("qlike_vs_champion")
    assert not gate.passed and "only 50 common hours" in gate.summary


def test_var_zone_gate_names_the_failing_asset() -> None:
    report = evaluate_gates(
        evidence(zones={"ETHUSDT": "yellow"}), None, reference_time=DATA_THROUGH
    )
    gate = report.gate("var_green_zone")
    assert not gate.passed and "ETHUSDT=yellow" in gate.summary and "BTCUSDT" not in gate.summary
    relaxed = GateConfig(allowed_var_zones=("green", "yellow"))
    assert (
        evaluate_gates(
            evidence(zones={"ETHUSDT": "yellow"}), None, relaxed, reference_time=DATA_THROUGH
        )
        .gate("var_green_zone")
        .passed
    )


def test_var_zones_reads_nested_and_dotted_keys() -> None:
    nested = {"assets": {"BTCUSDT": {"var99": {"zone": "green", "exceptions": 1}}}}
    dotted = {"assets.BTCUSDT.var99.zone": "green", "mean.qlike.har": 0.2}
    assert var_zones(nested) == var_zones(dotted) == {"BTCUSDT": "green"}


@pytest.mark.parametrize(
    ("leakage", "required", "passed"),
    [(True, True, True), (False, True, False), (None, True, False), (None, False, True)],
)
def test_leakage_gate(leakage: bool | None, required: bool, passed: bool) -> None:
    config = GateConfig(require_leakage_check=required)
    report = evaluate_gates(evidence(leakage=leakage), None, config, reference_time=DATA_THROUGH)
    assert report.gate("leakage").passed is passed


@given(
    age_seconds=st.integers(min_value=-360_000, max_value=1_800_000),
    limit_hours=st.integers(min_value=1, max_value=240),
)
@settings(max_examples=60, deadline=None)
def test_freshness_gate_passes_exactly_within_the_window(
    age_seconds: int, limit_hours: int
) -> None:
    config = GateConfig(max_data_age=timedelta(hours=limit_hours))
    reference = DATA_THROUGH + timedelta(seconds=age_seconds)
    result = freshness_gate(EVIDENCE, reference, config)
    assert result.passed is (0 <= age_seconds <= limit_hours * 3600)


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c_d"]), st.booleans()),
        min_size=1,
        max_size=6,
        unique_by=lambda t: t[0],
    )
)
@settings(max_examples=40, deadline=None)
def test_report_roundtrip_and_overall_verdict(outcomes: list[tuple[str, bool]]) -> None:
    results = tuple(GateResult(name, ok, f"{name} summary", {"n": 1.0}) for name, ok in outcomes)
    report = GateReport(results, DATA_THROUGH, DATA_THROUGH, GateConfig(), "3", "1")
    assert report.passed is all(ok for _, ok in outcomes)
    assert GateReport.from_dict(report.to_dict()) == report
    tags = report.to_tags()
    assert tags["dynamargin.gates.passed"] == ("true" if report.passed else "false")
    assert all(tags[f"dynamargin.gate.{n}"] == ("pass" if ok else "fail") for n, ok in outcomes)


def test_missing_columns_and_models_are_clear_errors() -> None:
    good = evidence()
    broken = CandidateEvidence(
        "lgbm", good.evaluation, good.forecasts.drop(columns="rv"), DATA_THROUGH, 24
    )
    with pytest.raises(ReviewInputError, match="rv"):
        evaluate_gates(broken, None, reference_time=DATA_THROUGH)
    with pytest.raises(ReviewInputError, match="no forecasts for model 'garch'"):
        evaluate_gates(good, None, GateConfig(baselines=("garch",)), reference_time=DATA_THROUGH)


EVIDENCE = evidence()


def _shadow_of_har(noise: float) -> CandidateEvidence:
    """A challenger that is HAR plus a little noise: slightly worse, not significantly."""
    frame = forecasts_frame()
    har = frame.loc[frame["model"] == "har"].reset_index(drop=True)
    rng = np.random.default_rng(3)
    lgbm = har.assign(
        model="lgbm", variance=har["variance"] * np.exp(rng.normal(0, noise, len(har)))
    )
    frame = pd.concat([frame.loc[frame["model"] != "lgbm"], lgbm], ignore_index=True)
    return CandidateEvidence(
        model="lgbm",
        evaluation=evaluation_dict(frame),
        forecasts=frame,
        data_through=DATA_THROUGH,
        horizon_hours=24,
        leakage_passed=True,
        version="2",
    )


def test_a_challenger_worse_than_a_baseline_fails_whatever_the_dm_test_says() -> None:
    challenger = _shadow_of_har(0.05)
    report = evaluate_gates(challenger, None, reference_time=DATA_THROUGH)
    gate = report.gate("qlike_vs_har")
    assert gate.metrics["qlike_challenger"] > gate.metrics["qlike_other"]
    assert gate.metrics["p_worse"] > 0.05, "the DM test alone would not have blocked it"
    assert not gate.passed and "whatever the DM test says" in gate.summary
    assert not report.passed


def test_a_baseline_registered_as_challenger_passes_its_own_gate_and_says_so() -> None:
    frame = forecasts_frame()
    challenger = CandidateEvidence(
        model="har",
        evaluation=evaluation_dict(frame),
        forecasts=frame,
        data_through=DATA_THROUGH,
        horizon_hours=24,
        leakage_passed=True,
    )
    gate = evaluate_gates(challenger, None, reference_time=DATA_THROUGH).gate("qlike_vs_har")
    assert gate.passed and "best baseline was registered instead" in gate.summary


def test_the_training_flow_registers_the_best_baseline_when_the_primary_lost() -> None:
    from models.review import pooled_qlike
    from models.training import choose_candidate
    from models.walkforward import EvaluationConfig, EvaluationResult

    config = EvaluationConfig(models=("ewma", "har", "lgbm"), primary="lgbm")
    losing = _shadow_of_har(0.05).forecasts
    pooled = pooled_qlike(losing, ["ewma", "har", "lgbm"])
    assert pooled["lgbm"] > pooled["har"] < pooled["ewma"]
    chosen, reason = choose_candidate(EvaluationResult(metrics={}, forecasts=losing), config)
    assert chosen == "har" and "registered instead" in reason
    winning = forecasts_frame(challenger_error=0.1)
    chosen, _ = choose_candidate(EvaluationResult(metrics={}, forecasts=winning), config)
    assert chosen == "lgbm"
