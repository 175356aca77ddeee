"""The per-horizon DM gates and the tail-coverage (Kupiec) gates of the review."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from models.evaluation import kupiec_pof
from models.horizons import horizon_summary
from models.review import (
    CandidateEvidence,
    GateConfig,
    GateReport,
    evaluate_gates,
    flatten_evaluation,
    horizon_gates,
    quantile_coverage_gates,
)
from models.walkforward import EvaluationResult
from tests.models.registry_factory import DATA_THROUGH, evaluation_dict, forecasts_frame


def _horizon_result(horizon: int, error: float, seed: int) -> EvaluationResult:
    """Hourly forecasts of two assets: ``har`` with noise 0.3, ``lgbm`` with ``error``."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-01", periods=24 * 120, freq="1h", tz="UTC")
    rows = []
    for asset in ("BTCUSDT", "ETHUSDT"):
        truth = np.exp(np.cumsum(rng.normal(0, 0.02, ts.size))) * 1e-3
        rv = truth * rng.chisquare(5, ts.size) / 5
        for model, noise in (("har", 0.3), ("lgbm", error)):
            variance = truth * np.exp(rng.normal(0, noise, ts.size))
            rows.append(
                pd.DataFrame(
                    {"ts": ts, "asset": asset, "model": model, "variance": variance, "rv": rv}
                )
            )
    forecasts = pd.concat(rows, ignore_index=True)
    mean = {
        m: float(forecasts.loc[forecasts.model == m, "variance"].mean()) for m in ("har", "lgbm")
    }
    return EvaluationResult(metrics={"mean": {"qlike": mean}}, forecasts=forecasts)


def _evidence(evaluation: dict, model: str = "lgbm") -> CandidateEvidence:
    frame = forecasts_frame()
    return CandidateEvidence(
        model=model,
        evaluation={**evaluation_dict(frame), **evaluation},
        forecasts=frame,
        data_through=DATA_THROUGH,
        horizon_hours=24,
        leakage_passed=True,
    )


def test_one_dm_gate_per_horizon_and_a_worse_horizon_fails() -> None:
    summary = horizon_summary(
        {1: _horizon_result(1, 0.05, 0), 4: _horizon_result(4, 0.6, 1)}, primary="lgbm"
    )
    gates = {g.name: g for g in horizon_gates(_evidence({"horizons": summary}), GateConfig())}
    assert list(gates) == ["qlike_vs_har_1h", "qlike_vs_har_4h"]
    good, bad = gates["qlike_vs_har_1h"], gates["qlike_vs_har_4h"]
    assert good.passed and good.metrics["p_better"] < 0.05 and good.metrics["hac_lag"] >= 0
    assert not bad.passed and bad.metrics["qlike_challenger"] > bad.metrics["qlike_other"]
    # Each asset's DM statistic and p-value are listed beside the pooled decision.
    for asset in ("BTCUSDT", "ETHUSDT"):
        assert 0 <= good.metrics[f"dm_pvalue.{asset}"] <= 1
        assert good.metrics[f"dm_statistic.{asset}"] < 0
    assert summary["4"]["pooled"]["hac_lag"] >= 3  # at least H - 1


def test_the_horizon_gates_pass_for_a_registered_baseline() -> None:
    summary = horizon_summary({4: _horizon_result(4, 0.6, 1)}, primary="lgbm")
    (gate,) = horizon_gates(_evidence({"horizons": summary}, model="har"), GateConfig())
    assert gate.passed and "baseline har itself" in gate.summary


def _tails(p_values: dict[str, tuple[int, int]]) -> dict:
    assets = {}
    for asset, (x, n) in p_values.items():
        test = kupiec_pof(x, n, 0.01)
        numbers = {
            "n": n,
            "exceptions": x,
            "rate": x / n,
            "kupiec_lr": test.statistic,
            "kupiec_p": test.pvalue,
            "pinball": 1e-3,
            "mean_quantile": 0.05,
        }
        assets[asset] = {"tail_lgbm": numbers, "tail_scaled": numbers}
    return {
        "adverse_long_24h": {"primary": "tail_lgbm", "assets": assets},
        "timing": {"total": 1.0},
    }


def test_a_tail_with_too_many_exceptions_on_one_asset_fails_its_coverage_gate() -> None:
    good = _tails({"BTCUSDT": (9, 900), "ETHUSDT": (7, 900)})
    (gate,) = quantile_coverage_gates(_evidence({"tails": good}), GateConfig())
    assert gate.name == "quantile_coverage_adverse_long_24h" and gate.passed
    assert gate.metrics["kupiec_p.BTCUSDT"] == pytest.approx(1.0)
    bad = _tails({"BTCUSDT": (9, 900), "ETHUSDT": (25, 900)})
    (gate,) = quantile_coverage_gates(_evidence({"tails": bad}), GateConfig())
    assert not gate.passed and "ETHUSDT" in gate.summary and "BTCUSDT" not in gate.summary
    assert gate.metrics["kupiec_lr.ETHUSDT"] == pytest.approx(kupiec_pof(25, 900).statistic)
    # Too few exceptions fail too: an over-wide quantile ties up margin for nothing.
    (gate,) = quantile_coverage_gates(
        _evidence({"tails": _tails({"BTCUSDT": (0, 900)})}), GateConfig()
    )
    assert not gate.passed


def test_the_review_runs_the_new_gates_and_a_failure_blocks_promotion() -> None:
    summary = horizon_summary({12: _horizon_result(12, 0.05, 2)}, primary="lgbm")
    tails = _tails({"BTCUSDT": (9, 900), "ETHUSDT": (25, 900)})
    report = evaluate_gates(
        _evidence({"horizons": summary, "tails": tails}),
        None,
        reference_time=DATA_THROUGH + timedelta(hours=1),
    )
    names = [r.name for r in report.results]
    assert "qlike_vs_har_12h" in names and "quantile_coverage_adverse_long_24h" in names
    assert not report.passed
    assert [r.name for r in report.failures] == ["quantile_coverage_adverse_long_24h"]
    again = GateReport.from_dict(report.to_dict())
    assert again.gate("qlike_vs_har_12h").metrics["p_better"] == pytest.approx(
        report.gate("qlike_vs_har_12h").metrics["p_better"]
    )


def test_the_gates_read_dotted_evaluations_too() -> None:
    tails = _tails({"BTCUSDT": (9, 900)})
    flat = flatten_evaluation({"tails": tails})
    (gate,) = quantile_coverage_gates(_evidence(flat), GateConfig())
    assert gate.passed and not math.isnan(gate.metrics["kupiec_p.BTCUSDT"])


def test_the_review_report_lists_each_gate_per_asset_with_its_statistic_and_p_value() -> None:
    from models.review_report import gate_detail_table

    summary = horizon_summary({12: _horizon_result(12, 0.05, 2)}, primary="lgbm")
    tails = _tails({"BTCUSDT": (9, 900), "ETHUSDT": (25, 900)})
    report = evaluate_gates(
        _evidence({"horizons": summary, "tails": tails}),
        None,
        reference_time=DATA_THROUGH + timedelta(hours=1),
    )
    table = gate_detail_table(report).set_index(["gate", "asset"])
    eth = table.loc[("quantile_coverage_adverse_long_24h", "ETHUSDT")]
    assert eth["exceptions"] == 25 and eth["p-value"] == pytest.approx(kupiec_pof(25, 900).pvalue)
    dm = table.loc[("qlike_vs_har_12h", "BTCUSDT")]
    assert dm["statistic"] < 0 and 0 <= dm["p-value"] <= 1
