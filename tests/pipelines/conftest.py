"""Fixtures of the flow tests: one Prefect test server per session, one pipeline run per module.

The server (``prefect_test_harness``) takes ~10 s to start on 2 cores, so it is shared by
the whole session; task results are persisted under a session tmp dir, never ``~/.prefect``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A session-scoped Prefect test server; yields the result-storage directory."""
    from prefect.settings import PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect-home")
    storage = home / "storage"
    with temporary_settings({PREFECT_HOME: home, PREFECT_LOCAL_STORAGE_PATH: storage}):
        with prefect_test_harness(server_startup_timeout=120):
            yield storage


def small_config(**review: object) -> object:
    """3 synthetic assets x 200 days, few trees, replay off: the pipeline in ~40 s."""
    from pipelines.flows.config import BacktestConfig, DataConfig, TrainConfig, demo_config

    config = demo_config()
    evaluation = config.train.evaluation
    fewer_trees = evaluation.estimators["lgbm"].model_copy(update={"n_estimators": 60})
    updates = {
        "data": DataConfig(synthetic_assets=3, synthetic_days=200, synthetic_seed=11),
        "backtest": BacktestConfig(enabled=False),
        "train": TrainConfig(
            evaluation=evaluation.model_copy(update={"estimators": {"lgbm": fewer_trees}}),
            test_days=60,
        ),
    }
    if review:
        updates["review"] = config.review.model_copy(update=review)
    return config.model_copy(update=updates)


@dataclass(frozen=True)
class PipelineRun:
    """A finished pipeline run and its work dir (treat as read-only; copy to modify)."""

    workdir: Path
    summary: object
    config: object


@pytest.fixture(scope="session")
def pipeline_run(prefect_server: Path, tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """The full pipeline on a small synthetic market, run once per session."""
    from pipelines.flows.pipeline import pipeline_flow

    workdir = tmp_path_factory.mktemp("pipeline") / "workdir"
    config = small_config()
    summary = pipeline_flow(str(workdir), config)
    return PipelineRun(workdir, summary, config)


def copy_workdir(run: PipelineRun, target: Path) -> Path:
    """A private copy of the pipeline's work dir (store, MLflow, publications, keys)."""
    shutil.copytree(run.workdir, target)
    return target
