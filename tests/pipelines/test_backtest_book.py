"""`dynamargin backtest --book/--path/--impact` and their [replay] TOML keys (issue #19)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from liquidation.simulate import ReplayInputError
from pipelines.cli import app
from pipelines.flows.config import replay_config_from_toml


def test_cli_book_and_path_reach_the_replay(workdir: Path) -> None:
    out = workdir / "out.json"
    args = [
        "--workdir", str(workdir), "backtest", "--policies", "static,oracle", "--seeds", "1",
        "--traders", "2000", "--synthetic-assets", "1", "--book", "market", "--path", "bridge",
        "--impact", "on", "--no-mlflow", "--json", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    replay = summary["config"]["replay"]
    assert (replay["book_model"], replay["path"], replay["impact"]) == ("market", "bridge", "on")
    assert summary["policies"]["static"]["positions_liquidated"] >= 0


@pytest.mark.parametrize(
    ("option", "text"),
    [
        (["--book", "crowd"], "book_model 'crowd' is unknown"),
        (["--path", "teleport"], "path 'teleport' is unknown"),
        (["--impact", "sometimes"], "impact 'sometimes' is unknown"),
    ],
)
def test_cli_refuses_bad_book_options_with_one_clear_line(
    workdir: Path, option: list[str], text: str
) -> None:
    result = CliRunner().invoke(app, ["--workdir", str(workdir), "backtest", *option])
    assert result.exit_code == 1
    assert text in result.output
    assert "Traceback" not in result.output


def test_book_options_are_read_from_toml(tmp_path: Path) -> None:
    good = tmp_path / "replay.toml"
    good.write_text(
        '[replay]\nbook_model = "market"\npath = "bridge"\npath_seed = 3\n'
        "[replay.market_book]\nside_trend = 0.5\n[replay.bridge]\nn_steps = 8\n"
    )
    config = replay_config_from_toml(good)
    assert config.book_model == "market" and config.path == "bridge" and config.path_seed == 3
    assert config.market_book.side_trend == 0.5 and config.bridge.n_steps == 8
    bad = tmp_path / "bad.toml"
    bad.write_text("[replay.bridge]\nn_steps = 1\n")
    with pytest.raises(ReplayInputError, match=r"bad\.toml.*n_steps"):
        replay_config_from_toml(bad)


def _summary(workdir: Path, out: Path, *runner: str) -> dict:
    args = [
        "--workdir", str(workdir), "backtest", "--policies", "static,oracle", "--seeds", "2",
        "--traders", "1500", "--synthetic-assets", "2", "--frontier-scales", "1.5",
        "--no-mlflow", "--json", str(out), *runner,
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def test_cli_runner_dask_gives_the_local_backtest(workdir: Path) -> None:
    # Every replay of the backtest (policies, equal-margin bisections, oracle at margin,
    # frontier) on a temporary 2-process LocalCluster: the same summary as local.
    local = _summary(workdir, workdir / "local.json")
    on_dask = _summary(workdir, workdir / "dask.json", "--runner", "dask")
    for key in ("policies", "equal_margin", "comparison", "frontier"):
        assert on_dask[key] == local[key], key
    assert local["policies"]["static"]["positions_liquidated"] > 0


@pytest.mark.parametrize(
    ("option", "text"),
    [
        (["--runner", "spark"], "unknown runner 'spark'"),
        (["--dask-address", "tcp://127.0.0.1:8786"], "--dask-address needs --runner dask"),
        (["--runner", "dask", "--dask-address", "localhost:8786"], "'localhost:8786' is not"),
    ],
)
def test_cli_refuses_bad_runner_options_with_one_clear_line(
    workdir: Path, option: list[str], text: str
) -> None:
    result = CliRunner().invoke(app, ["--workdir", str(workdir), "backtest", *option])
    assert result.exit_code == 1
    assert text in result.output
    assert "Traceback" not in result.output
