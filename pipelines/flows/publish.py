"""``publish_flow``: champion -> forecasts on the latest data -> policy -> signed batch.

Never publishes nothing: a missing, stale or unusable champion becomes fallback
multipliers with ``status=fallback`` for every asset. The batch is appended atomically, so a
failing publish (after its retries) fails the flow and leaves the previous batch served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task

from pipelines import publish as glue
from pipelines.flows.config import DataConfig, PublishConfig
from pipelines.flows.featurize import FeaturesOutput, features_flow
from pipelines.flows.runtime import IO_TASK, flow_settings
from pipelines.stores import market_store

LIQUIDITY_DAYS = 31
"""Days of bars read for the liquidity metrics (their window is 30 days)."""


@dataclass(frozen=True)
class PublishOutput:
    """The committed batch.

    Attributes
    ----------
    batch_id, published_at
        Store batch id and publication time (UTC ISO).
    source, note
        Forecast source (``champion``, ``baseline:*``, ``fallback``) and why.
    assets
        One dict per asset: ``asset, status, multiplier, previous, reason, sigma, update_id``.
    """

    batch_id: int
    published_at: str
    source: str
    note: str
    assets: list[dict[str, Any]] = field(default_factory=list)


@task(**IO_TASK)
def forecasts_for(
    workdir: str,
    features: FeaturesOutput,
    publish: PublishConfig,
    now: datetime,
    calibration_days: int,
) -> glue.ForecastBundle:
    """Forecasts of the configured source on the latest features (fallback when unusable)."""
    settings = flow_settings(workdir)
    feature_set = features.load()
    if publish.model == "champion":
        return glue.champion_forecasts(
            settings,
            feature_set,
            now,
            history_days=publish.history_days,
            calibration_days=calibration_days,
            max_age_days=publish.max_champion_age_days,
        )
    kind = "har" if publish.model == "baseline:har" else "ewma"
    return glue.baseline_forecasts(
        kind,
        feature_set,
        settings.horizon_hours,
        history_days=publish.history_days,
        calibration_days=calibration_days,
    )


@task(**IO_TASK)
def recent_bars(workdir: str, data: DataConfig, assets: list[str], now: datetime) -> pd.DataFrame:
    """Bars of the last :data:`LIQUIDITY_DAYS` before ``now`` (liquidity metrics)."""
    start = pd.Timestamp(now) - pd.Timedelta(days=LIQUIDITY_DAYS)
    return market_store(flow_settings(workdir)).read_bars(data.interval, assets, start, None)


@task(retries=2, retry_delay_seconds=[2.0, 8.0])
def sign_and_append(
    workdir: str,
    bundle: glue.ForecastBundle,
    bars: pd.DataFrame,
    assets: list[str],
    now: datetime,
    publish: PublishConfig,
) -> PublishOutput:
    """One atomic batch (:func:`pipelines.publish.publish_forecasts`)."""
    batch = glue.publish_forecasts(
        flow_settings(workdir),
        bundle,
        bars,
        assets,
        now,
        policy_config=publish.policy_config,
        venue=publish.venue,
        mode=glue.publication_mode(publish.publish_time),
    )
    rows = glue.batch_rows(batch)
    return PublishOutput(
        batch_id=batch.receipt.batch_id,
        published_at=batch.receipt.published_at.isoformat(),
        source=bundle.source,
        note=bundle.note,
        assets=rows,
    )


@flow(name="publish", log_prints=True)
def publish_flow(
    workdir: str | None = None,
    features: FeaturesOutput | None = None,
    data: DataConfig | None = None,
    publish: PublishConfig | None = None,
    calibration_days: int = 60,
) -> PublishOutput:
    """Publish one signed snapshot batch for every asset.

    Parameters
    ----------
    workdir
        Work dir (publication store, keys, MLflow).
    features
        Latest features; when None the features flow runs first on ``data`` (its per-asset
        stages are cached, so an hourly run only computes what changed).
    data
        Assets and interval of the store to publish for.
    publish
        Forecast source, publication time, staleness limit, policy file.
    calibration_days
        Out-of-sample days the conformal calibration uses.

    Returns
    -------
    PublishOutput
    """
    data = data or DataConfig()
    publish = publish or PublishConfig()
    settings = flow_settings(workdir)
    logger = get_run_logger()
    workdir_text = str(settings.workdir)
    if features is None:
        features = features_flow(workdir_text, data)
    feature_set = features.load()
    now = glue.publication_time(feature_set, publish.publish_time)
    assets = list(features.assets)
    bundle = forecasts_for(workdir_text, features, publish, now, calibration_days)
    if bundle.is_fallback:
        logger.warning("publishing FALLBACK multipliers: %s", bundle.note)
    bars = recent_bars(workdir_text, data, assets, now)
    output = sign_and_append(workdir_text, bundle, bars, assets, now, publish)
    for row in output.assets:
        logger.info(
            "%s %s m=%.3f (was %.3f) %s",
            row["asset"],
            row["status"],
            row["multiplier"],
            row["previous"],
            row["reason"],
        )
    return output
