"""Publishing glue: forecasts on the latest data -> policy -> one signed snapshot batch.

Used by ``publish_flow`` and by ``dynamargin publish``. Three forecast sources:

* ``champion``: ``models:/dynamargin-vol-<H>h@champion`` (or its last-known-good copy). Its
  VaR/ES and sigma interval are calibrated by split conformal on the champion's own
  out-of-sample walk-forward forecasts logged with its run, never on in-sample fits.
* ``baseline:har`` / ``baseline:ewma``: fitted on the data before a calibration window,
  calibrated on that window (out of sample), then forecasting the latest bars.
* fallback: when the champion is missing, stale, or cannot be calibrated, no forecast is
  handed to the policy, which then publishes its conservative fallback multiplier with
  ``status=fallback`` for every asset. Something is always published.

:func:`publish_forecasts` calls :func:`serving.publishing.publish_batch`, which is atomic:
a failing publish leaves the previous batch served.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from features.bars import interval_to_timedelta
from features.build import FeatureSet
from features.market import MarketData
from models.conformal import CalibrationError, calibrate
from models.forecast import FORECAST_COLUMNS, validate_forecast_frame
from models.review import FORECAST_COLUMN, REALIZED_COLUMN
from pipelines.flows.config import PublishConfig
from pipelines.settings import Settings
from serving.keys import load_signing_keys
from serving.policy import load_policy_book
from serving.publishing import ProvenanceInfo, PublishedBatch, publish_batch
from serving.risk_metrics import liquidity_metrics
from serving.signing import SnapshotSigner
from serving.store import PublicationStore, StoreMode, default_store_url

ForecastSource = Literal["champion", "baseline:har", "baseline:ewma"]

logger = logging.getLogger(__name__)


class PublishInputError(RuntimeError):
    """The data handed to the publisher cannot produce a batch (no bars, no assets)."""


@dataclass(frozen=True)
class ForecastBundle:
    """Forecasts to publish and where they came from.

    Attributes
    ----------
    forecasts
        Forecast-contract frame (may be empty: every asset then gets the fallback).
    provenance
        Model name, version, MLflow run and feature-set hash stamped on the snapshots.
    source
        ``champion``, ``baseline:har``, ``baseline:ewma`` or ``fallback``.
    note
        Why this source (e.g. ``champion v3 from the registry``, ``no @champion``).
    """

    forecasts: pd.DataFrame
    provenance: ProvenanceInfo
    source: str
    note: str

    @property
    def is_fallback(self) -> bool:
        return self.source == "fallback"


def publication_time(feature_set: FeatureSet, mode: Literal["now", "data-end"]) -> datetime:
    """Wall-clock now, or the close of the last bar of ``feature_set``."""
    if mode == "now":
        return datetime.now(UTC)
    step = interval_to_timedelta(feature_set.interval)
    return (feature_set.frame["ts"].max() + step).to_pydatetime()


def publication_mode(mode: Literal["now", "data-end"]) -> StoreMode:
    """The store mode a publication time belongs in: ``now`` is live, ``data-end`` (an
    as-of time) is a replay; the store refuses the other (see :mod:`serving.store`)."""
    return "live" if mode == "now" else "replay"


def empty_forecasts() -> pd.DataFrame:
    """A Forecast-contract frame with no rows."""
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in FORECAST_COLUMNS})
    frame["ts"] = pd.Series(dtype="datetime64[ns, UTC]")
    frame["asset"] = pd.Series(dtype="object")
    frame["model"] = pd.Series(dtype="object")
    frame["model_version"] = pd.Series(dtype="object")
    return frame[list(FORECAST_COLUMNS)]


def fallback_bundle(note: str, feature_set: FeatureSet | None = None) -> ForecastBundle:
    """No forecasts: the policy publishes its fallback multiplier for every asset."""
    provenance = ProvenanceInfo(
        model_name="fallback",
        model_version="rule-based",
        feature_set_hash=None if feature_set is None else feature_set.feature_set_hash,
    )
    return ForecastBundle(empty_forecasts(), provenance, "fallback", note)


def champion_forecasts(
    settings: Settings,
    feature_set: FeatureSet,
    now: datetime,
    *,
    history_days: int,
    calibration_days: int,
    max_age_days: float,
) -> ForecastBundle:
    """Forecasts of the ``@champion`` on the latest ``history_days`` of features.

    Any reason the champion cannot be used (none registered, registry and local copy both
    unreachable, stale, no out-of-sample evidence to calibrate on) becomes a fallback
    bundle whose ``note`` says why.
    """
    from models.champion import NoChampionError, default_cache_dir, load_champion
    from models.registry import MlflowStore, registered_model_name
    from models.tracking import TrackingError, read_evidence

    store = MlflowStore.for_workdir(settings.workdir, settings.mlflow_uri)
    name = registered_model_name(settings.horizon_hours)
    try:
        champion = load_champion(store, name, default_cache_dir(settings.workdir))
    except NoChampionError as exc:
        return fallback_bundle(f"no champion: {exc}", feature_set)
    if champion.run_id is None:
        return fallback_bundle(f"champion v{champion.version} has no run to calibrate on")
    try:
        evidence = read_evidence(store, champion.run_id, champion.version).evidence
    except TrackingError as exc:
        return fallback_bundle(f"champion v{champion.version}: {exc}", feature_set)
    through = pd.Timestamp(evidence.data_through)
    age_days = (pd.Timestamp(now) - through) / pd.Timedelta(days=1)
    if age_days > max_age_days:
        return fallback_bundle(
            f"champion v{champion.version} is stale: trained on data through {through} "
            f"({age_days:.1f} days before {now:%Y-%m-%d %H:%M}, limit {max_age_days:g}); "
            "retrain",
            feature_set,
        )
    oos = evidence.forecasts.loc[evidence.forecasts["model"] == evidence.model]
    if "ret_fwd" not in oos.columns or oos.empty:
        return fallback_bundle(
            f"champion v{champion.version}: its run logged no out-of-sample forecasts with "
            "ret_fwd to calibrate VaR/ES on; retrain with the train flow",
            feature_set,
        )
    recent = oos[oos["ts"] >= oos["ts"].max() - pd.Timedelta(days=calibration_days)].rename(
        columns={FORECAST_COLUMN: "forecast", REALIZED_COLUMN: "realized"}
    )
    rows = _latest_rows(feature_set, history_days)
    variance = np.asarray(champion.model.predict(rows), dtype="float64")
    try:
        frame = _calibrated(rows, variance, recent, evidence.model, champion.version)
    except CalibrationError as exc:
        return fallback_bundle(f"champion v{champion.version} cannot be calibrated: {exc}")
    note = f"champion {evidence.model} v{champion.version} ({champion.source})"
    if champion.degraded:
        note += f"; {champion.warning}"
    return ForecastBundle(
        frame,
        ProvenanceInfo(
            model_name=champion.model_name,
            model_version=champion.version,
            mlflow_run_id=champion.run_id,
            feature_set_hash=feature_set.feature_set_hash,
        ),
        "champion",
        note,
    )


def baseline_forecasts(
    kind: Literal["har", "ewma"],
    feature_set: FeatureSet,
    horizon: int,
    *,
    history_days: int,
    calibration_days: int,
) -> ForecastBundle:
    """Forecasts of a baseline fitted before, and calibrated on, the last ``calibration_days``.

    Raises
    ------
    PublishInputError
        If the feature set is too short to fit before the calibration window.
    """
    from models.baselines import make_forecaster
    from pipelines.flows.training import training_panel

    panel = training_panel(feature_set, horizon)
    step = interval_to_timedelta(feature_set.interval)
    cal_start = panel["ts"].max() - pd.Timedelta(days=calibration_days)
    rv = panel["rv_fwd"].to_numpy()
    # Purge: a training row's target must be known at the calibration window's start.
    train = (panel["ts"] + horizon * step <= cal_start) & np.isfinite(rv) & (rv > 0)
    if not train.any():
        raise PublishInputError(
            f"baseline:{kind}: no training rows before {cal_start}; the features start "
            f"{panel['ts'].min()}, give at least {calibration_days + 30} days of data"
        )
    features = panel.drop(columns=["rv_fwd", "ret_fwd"])
    model = make_forecaster(kind, horizon=horizon).fit(features.loc[train], rv[train])
    variance = np.asarray(model.predict(features), dtype="float64")
    window = (panel["ts"] >= cal_start).to_numpy()
    recent = pd.DataFrame(
        {
            "ts": panel.loc[window, "ts"].to_numpy(),
            "forecast": variance[window],
            "realized": rv[window],
            "ret_fwd": panel.loc[window, "ret_fwd"].to_numpy(),
        }
    )
    latest = (panel["ts"] >= panel["ts"].max() - pd.Timedelta(days=history_days)).to_numpy()
    frame = _calibrated(features.loc[latest], variance[latest], recent, kind, "baseline")
    provenance = ProvenanceInfo(
        model_name=f"baseline-{kind}",
        model_version="baseline",
        feature_set_hash=feature_set.feature_set_hash,
    )
    return ForecastBundle(frame, provenance, f"baseline:{kind}", f"{kind} baseline")


def publish_forecasts(
    settings: Settings,
    bundle: ForecastBundle,
    bars: pd.DataFrame,
    assets: Sequence[str],
    now: datetime,
    *,
    policy_config: Path | None = None,
    venue: str = "binance",
    mode: StoreMode = "live",
) -> PublishedBatch:
    """Sign and append one batch: every asset in ``assets``, all or nothing.

    ``mode`` is the store mode of this publication time (:func:`publication_mode`).

    Raises
    ------
    serving.errors.PublishError
        If anything fails; the previous batch stays the one served.
    PublishInputError
        If ``assets`` is empty.
    """
    if not assets:
        raise PublishInputError("nothing to publish: no assets in the data")
    book = load_policy_book(_policy_path(settings, policy_config))
    liquidity = liquidity_metrics(bars, as_of=pd.Timestamp(now))
    signer = SnapshotSigner(load_signing_keys(settings.workdir))
    with PublicationStore(default_store_url(settings.workdir), mode=mode) as store:
        return publish_batch(
            bundle.forecasts,
            liquidity,
            book,
            store,
            signer,
            bundle.provenance,
            now,
            venue=venue,
            horizon_hours=settings.horizon_hours,
            assets=list(assets),
        )


def _policy_path(settings: Settings, explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit
    env = os.environ.get("DYNAMARGIN_CONFIG")
    if env:
        return Path(env)
    default = settings.workdir / "dynamargin.toml"
    return default if default.exists() else None


def _latest_rows(feature_set: FeatureSet, history_days: int) -> pd.DataFrame:
    frame = feature_set.frame
    start = frame["ts"].max() - pd.Timedelta(days=history_days)
    rows = frame[frame["ts"] >= start].copy()
    rows["asset"] = rows["asset"].astype(str)
    return rows.reset_index(drop=True)


def _calibrated(
    rows: pd.DataFrame,
    variance: np.ndarray,
    recent: pd.DataFrame,
    model: str,
    version: str,
) -> pd.DataFrame:
    """Forecast-contract frame: conformal calibration on ``recent`` applied to ``variance``.

    ``recent`` holds out-of-sample ``forecast`` (variance), ``realized`` and ``ret_fwd``.
    Non-finite forecasts stay NaN so the policy reports them as such.
    """
    calibration = calibrate(recent["forecast"], recent["realized"], recent["ret_fwd"])
    finite = np.isfinite(variance) & (variance > 0)
    applied = calibration.apply(np.where(finite, variance, 1.0))
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime(rows["ts"].to_numpy(), utc=True),
            "asset": rows["asset"].astype(str).to_numpy(),
        }
    )
    for column in ("sigma", "sigma_lower", "sigma_upper", "var_99", "es_99"):
        frame[column] = np.where(finite, applied[column].to_numpy(), np.nan)
    frame["model"] = model
    frame["model_version"] = str(version)
    validate_forecast_frame(frame)
    return frame[list(FORECAST_COLUMNS)]


def batch_rows(batch: PublishedBatch) -> list[dict[str, object]]:
    """One plain dict per published snapshot: what a table or JSON output shows."""
    return [
        {
            "asset": snap["asset"],
            "batch_id": batch.receipt.batch_id,
            "update_id": snap["update_id"],
            "status": snap["status"],
            "multiplier": snap["margin"]["multiplier"],
            "previous": snap["margin"]["previous_multiplier"],
            "reason": batch.decisions[snap["asset"]].reason,
            "sigma": snap["sigma"],
        }
        for snap in batch.snapshots
    ]


def publish_once(
    settings: Settings,
    config: PublishConfig,
    data: Path | None,
    assets: Sequence[str] | None,
    start: str | None = None,
    end: str | None = None,
    *,
    calibration_days: int = 60,
) -> tuple[list[dict[str, object]], str]:
    """``dynamargin publish``: features of the store (or a dump), forecasts, one batch.

    Returns
    -------
    tuple
        The published rows (:func:`batch_rows`) and the forecast source's note.
    """
    from features.build import build_features

    market = _market(settings, data, assets, start, end)
    feature_set = build_features(market)
    now = publication_time(feature_set, config.publish_time)
    if config.model == "champion":
        bundle = champion_forecasts(
            settings,
            feature_set,
            now,
            history_days=config.history_days,
            calibration_days=calibration_days,
            max_age_days=config.max_champion_age_days,
        )
    else:
        kind: Literal["har", "ewma"] = "har" if config.model == "baseline:har" else "ewma"
        bundle = baseline_forecasts(
            kind,
            feature_set,
            settings.horizon_hours,
            history_days=config.history_days,
            calibration_days=calibration_days,
        )
    batch = publish_forecasts(
        settings,
        bundle,
        market.bars,
        market.assets,
        now,
        policy_config=config.policy_config,
        venue=config.venue,
        mode=publication_mode(config.publish_time),
    )
    return batch_rows(batch), bundle.note


def policy_replay_stats(
    settings: Settings,
    config: PublishConfig,
    data: Path,
    assets: Sequence[str] | None,
    start: str | None = None,
    end: str | None = None,
    test_start: str | None = None,
) -> list[dict[str, object]]:
    """Replay the policy over walk-forward forecasts of the test period (issue 6 stats).

    Forecasts are the out-of-sample walk-forward of the baseline named by ``config.model``
    (``baseline:har`` for ``champion``: a champion's own evidence covers only its test
    window). The data ``[start, end)`` default to two years before ``test_start``
    (default 2024-07-01, the public test period) through 2025-07-01.

    Returns
    -------
    list of dict
        Per asset: changes per week, time at floor and cap, fallback share, mean multiplier,
        median lead hours before the largest realized-vol spikes, spikes led / found.
    """
    from models.forecast import to_forecast_frame
    from models.walkforward import run_evaluation
    from serving.policy_replay import replay_policy

    scored_from = pd.Timestamp(test_start or "2024-07-01", tz="UTC")
    stop = pd.Timestamp(end or "2025-07-01", tz="UTC")
    first = pd.Timestamp(start, tz="UTC") if start else scored_from - pd.DateOffset(years=2)
    market = _market(settings, data, assets, first.isoformat(), stop.isoformat())
    kind = "ewma" if config.model == "baseline:ewma" else "har"
    result = run_evaluation(
        market, scored_from, stop, models=[kind], horizon=settings.horizon_hours
    )
    forecasts = to_forecast_frame(result.forecasts, f"baseline-{kind}")
    realized = result.forecasts[["ts", "asset", "rv"]].rename(columns={"rv": "rv_fwd"})
    forecasts = forecasts.merge(realized, on=["ts", "asset"], how="left")
    book = load_policy_book(_policy_path(settings, config.policy_config))
    report = replay_policy(forecasts, book, horizon_hours=settings.horizon_hours)
    stats = []
    for summary in report.assets.values():
        item = summary.to_dict()
        spikes = item.get("spikes", [])
        stats.append(
            {
                **{k: v for k, v in item.items() if k != "spikes"},
                "spikes": len(spikes),
                "led": sum(1 for s in spikes if (s.get("lead_hours") or 0) > 0),
                "from": scored_from.isoformat(),
                "forecasts": f"baseline:{kind} walk-forward",
            }
        )
    return stats


def _market(
    settings: Settings,
    data: Path | None,
    assets: Sequence[str] | None,
    start: str | None,
    end: str | None,
) -> MarketData:
    if data is not None:
        from features.sources import load_market

        market, _report = load_market(
            data, settings.interval, list(assets) if assets else None, start, end
        )
    else:
        from pipelines.stores import market_store

        store = market_store(settings)
        market = store.read_market(settings.interval, list(assets) if assets else None, start, end)
    if market.bars.empty:
        raise PublishInputError(
            f"no {settings.interval} bars for {list(assets) if assets else 'any asset'} in "
            f"[{start}, {end}) of {data or settings.workdir / 'store'}"
        )
    return market
