"""The forecasts a publication is made from: the champion, a baseline, or none (fallback).

* ``champion``: ``models:/dynamargin-vol-<H>h@champion`` (or its last-known-good copy), a
  :class:`~models.calibrated.CalibratedForecaster` calibrated at training time on its own
  out-of-sample walk-forward forecasts; it forecasts the latest bars as it is.
* ``baseline:har`` / ``baseline:ewma``: fitted on the data before a calibration window,
  calibrated on that window (out of sample), then forecasting the latest bars.
* fallback: when the champion is missing, stale or unusable, no forecast is handed to the
  policy, which then publishes its conservative fallback multiplier with
  ``status=fallback`` for every asset. Something is always published.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from contracts.forecast import ProvenanceInfo, empty_forecasts
from features.bars import interval_to_timedelta
from features.build import FeatureSet
from models.errors import ModelsError
from models.estimators.base import ForecasterInputError
from models.factory import build_forecaster
from models.spec import CalibrationSpec, TargetSpec, named_spec
from models.splitter import target_known
from models.targets import attach_targets


class ForecastSourceError(ModelsError, ValueError):
    """The feature set cannot produce forecasts from this source (too short, no rows)."""


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
        Why this source (e.g. ``champion lgbm v3 (registry)``, ``no champion: ...``).
    """

    forecasts: pd.DataFrame
    provenance: ProvenanceInfo
    source: str
    note: str

    @property
    def is_fallback(self) -> bool:
        return self.source == "fallback"


def fallback_bundle(note: str, feature_set: FeatureSet | None = None) -> ForecastBundle:
    """No forecasts: the policy publishes its fallback multiplier for every asset."""
    provenance = ProvenanceInfo(
        model_name="fallback",
        model_version="rule-based",
        feature_set_hash=None if feature_set is None else feature_set.feature_set_hash,
    )
    return ForecastBundle(empty_forecasts(), provenance, "fallback", note)


def champion_forecasts(
    workdir: Path,
    tracking_uri: str,
    target: TargetSpec,
    feature_set: FeatureSet,
    now: datetime,
    *,
    history_days: int,
    max_age_days: float,
) -> ForecastBundle:
    """Forecasts of the ``@champion`` on the latest ``history_days`` of features.

    Any reason the champion cannot be used (none registered, registry and local copy both
    unreachable, stale, not a calibrated forecaster) becomes a fallback bundle whose
    ``note`` says why.
    """
    from models.calibrated import CalibratedForecaster
    from models.champion import NoChampionError, default_cache_dir, load_champion
    from models.mlflow_store import MlflowStore
    from models.registry import registered_model_name
    from models.tracking import TrackingError, read_evidence

    store = MlflowStore.for_workdir(workdir, tracking_uri)
    name = registered_model_name(target.horizon)
    try:
        champion = load_champion(store, name, default_cache_dir(workdir))
    except NoChampionError as exc:
        return fallback_bundle(f"no champion: {exc}", feature_set)
    label = f"champion v{champion.version}"
    if champion.run_id is None:
        return fallback_bundle(f"{label} has no run to read its data range from", feature_set)
    if not isinstance(champion.model, CalibratedForecaster):
        return fallback_bundle(
            f"{label} is a {type(champion.model).__name__}, not a calibrated forecaster; "
            "retrain with the train flow",
            feature_set,
        )
    try:
        evidence = read_evidence(store, champion.run_id, champion.version).evidence
    except TrackingError as exc:
        return fallback_bundle(f"{label}: {exc}", feature_set)
    through = pd.Timestamp(evidence.data_through)
    age_days = (pd.Timestamp(now) - through) / pd.Timedelta(days=1)
    if age_days > max_age_days:
        return fallback_bundle(
            f"{label} is stale: trained on data through {through} "
            f"({age_days:.1f} days before {now:%Y-%m-%d %H:%M}, limit {max_age_days:g}); "
            "retrain",
            feature_set,
        )
    frame = champion.model.forecast(latest_rows(feature_set, history_days), champion.version)
    note = f"champion {champion.model.name} v{champion.version} ({champion.source})"
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
    kind: str,
    feature_set: FeatureSet,
    target: TargetSpec,
    calibration: CalibrationSpec,
    *,
    history_days: int,
) -> ForecastBundle:
    """Forecasts of a named baseline fitted before, and calibrated on, the last ``window_days``.

    ``kind`` is a named forecaster (:data:`models.spec.NAMED_FORECASTERS`), e.g. ``"har"``.

    Raises
    ------
    ForecastSourceError
        If the feature set is too short to fit before the calibration window.
    """
    panel = attach_targets(feature_set.frame, target, feature_set.interval)
    step = interval_to_timedelta(feature_set.interval)
    cal_start = panel["ts"].max() - pd.Timedelta(days=calibration.window_days)
    rv = panel["rv_fwd"].to_numpy()
    # A training row's target must be known at the calibration window's start.
    train = target_known(panel["ts"], cal_start, target.horizon, step) & np.isfinite(rv) & (rv > 0)
    if not train.any():
        raise ForecastSourceError(
            f"baseline:{kind}: no training rows before {cal_start}; the features start "
            f"{panel['ts'].min()}, give at least {calibration.window_days + 30} days of data"
        )
    features = panel.drop(columns=["rv_fwd", "ret_fwd"])
    forecaster = build_forecaster(named_spec(kind, target, calibration), feature_set.interval)
    try:
        forecaster.fit(features.loc[train], rv[train])
        # Forecast every row at once: a recursive filter (EWMA) needs the whole history.
        variance = forecaster.predict(features)
    except ForecasterInputError as exc:
        raise ForecastSourceError(
            f"baseline:{kind} cannot be fitted on the data before the {calibration.window_days}"
            f"-day calibration window (from {cal_start}): {exc}; use more data or a shorter "
            "calibration window"
        ) from exc
    window = (panel["ts"] >= cal_start).to_numpy()
    forecaster.calibrate_on(
        pd.DataFrame(
            {
                "ts": panel.loc[window, "ts"].to_numpy(),
                "variance": variance[window],
                "rv": rv[window],
                "ret_fwd": panel.loc[window, "ret_fwd"].to_numpy(),
            }
        )
    )
    latest = (panel["ts"] >= panel["ts"].max() - pd.Timedelta(days=history_days)).to_numpy()
    frame = forecaster.forecast(features, "baseline").loc[latest].reset_index(drop=True)
    provenance = ProvenanceInfo(
        model_name=f"baseline-{kind}",
        model_version="baseline",
        feature_set_hash=feature_set.feature_set_hash,
    )
    return ForecastBundle(frame, provenance, f"baseline:{kind}", f"{kind} baseline")


def latest_rows(feature_set: FeatureSet, history_days: int) -> pd.DataFrame:
    """Feature rows of the last ``history_days`` (the policy's trailing reference needs them)."""
    frame = feature_set.frame
    start = frame["ts"].max() - pd.Timedelta(days=history_days)
    rows = frame[frame["ts"] >= start].copy()
    rows["asset"] = rows["asset"].astype(str)
    return rows.reset_index(drop=True)
