"""``pipeline_flow``: ingest -> features -> train -> review -> publish -> backtest, in order.

Each step is its own flow (a subflow here), so each is also deployable and runnable alone.
The per-asset steps (features, per-model walk-forward) run on the task runner chosen by
``runner``: the thread pool by default, a Dask cluster with ``runner="dask"``. A failing
step fails the pipeline with the step's message; publishing happens only after every
earlier step succeeded, so a bad input never changes what is published.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger

from pipelines.flows.backtest import backtest_flow
from pipelines.flows.config import PipelineConfig
from pipelines.flows.featurize import features_flow
from pipelines.flows.ingest import ingest_flow
from pipelines.flows.publish import publish_flow
from pipelines.flows.review import review_flow
from pipelines.flows.runtime import flow_settings
from pipelines.flows.train import train_flow
from pipelines.runners import RunnerName, make_task_runner
from pipelines.summary import PipelineSummary


@flow(name="pipeline", log_prints=True)
def pipeline_flow(
    workdir: str | None = None,
    config: PipelineConfig | None = None,
    runner: RunnerName = "threads",
    dask_address: str | None = None,
) -> PipelineSummary:
    """Run every step in order and return the summary.

    Parameters
    ----------
    workdir
        Work dir (everything is written under it).
    config
        Data, training, review, publishing and replay parameters.
    runner
        ``threads`` (default) or ``dask`` for the per-asset and per-model tasks.
    dask_address
        Scheduler of an existing Dask cluster (``tcp://host:8786``); without it ``dask``
        starts a temporary 2-worker local cluster per step.

    Returns
    -------
    PipelineSummary
    """
    config = config or PipelineConfig()
    settings = flow_settings(workdir)
    logger = get_run_logger()
    root = str(settings.workdir)

    def parallel(step: Any) -> Any:
        # A fresh runner per step: a task runner is entered once per flow run.
        return step.with_options(task_runner=make_task_runner(runner, dask_address=dask_address))

    ingested = ingest_flow(root, config.data)
    features = parallel(features_flow)(root, config.data)
    trained = parallel(train_flow)(features, root, config.train)
    reference: datetime | None = None
    if config.publish.publish_time == "data-end":
        reference = pd.Timestamp(features.data_through).to_pydatetime()
    reviewed = review_flow(trained.version, root, config.review, reference)
    published = publish_flow(
        root, features, config.data, config.publish, config.train.evaluation.calibration
    )
    replayed = (
        backtest_flow(root, config.data, config.backtest) if config.backtest.enabled else None
    )
    logger.info("pipeline done: champion %s, batch %d", reviewed.champion, published.batch_id)
    return PipelineSummary(
        workdir=root,
        ingest=ingested,
        features=features,
        train=trained,
        review=reviewed,
        publish=published,
        backtest=replayed,
        mlflow_uri=settings.mlflow_uri,
    )
