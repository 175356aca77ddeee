"""A modest walk-forward on the real shared data, through the CLI (marked slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app


@pytest.mark.slow
@pytest.mark.shared_data
def test_evaluate_cli_on_real_data(shared_data: Path, workdir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    report = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "--workdir",
            str(workdir),
            "evaluate",
            "--data",
            str(shared_data),
            "--test-start",
            "2024-07-01",
            "--test-end",
            "2024-08-31",
            "--assets",
            "BTCUSDT,SOLUSDT",
            "--models",
            "ewma,har,garch,lgbm",
            "--json",
            str(out),
            "--report-dir",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    for asset in ("BTCUSDT", "SOLUSDT"):
        entry = metrics["assets"][asset]
        # A tuned HAR beats RiskMetrics-style EWMA on real hourly crypto data.
        assert entry["qlike"]["har"] < entry["qlike"]["ewma"]
        assert 0.0 < entry["qlike"]["lgbm"] < 1.0
        assert entry["var99"]["n"] >= 60 and entry["var99"]["zone"] in ("green", "yellow")
    assert "lgbm" in result.output and "BTCUSDT" in result.output
    assert (report / "calibration.png").stat().st_size > 0
    assert (report / "forecast_BTCUSDT.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.shared_data
def test_evaluate_cli_runs_a_horizon_set_with_tails(
    shared_data: Path, workdir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "horizons.json"
    result = CliRunner().invoke(
        app,
        [
            "--workdir",
            str(workdir),
            "evaluate",
            "--data",
            str(shared_data),
            "--test-start",
            "2024-08-01",
            "--test-end",
            "2024-08-31",
            "--assets",
            "BTCUSDT",
            "--models",
            "ewma,har",
            "--horizons",
            "4",
            "--tails",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    # Kept small for the suite (one horizon, EWMA as the primary); the README's figures
    # come from the full horizon set with LightGBM.
    assert set(metrics["horizons"]) == {"4"}
    pooled = metrics["horizons"]["4"]["pooled"]
    assert 0.0 < pooled["qlike_challenger"] < 2.0 and 0.0 <= pooled["p_better"] <= 1.0
    assert metrics["by_horizon"]["4"]["config"]["splitter"]["purge"] == 4
    for label in ("adverse_long_4h", "adverse_short_4h"):
        numbers = metrics["tails"][label]["assets"]["BTCUSDT"]["tail_lgbm"]
        assert numbers["n"] >= 180 and 0.0 <= numbers["kupiec_p"] <= 1.0
    names = {g["name"] for g in metrics["gates"]}
    assert {"qlike_vs_har_4h", "quantile_coverage_adverse_long_4h"} <= names
    assert "quantile_coverage_adverse_short_4h" in result.output
