"""Margin mechanisms reach the backtest through its config and CLI, and every result carries
the ratchet and procyclicality figures."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pipelines.cli import app


def test_policy_options_reach_the_replay_and_the_summary_carries_the_figures(
    workdir: Path,
) -> None:
    out = workdir / "out.json"
    args = [
        "--workdir", str(workdir), "backtest", "--policies", "static,oracle", "--seeds", "1",
        "--traders", "2000", "--synthetic-assets", "1", "--no-mlflow", "--json", str(out),
        "--policy-options", "apc_buffer,new_risk_at_once",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    config = summary["config"]
    assert config["policy_variant"] == "new_risk_at_once+apc_buffer"
    assert config["policy"]["apc_buffer"] == 0.25 and config["policy"]["new_risk_at_once"]
    diagnostics = summary["margin_diagnostics"]
    assert set(diagnostics) == {"static", "oracle"}
    oracle = diagnostics["oracle"]
    floor, cap = config["policy"]["floor"], config["policy"]["cap"]
    assert floor <= oracle["ratchet"]["mean_multiplier"] <= cap
    assert 0 <= oracle["ratchet"]["time_at_cap"] <= 1
    for key in ("peak_to_trough_im", "largest_rise_im_24h_usd", "largest_rise_im_5d_usd"):
        assert oracle[key]["mean"] is not None and oracle[key]["mean"] >= 0
    assert oracle["largest_rise_im_5d_usd"]["mean"] >= oracle["largest_rise_im_24h_usd"]["mean"]
    # static against itself releases nothing
    assert diagnostics["static"]["calm_im_vs_static"]["mean"] == 1.0


def test_an_unknown_policy_option_is_one_clear_line(workdir: Path) -> None:
    args = ["--workdir", str(workdir), "backtest", "--policy-options", "loss_im,magic"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "unknown policy options ['magic']" in result.output
    assert "Traceback" not in result.output
