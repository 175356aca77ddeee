"""``backtest_flow``: the liquidation replay of static vs dynamic margin (``pipelines.backtest``).

The replay replays the same market the pipeline trained on (the dump under ``data.data``,
or the synthetic market of the same seed) and writes its JSON summary under
``<workdir>/reports/``. The headline is the equal-margin comparison of the model policy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from contracts.files import atomic_write_text
from pipelines.backtest import BacktestRequest, run_backtest
from pipelines.flows.config import BacktestConfig, DataConfig
from pipelines.flows.runtime import IO_TASK, flow_settings

HEADLINE_METRICS = ("bad_debt", "liquidations", "liquidated_notional", "mean_im")


@dataclass(frozen=True)
class BacktestOutput:
    """Where the replay summary is and its headline.

    Attributes
    ----------
    summary_path
        JSON summary (keys of :mod:`pipelines.backtest`).
    headline
        Per dynamic policy, ``policy / static`` ratios at equal mean margin.
    window
        Replay window ``[start, end)`` (UTC).
    """

    summary_path: str
    headline: dict[str, dict[str, float | None]]
    window: tuple[str, str]


def backtest_request(data: DataConfig, backtest: BacktestConfig) -> BacktestRequest:
    """The replay of the pipeline's market with the flow's policies and seeds."""
    return BacktestRequest(
        data=data.data,
        assets=data.assets,
        start=backtest.start or (data.start if data.data is not None else None),
        end=backtest.end or data.end,
        policies=backtest.policies,
        seeds=backtest.seeds,
        refit=backtest.refit,
        synthetic_assets=data.synthetic_assets,
        synthetic_days=data.synthetic_days,
        # The replay's walk-forward warms up for 4 months before the replay window and its
        # first LightGBM fold needs a few weeks of data before that: keep two months to replay.
        synthetic_history_days=max(150, data.synthetic_days - 60),
        synthetic_seed=data.synthetic_seed,
    )


def headline(summary: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """``policy -> {metric: ratio}`` at equal mean margin, for the headline metrics."""
    return {
        name: {m: block["ratio"].get(m) for m in HEADLINE_METRICS}
        for name, block in summary.get("equal_margin", {}).items()
    }


@task
def replay(workdir: str, request: BacktestRequest) -> dict[str, Any]:
    """Run the replay (:func:`pipelines.backtest.run_backtest`)."""
    logger = get_run_logger()
    settings = flow_settings(workdir)
    return run_backtest(request, settings.cache_dir, progress=logger.info).summary


@task(**IO_TASK)
def write_summary(path: Path, summary: dict[str, Any]) -> Path:
    """Write the summary as JSON, atomically."""
    return atomic_write_text(path, json.dumps(summary, indent=2, sort_keys=True, default=str))


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
        Policies, seeds and window.

    Returns
    -------
    BacktestOutput
    """
    data = data or DataConfig()
    backtest = backtest or BacktestConfig()
    settings = flow_settings(workdir)
    summary = replay(str(settings.workdir), backtest_request(data, backtest))
    path = write_summary(settings.reports_dir / "backtest.json", summary)
    ratios = headline(summary)
    for name, values in ratios.items():
        get_run_logger().info("%s vs static at equal margin: %s", name, values)
    return BacktestOutput(str(path), ratios, (summary["data"]["start"], summary["data"]["end"]))
