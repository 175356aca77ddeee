"""``publish_flow``: champion -> forecasts on the latest data -> policy -> signed batch.

Never publishes nothing: a missing, stale or unusable champion becomes fallback
multipliers with ``status=fallback`` for every asset. The batch is appended atomically, so a
failing publish (after its retries) fails the flow and leaves the previous batch served.
The steps are calls into :mod:`models.forecast_sources` (where the forecasts come from) and
:func:`serving.publishing.sign_and_publish` (policy, signatures, store).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task

from features.build import FeatureSet, build_features
from features.market_source import read_market
from models import forecast_sources
from models.forecast_sources import ForecastBundle
from models.spec import CalibrationSpec, TargetSpec
from pipelines.flows.config import DataConfig, PublishConfig, PublishTime
from pipelines.flows.featurize import FeaturesOutput, features_flow
from pipelines.flows.runtime import IO_TASK, flow_settings
from pipelines.settings import Settings
from pipelines.stores import market_store
from serving.policy import load_policy_book
from serving.publishing import PublishedBatch, publication_mode, sign_and_publish
from serving.store import default_store_url

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


def publication_time(feature_set: FeatureSet, mode: PublishTime) -> datetime:
    """Wall-clock now, or the close of the last bar of ``feature_set``."""
    return datetime.now(UTC) if mode == "now" else feature_set.data_end


def forecast_bundle(
    settings: Settings,
    feature_set: FeatureSet,
    publish: PublishConfig,
    now: datetime,
    calibration: CalibrationSpec,
) -> ForecastBundle:
    """Forecasts of the configured source (:mod:`models.forecast_sources`)."""
    target = TargetSpec(horizon=settings.horizon_hours)
    if publish.model == "champion":
        return forecast_sources.champion_forecasts(
            settings.workdir,
            settings.mlflow_uri,
            target,
            feature_set,
            now,
            history_days=publish.history_days,
            max_age_days=publish.max_champion_age_days,
        )
    return forecast_sources.baseline_forecasts(
        publish.baseline or "", feature_set, target, calibration, history_days=publish.history_days
    )


def publish_bundle(
    settings: Settings,
    bundle: ForecastBundle,
    bars: pd.DataFrame,
    assets: list[str],
    now: datetime,
    publish: PublishConfig,
) -> PublishedBatch:
    """Sign and append one batch for ``assets`` (:func:`serving.publishing.sign_and_publish`)."""
    return sign_and_publish(
        bundle.forecasts,
        bundle.provenance,
        bars,
        assets,
        now,
        policy=load_policy_book(settings.policy_path(publish.policy_config)),
        store_url=default_store_url(settings.workdir),
        workdir=settings.workdir,
        horizon_hours=settings.horizon_hours,
        venue=publish.venue,
        mode=publication_mode(publish.publish_time),
    )


def publish_market(
    settings: Settings,
    publish: PublishConfig,
    data: DataConfig,
    calibration: CalibrationSpec | None = None,
) -> tuple[list[dict[str, object]], str]:
    """``dynamargin publish``: the flow's steps on the store (or a dump), without Prefect.

    Returns
    -------
    tuple
        The published rows (:meth:`serving.publishing.PublishedBatch.rows`) and the
        forecast source's note.
    """
    market = read_market(
        data.data, market_store(settings), data.interval, data.assets, data.start, data.end
    )
    feature_set = build_features(market)
    now = publication_time(feature_set, publish.publish_time)
    calibration = calibration or CalibrationSpec()
    bundle = forecast_bundle(settings, feature_set, publish, now, calibration)
    batch = publish_bundle(settings, bundle, market.bars, market.assets, now, publish)
    return batch.rows(), bundle.note


@task(**IO_TASK)
def forecasts_for(
    workdir: str,
    features: FeaturesOutput,
    publish: PublishConfig,
    now: datetime,
    calibration: CalibrationSpec,
) -> ForecastBundle:
    """Forecasts of the configured source on the latest features (fallback when unusable)."""
    return forecast_bundle(flow_settings(workdir), features.load(), publish, now, calibration)


@task(**IO_TASK)
def recent_bars(workdir: str, data: DataConfig, assets: list[str], now: datetime) -> pd.DataFrame:
    """Bars of the last :data:`LIQUIDITY_DAYS` before ``now`` (liquidity metrics)."""
    start = pd.Timestamp(now) - pd.Timedelta(days=LIQUIDITY_DAYS)
    return market_store(flow_settings(workdir)).read_bars(data.interval, assets, start, None)


@task(retries=2, retry_delay_seconds=[2.0, 8.0])
def sign_and_append(
    workdir: str,
    bundle: ForecastBundle,
    bars: pd.DataFrame,
    assets: list[str],
    now: datetime,
    publish: PublishConfig,
) -> PublishOutput:
    """One atomic batch (:func:`publish_bundle`)."""
    batch = publish_bundle(flow_settings(workdir), bundle, bars, assets, now, publish)
    return PublishOutput(
        batch_id=batch.receipt.batch_id,
        published_at=batch.receipt.published_at.isoformat(),
        source=bundle.source,
        note=bundle.note,
        assets=batch.rows(),
    )


@flow(name="publish", log_prints=True)
def publish_flow(
    workdir: str | None = None,
    features: FeaturesOutput | None = None,
    data: DataConfig | None = None,
    publish: PublishConfig | None = None,
    calibration: CalibrationSpec | None = None,
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
    calibration
        How a baseline source is calibrated (the champion carries its own calibration).

    Returns
    -------
    PublishOutput
    """
    data = data or DataConfig()
    publish = publish or PublishConfig()
    calibration = calibration or CalibrationSpec()
    settings = flow_settings(workdir)
    logger = get_run_logger()
    workdir_text = str(settings.workdir)
    if features is None:
        features = features_flow(workdir_text, data)
    now = publication_time(features.load(), publish.publish_time)
    assets = list(features.assets)
    bundle = forecasts_for(workdir_text, features, publish, now, calibration)
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
