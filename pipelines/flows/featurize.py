"""``features_flow``: the point-in-time feature matrix, built per asset in parallel.

The three stages of :mod:`features.build` become tasks: stage 1 and stage 3 are mapped over
assets (threads by default, Dask workers with ``--runner dask``), stage 2 reduces them to
the market context. Both mapped stages are cached by a content hash of their inputs, so a
re-run on unchanged data reuses every asset's frame. The flow also runs the look-ahead
check (the data after a cutoff are shuffled; the features at and before it must not
change) whose outcome the review's leakage gate reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task, unmapped
from prefect.context import TaskRunContext

from features.bars import interval_to_timedelta
from features.build import (
    FEATURE_LIBRARY_VERSION,
    AssetInputs,
    FeatureConfig,
    FeatureSet,
    MarketContext,
    assemble_feature_set,
    asset_inputs,
    build_asset_features,
    build_cross_asset_features,
    build_features,
    build_market_context,
)
from features.market import MarketData
from pipelines.flows.config import DataConfig
from pipelines.flows.digest import content_digest
from pipelines.flows.runtime import IO_TASK, FlowInputError, flow_settings
from pipelines.stores import market_store

FEATURE_CACHE_EXPIRATION = timedelta(days=30)
LEAKAGE_CUTOFFS = 2
"""Cutoffs of the look-ahead check (each costs two feature builds)."""


@dataclass(frozen=True)
class FeaturesOutput:
    """A persisted feature set and what it was built from.

    Attributes
    ----------
    path
        Directory with ``features.parquet`` and ``catalog.json``.
    feature_set_hash
        Hash of the feature definitions (not the data).
    data_digest
        Content hash of the market data the matrix was built from.
    assets, rows
        Assets and rows of the matrix.
    data_start, data_through
        First bar open and last bar close (UTC ISO).
    source
        Where the market came from.
    leakage_passed, leakage_detail
        Outcome of the look-ahead check.
    """

    path: str
    feature_set_hash: str
    data_digest: str
    assets: tuple[str, ...]
    rows: int
    data_start: str
    data_through: str
    source: str
    leakage_passed: bool
    leakage_detail: str

    def load(self) -> FeatureSet:
        """Read the persisted feature set (hash-checked)."""
        return FeatureSet.from_parquet(self.path)


def _input_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Cache key of a feature stage: task name, feature library version, input content."""
    name = context.task.name
    return f"{name}-{content_digest(FEATURE_LIBRARY_VERSION, name, parameters)}"


@task(**IO_TASK)
def load_market(workdir: str, data: DataConfig) -> MarketData:
    """Read the market bundle of ``data``'s assets and period from the store."""
    return market_store(flow_settings(workdir)).read_market(
        data.interval, list(data.assets) if data.assets else None, data.start, data.end
    )


@task(
    cache_key_fn=_input_cache_key,
    persist_result=True,
    cache_expiration=FEATURE_CACHE_EXPIRATION,
    task_run_name="stage-1-{inputs.asset}",
)
def asset_features(
    inputs: AssetInputs, config: FeatureConfig, interval: str, end: pd.Timestamp | None
) -> pd.DataFrame:
    """Stage 1 of one asset (:func:`features.build.build_asset_features`)."""
    return build_asset_features(inputs, config, interval, end=end)


@task
def market_context(
    frames: list[pd.DataFrame], config: FeatureConfig, interval: str
) -> MarketContext:
    """Stage 2 (:func:`features.build.build_market_context`)."""
    return build_market_context(frames, config, interval)


@task(cache_key_fn=_input_cache_key, persist_result=True, cache_expiration=FEATURE_CACHE_EXPIRATION)
def cross_asset_features(
    frame: pd.DataFrame, context: MarketContext, config: FeatureConfig, interval: str
) -> pd.DataFrame:
    """Stage 3 of one asset (:func:`features.build.build_cross_asset_features`)."""
    return build_cross_asset_features(frame, context, config, interval)


@task(cache_key_fn=_input_cache_key, persist_result=True, cache_expiration=FEATURE_CACHE_EXPIRATION)
def lookahead_check(market: MarketData, config: FeatureConfig, cutoffs: int) -> tuple[bool, str]:
    """Perturb the data after each cutoff; the features at or before it must not change.

    Calls :func:`models.leakage.check_no_lookahead` on the full feature build.

    Returns
    -------
    tuple
        ``(passed, detail)``; ``detail`` names each leaky column with its first asset/time.
    """
    from models.leakage import check_no_lookahead

    # Funding is stamped at its settlement time, which is the close of the bar before it:
    # compare rows up to one bar before each cutoff, whose information ends at the cutoff.
    report = check_no_lookahead(
        lambda m: build_features(m, config).frame,
        market,
        cutoffs=cutoffs,
        margin=interval_to_timedelta(market.interval),
    )
    return report.passed, report.summary()


@task(**IO_TASK)
def persist_feature_set(feature_set: FeatureSet, directory: Path) -> Path:
    """Write the feature set atomically (:meth:`FeatureSet.to_parquet`)."""
    return feature_set.to_parquet(directory)


@flow(name="features", log_prints=True)
def features_flow(
    workdir: str | None = None,
    data: DataConfig | None = None,
    config: FeatureConfig | None = None,
) -> FeaturesOutput:
    """Build, check and persist the feature matrix of the stored market.

    Parameters
    ----------
    workdir
        Work dir.
    data
        Assets, interval and period to read from the store.
    config
        Feature windows (defaults: :class:`features.build.FeatureConfig`).

    Returns
    -------
    FeaturesOutput

    Raises
    ------
    FlowInputError
        If the store holds no bars for the selection.
    """
    data = data or DataConfig()
    config = config or FeatureConfig()
    settings = flow_settings(workdir)
    logger = get_run_logger()
    market = load_market(str(settings.workdir), data)
    if market.bars.empty:
        raise FlowInputError(
            f"no {data.interval} bars in {settings.workdir / 'store'} for assets "
            f"{data.assets or 'all'} in [{data.start}, {data.end}); run the ingest flow first"
        )
    units = asset_inputs(market)
    end = market.bars["ts"].max()
    stage_one = asset_features.map(
        units, unmapped(config), unmapped(market.interval), unmapped(end)
    )
    context = market_context(stage_one, config, market.interval)
    frames = cross_asset_features.map(
        stage_one, unmapped(context), unmapped(config), unmapped(market.interval)
    ).result()
    feature_set = assemble_feature_set(frames, config, market.interval, source=market.source)
    passed, detail = lookahead_check(market, config, LEAKAGE_CUTOFFS)
    (logger.info if passed else logger.error)("look-ahead check: %s", detail)
    digest = content_digest(
        market.bars, market.funding, market.perp, market.positioning, market.events
    )
    directory = settings.features_dir / f"{feature_set.feature_set_hash[:12]}-{digest[:12]}"
    path = persist_feature_set(feature_set, directory)
    step = interval_to_timedelta(market.interval)
    logger.info(
        "features: %d rows x %d columns -> %s",
        len(feature_set.frame),
        len(feature_set.feature_names),
        path,
    )
    return FeaturesOutput(
        path=str(path),
        feature_set_hash=feature_set.feature_set_hash,
        data_digest=digest,
        assets=tuple(market.assets),
        rows=len(feature_set.frame),
        data_start=market.bars["ts"].min().isoformat(),
        data_through=(end + step).isoformat(),
        source=market.source,
        leakage_passed=passed,
        leakage_detail=detail,
    )
