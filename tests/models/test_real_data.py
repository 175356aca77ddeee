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
