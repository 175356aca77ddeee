"""The backtest wiring: the oracle bound at equal margin, the CLI, the replay TOML, real data."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from liquidation.simulate import (
    ReplayConfig,
    ReplayInputError,
)
from pipelines.backtest import run_backtest
from pipelines.cli import app
from pipelines.commands.backtest import EXPERIMENT
from pipelines.flows.config import BacktestConfig, DataConfig, replay_config_from_toml
from serving.policy import PolicyConfig

SEEDS = [0, 1, 2]


def replay_config(n_traders: int) -> ReplayConfig:
    base = ReplayConfig()
    return replace(base, book=replace(base.book, n_traders=n_traders))


@pytest.mark.parametrize("rule", ["follow", "stress"])
def test_oracle_is_never_worse_than_static_at_equal_margin(tmp_path: Path, rule: str) -> None:
    # Holds for every rule that keeps a forced de-risking channel (``follow``, ``stress``).
    # ``initial-only`` removes it, and then even perfect foresight of the 24h volatility
    # need not beat a static level on bad debt: the losses come from jumps that a calm
    # market's margin must already cover (see the backtest module docstring).
    config = BacktestConfig(
        policies=("static", "oracle"),
        seeds=len(SEEDS),
        replay=replace(replay_config(15_000), maintenance_rule=rule, stress_threshold=1.5),
        history_days=10,
    )
    market = DataConfig(synthetic_assets=3, synthetic_days=120)
    result = run_backtest(market, config, 24, PolicyConfig(), tmp_path / "cache")
    oracle = result.series["oracle"]
    static = result.equal_margin_series["oracle"]
    assert (oracle[0].multiplier >= 1.5).any(), "the stress branch must be exercised"
    for o, s in zip(oracle, static, strict=True):
        assert o.seed == s.seed
        assert o.bad_debt.sum() <= s.bad_debt.sum(), f"seed {o.seed}: the simulator is wrong"
    em = result.summary["equal_margin"]["oracle"]
    assert abs(em["achieved_mean_im"] / em["target_mean_im"] - 1) <= config.equal_margin.tolerance
    assert em["ratio"]["bad_debt"] <= 1.0


@pytest.mark.slow
def test_cli_writes_json_report_and_mlflow_run_with_the_model_policy(workdir: Path) -> None:
    out = workdir / "out.json"
    args = [
        "--workdir", str(workdir), "backtest", "--policies", "static,ewma,model,oracle",
        "--seeds", "2", "--traders", "4000", "--synthetic-assets", "1", "--json", str(out),
        "--report-dir", str(workdir / "report"), "--window", "late=2024-10-20..2024-10-25",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    for name in ("static", "ewma", "model", "oracle"):
        for key in ("bad_debt", "positions_liquidated", "waterfall_steps", "mean_im", "topups"):
            assert isinstance(summary["policies"][name][key], float)
        assert "late" in summary["policies"][name]["windows"]
    for name in ("ewma", "model", "oracle"):
        ratio = summary["equal_margin"][name]["ratio"]
        assert set(ratio) >= {"bad_debt", "positions_liquidated", "liquidated_notional"}
    assert summary["forecasts"]["cache_hit"] is False
    assert "no registry champion" in summary["forecasts"]["model_source"]
    html = (workdir / "report" / "backtest.html").read_text()
    assert html.count("data:image/png;base64,") == 4
    assert "Risk-capital frontier" in html and "Oracle gain captured" in html
    for name in ("ewma", "model"):
        gains = summary["equal_margin"][name]["oracle_gain_captured"]
        assert set(gains) == {"overall", "first_jump", "aftershock"}
        assert len(gains["overall"]["seeds"]) == 2
        scale = summary["equal_margin"][name]["oracle_at_margin"]["scale"]
        assert scale > 0
    assert {"static", "ewma", "model", "oracle"} <= set(summary["frontier"])
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None and str(workdir) in experiment.artifact_location
    runs = mlflow.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    assert "metrics.policies.model.bad_debt" in runs.columns
    # A rerun takes the walk-forward forecasts from the cache.
    again = CliRunner().invoke(app, [*args[:-2], "--no-mlflow"])
    assert again.exit_code == 0, again.output
    assert json.loads(out.read_text())["forecasts"]["cache_hit"] is True


def test_cli_rejects_an_unknown_maintenance_rule_with_one_clear_line(workdir: Path) -> None:
    args = ["--workdir", str(workdir), "backtest", "--maintenance-rule", "sometimes"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "maintenance_rule 'sometimes' is unknown" in result.output
    assert "Traceback" not in result.output


def test_cli_stress_rule_reaches_the_replay_config(workdir: Path) -> None:
    out = workdir / "out.json"
    args = [
        "--workdir", str(workdir), "backtest", "--policies", "static,oracle", "--seeds", "1",
        "--traders", "2000", "--synthetic-assets", "1", "--maintenance-rule", "stress",
        "--stress-threshold", "1.5", "--no-mlflow", "--json", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    replay = json.loads(out.read_text())["config"]["replay"]
    assert replay["maintenance_rule"] == "stress"
    assert replay["stress_threshold"] == 1.5


@pytest.mark.slow
def test_real_btc_covid_crash(shared_data: Path, tmp_path: Path) -> None:
    config = BacktestConfig(
        start="2020-02-01",
        end="2020-05-01",
        policies=("static", "ewma", "oracle"),
        seeds=2,
        replay=replay_config(20_000),
    )
    market = DataConfig(data=shared_data, assets=("BTCUSDT",))
    result = run_backtest(market, config, 24, PolicyConfig(), tmp_path / "cache")
    static = result.summary["policies"]["static"]
    covid = static["windows"]["2020-03-covid"]
    assert covid["n_bars"] == 48
    assert covid["positions_liquidated"] > 0
    assert covid["bad_debt"] >= 0.4 * static["bad_debt"], "the crash dominates the losses"
    assert result.summary["equal_margin"]["oracle"]["ratio"]["bad_debt"] <= 1.0
    ewma = result.series["ewma"][0]
    ts = pd.to_datetime(ewma.ts_ms, unit="ms", utc=True)
    in_crash = (ts >= "2020-03-12") & (ts < "2020-03-20")
    assert ewma.multiplier[0, in_crash].max() >= 1.5, "EWMA margin must rise in the crash"


def test_replay_config_is_read_from_toml_and_errors_name_the_file(tmp_path: Path) -> None:
    good = tmp_path / "replay.toml"
    good.write_text(
        "[replay]\nfund_seed_usd = 1000.0\nramp_ms = 7200000\n"
        "[replay.book]\nn_traders = 123\n[replay.asset]\nbase_imf = 0.1\n"
    )
    config = replay_config_from_toml(good)
    assert config.fund_seed_usd == 1000.0 and config.ramp_ms == 2 * 3_600_000
    assert config.book.n_traders == 123 and config.asset.base_imf == 0.1
    assert replay_config_from_toml(None) == ReplayConfig()
    bad = tmp_path / "bad.toml"
    bad.write_text("[replay.book]\nleverage_min = 0.5\n")
    with pytest.raises(ReplayInputError, match=r"bad\.toml.*leverage_min"):
        replay_config_from_toml(bad)


def test_served_snapshots_are_replayed_as_the_engine_reads_them(tmp_path: Path) -> None:
    # A real store with 24 hourly batches inside the synthetic replay window, served by a real
    # `dynamargin serve`: the replay's `served` policy is exactly the engine's reading of it.
    from datetime import UTC, datetime, timedelta

    from liquidation.snapshot_stream import multipliers_from_snapshots
    from pipelines.backtest import read_snapshots
    from tests.api.api_seeding import seed_store
    from tests.api.live_server import live_server

    workdir = tmp_path / "served"
    workdir.mkdir()
    end = datetime(2024, 9, 29, tzinfo=UTC)
    seed_store(workdir, ["BTCUSDT"], batches=24, step=timedelta(hours=1), end=end).close()
    config = BacktestConfig(policies=("static",), seeds=1, replay=replay_config(1_000))
    market = DataConfig(synthetic_assets=1, synthetic_days=330)
    with live_server(workdir) as server:
        result = run_backtest(
            market, config, 24, PolicyConfig(), tmp_path / "cache", snapshots=server.base
        )
    stream = result.summary["snapshot_streams"]["served"]
    assert stream["read"] == 24 and stream["applied"] == {"BTCUSDT": 24}
    assert stream["refused"] == {}
    paths = result.paths
    held = list(read_snapshots(str(workdir / "publications.db"), paths.assets, *_window(result)))
    expected, _ = multipliers_from_snapshots(
        held, paths.assets, paths.ts_ms, config.replay.asset,
        config.replay.ramp_ms, config.replay.engine_config(paths.assets).max_ramp_classes,
    )  # fmt: skip
    served = result.series["served"][0].multiplier
    np.testing.assert_array_equal(served, expected)
    ts = pd.to_datetime(paths.ts_ms, unit="ms", utc=True)
    published = {s["published_at"]: s["margin"]["multiplier"] for s in held}
    bar = ts.get_loc(pd.Timestamp("2024-09-28T12:00Z"))
    assert served[0, bar] == published["2024-09-28T12:00:00Z"]
    # Two hours after the last publication its snapshot has expired: the fallback, or more.
    after = ts > pd.Timestamp(end + timedelta(hours=2))
    assert (served[0, after] >= config.replay.asset.fallback_multiplier).all()
    assert result.summary["equal_margin"]["served"]["static_level"] > 0
    with pytest.raises(ReplayInputError, match="cannot read"):
        list(read_snapshots(server.base, paths.assets, *_window(result)))


def _window(result: object) -> tuple[pd.Timestamp, pd.Timestamp]:
    data = result.summary["data"]  # type: ignore[attr-defined]
    return pd.Timestamp(data["warmup_start"]), pd.Timestamp(data["end"])


def test_walkforward_start_keeps_training_history_and_always_the_month_before() -> None:
    from models.replay_forecasts import SigmaGrid
    from pipelines.backtest import TRAINING_RESERVE, walkforward_start

    class Bars:
        def __init__(self, first: str) -> None:
            self.bars = pd.DataFrame({"ts": [pd.Timestamp(first, tz="UTC")]})

    def start_of(first: str, start: str) -> pd.Timestamp:
        begin = pd.Timestamp(start, tz="UTC")
        grid = SigmaGrid(("A",), pd.date_range(begin - pd.Timedelta(days=90), begin, freq="h"))
        return walkforward_start(Bars(first), begin, grid)  # type: ignore[arg-type]

    # Long history: the whole 90-day warm grid is forecast (from a month before it).
    assert start_of("2017-08-17", "2019-01-01") == pd.Timestamp("2018-09-03", tz="UTC")
    # Short history: never later than a month before the start, never before the reserve.
    assert start_of("2024-01-01", "2024-09-27") == pd.Timestamp("2024-08-27", tz="UTC")
    mid = start_of("2024-01-01", "2024-11-15")
    assert mid == pd.Timestamp("2024-01-01", tz="UTC") + TRAINING_RESERVE
    assert start_of("2022-01-01", "2022-01-01") == pd.Timestamp("2021-12-01", tz="UTC")
