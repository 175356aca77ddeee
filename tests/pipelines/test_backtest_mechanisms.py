"""Margin mechanisms reach the backtest through its config and CLI, and every result carries
the ratchet and procyclicality figures."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipelines.cli import app


def test_policy_options_reach_the_replay_and_the_summary_carries_the_figures(
    workdir: Path,
) -> None:
    out = workdir / "out.json"
    args = [
        "--workdir", str(workdir), "backtest", "--policies", "static,oracle", "--seeds", "1",
        "--traders", "2000", "--synthetic-assets", "1", "--no-mlflow", "--json", str(out),
        "--policy-options", "apc_buffer,new_risk_at_once,crowding",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    config = summary["config"]
    assert config["policy_variant"] == "new_risk_at_once+apc_buffer+crowding"
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


def test_the_crowding_overlay_reads_point_in_time_features_of_the_market() -> None:
    from features.synthetic import SyntheticMarketConfig, generate_market
    from pipelines.policy_signals import crowding_signals
    from serving.mechanisms import with_mechanisms
    from serving.policy import PolicyConfig

    market = generate_market(SyntheticMarketConfig(n_assets=2, days=60))
    assets = tuple(sorted(market.bars["asset"].astype(str).unique()))
    index = pd.DatetimeIndex(sorted(market.bars["ts"].unique()))
    assert crowding_signals(market, assets, index, PolicyConfig(), print) is None
    policy = with_mechanisms(PolicyConfig(), ["crowding"])
    signals = crowding_signals(market, assets, index, policy, lambda _m: None)
    assert signals is not None and set(signals) == set(assets)
    for table in signals.values():
        assert list(table.columns) == ["oi_growth", "funding_z"]
        assert table.index.equals(index)
        assert table["funding_z"].notna().any()  # the synthetic market has funding
    # Point in time: truncating the market changes no value before the cut.
    cut = index[len(index) // 2]
    # Bars are stamped at their open (known one bar later), funding and positioning at the
    # instant they become known: everything known by the close of the last bar kept.
    known_by = {"bars": cut, "perp": cut, "funding": cut + pd.Timedelta(hours=1)}
    known_by["positioning"] = known_by["funding"]
    cuts = {
        name: getattr(market, name)[getattr(market, name)["ts"] < limit]
        for name, limit in known_by.items()
        if "ts" in getattr(market, name)
    }
    early = replace(market, **cuts)
    truncated = crowding_signals(early, assets, index[index < cut], policy, lambda _m: None)
    assert truncated is not None
    for asset in assets:
        pd.testing.assert_frame_equal(
            truncated[asset], signals[asset].loc[index < cut], check_freq=False
        )


def test_loss_based_im_reads_the_calibrated_tail_forecast_on_the_grid() -> None:
    from features.synthetic import SyntheticMarketConfig, generate_market
    from models.tails import TailConfig
    from pipelines.errors import PipelineError
    from pipelines.policy_signals import policy_signals, tail_signals
    from serving.mechanisms import with_mechanisms
    from serving.policy import PolicyConfig

    market = generate_market(SyntheticMarketConfig(n_assets=2, days=200))
    assets = tuple(sorted(market.bars["asset"].astype(str).unique()))
    every = pd.DatetimeIndex(sorted(market.bars["ts"].unique()))
    index = every[every >= every[-1] - pd.Timedelta(days=30)]
    policy = with_mechanisms(PolicyConfig(liquidation_horizon_hours=6.0), ["loss_im"])
    assert tail_signals(market, assets, index, PolicyConfig(), print) is None
    config = TailConfig(level=0.99, refit="QS", history_days=60, warmup_months=1)
    tails = tail_signals(market, assets, index, policy, lambda _m: None, config)
    assert tails is not None and set(tails) == set(assets)
    for table in tails.values():
        assert table.index.equals(index)
        known = table["tail_quantile"].dropna()
        assert len(known) > len(index) // 2
        assert (known > 0).all() and (known < 1).all()  # a loss fraction of notional
    both = policy_signals(market, assets, index, with_mechanisms(policy, ["crowding"]), print)
    assert both is not None
    assert list(both[assets[0]].columns) == ["oi_growth", "funding_z", "tail_quantile"]
    with pytest.raises(PipelineError, match="whole number"):
        odd = with_mechanisms(PolicyConfig(liquidation_horizon_hours=2.5), ["loss_im"])
        tail_signals(market, assets, index, odd, print)
