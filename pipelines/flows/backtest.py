"""``backtest_flow``: the liquidation replay of static vs dynamic margin (``pipelines.backtest``).

The replay replays the same market the pipeline trained on (the dump under ``data.data``,
or the synthetic market of the same seed) and writes its JSON summary under
``<workdir>/reports/``. The headline is the equal-margin comparison of the model policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from liquidation.replay_report import write_summary
from pipelines.backtest import run_backtest
from pipelines.flows.config import BacktestConfig, DataConfig
from pipelines.flows.runtime import IO_TASK, flow_settings
from serving.policy import load_policy_book

HEADLINE_METRICS = ("bad_debt", "positions_liquidated", "liquidated_notional", "mean_im")


@dataclass(frozen=True)
class BacktestOutput:
    """Where the replay summary is and its headline.

    Attributes
    ----------
    summary_path
        JSON summary (keys of :mod:`liquidation.replay_summary`).
    headline
        Per dynamic policy, ``policy / static`` ratios at equal mean margin.
    window
        Replay window ``[start, end)`` (UTC).
    """

    summary_path: str
    headline: dict[str, dict[str, float | None]]
    window: tuple[str, str]


def headline(summary: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """``policy -> {metric: ratio}`` at equal mean margin, for the headline metrics."""
    return {
        name: {m: block["ratio"].get(m) for m in HEADLINE_METRICS}
        for name, block in summary.get("equal_margin", {}).items()
    }


@task
def replay(workdir: str, data: DataConfig, backtest: BacktestConfig) -> dict[str, Any]:
    """Run the replay (:func:`pipelines.backtest.run_backtest`)."""
    settings = flow_settings(workdir)
    policy = backtest.replay_policy(
        load_policy_book(settings.policy_path(backtest.policy_config)).default
    )
    result = run_backtest(
        data,
        backtest,
        settings.horizon_hours,
        policy,
        settings.cache_dir,
        progress=get_run_logger().info,
    )
    return result.summary


@task(**IO_TASK)
def save_summary(path: Path, summary: dict[str, Any]) -> Path:
    """Write the summary as JSON, atomically."""
    write_summary(summary, path)
    return path


@flow(name="backtest", log_prints=True)
def backtest_flow(
    workdir: str | None = None,
    data: DataConfig | None = None,
    backtest: BacktestConfig | None = None,
) -> BacktestOutput:
    """Replay static and dynamic margin on the market and write the summary.

    Parameters
    ----------
    workdir
        Work dir (``reports/`` and the walk-forward cache).
    data
        The market (dump root or synthetic parameters).
    backtest
        Policies, seeds, window and replay rules.

    Returns
    -------
    BacktestOutput
    """
    data = data or DataConfig()
    backtest = backtest or BacktestConfig()
    settings = flow_settings(workdir)
    summary = replay(str(settings.workdir), data, backtest)
    path = save_summary(settings.reports_dir / "backtest.json", summary)
    ratios = headline(summary)
    for name, values in ratios.items():
        get_run_logger().info("%s vs static at equal margin: %s", name, values)
    return BacktestOutput(str(path), ratios, (summary["data"]["start"], summary["data"]["end"]))
