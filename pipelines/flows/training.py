"""Plain functions behind ``train_flow``: evaluation per model, final fit, the training run.

Kept free of Prefect so they are tested and reused directly; the flow maps
:func:`evaluate_model` over models and calls the rest once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.bars import interval_to_timedelta
from features.build import FeatureSet
from models.baselines import VarianceForecaster, make_forecaster
from models.review import FORECAST_COLUMN, REALIZED_COLUMN
from models.targets import TARGET_COLUMNS, forward_targets
from models.tracking import TrainingRun
from models.walkforward import EvaluationConfig, EvaluationResult, run_evaluation, score_forecasts
from pipelines.flows.config import TrainConfig

REVIEW_COLUMNS = {"variance": FORECAST_COLUMN, "rv": REALIZED_COLUMN}
"""Walk-forward output columns -> the names the review reads (``models.review``)."""


class TrainingInputError(ValueError):
    """The feature set cannot support the requested evaluation (too short, no targets)."""


@dataclass(frozen=True)
class ScoredWindow:
    """The scored test period ``[start, end)`` (UTC)."""

    start: pd.Timestamp
    end: pd.Timestamp


def evaluation_config(
    train: TrainConfig, feature_set: FeatureSet, horizon: int
) -> EvaluationConfig:
    """The walk-forward settings of ``train`` for ``feature_set``.

    LightGBM is pinned to the catalog's feature columns: left to choose "every numeric
    column" it would also see the targets the walk-forward attaches to the panel.
    """
    params: dict[str, dict[str, Any]] = {}
    if "lgbm" in train.models:
        params["lgbm"] = {**train.lgbm, "features": tuple(feature_set.feature_names)}
    return EvaluationConfig(
        horizon=horizon,
        interval=feature_set.interval,
        refit=train.refit,
        warmup_months=train.warmup_months,
        calibration_days=train.calibration_days,
        tune_months=train.tune_months,
        har_windows=train.har_windows,
        primary=train.candidate,
        history_days=train.history_days,
        model_params=params,
    )


def scored_window(feature_set: FeatureSet, train: TrainConfig, horizon: int) -> ScoredWindow:
    """The last ``train.test_days`` whose targets are known, whole days (UTC).

    Raises
    ------
    TrainingInputError
        If the data are too short for the test period, warm-up and tuning months.
    """
    step = interval_to_timedelta(feature_set.interval)
    ts = feature_set.frame["ts"]
    end = (ts.max() + step - horizon * step).floor("D")
    start = end - pd.Timedelta(days=train.test_days)
    earliest = start - pd.DateOffset(months=train.warmup_months + train.tune_months + 1)
    if earliest < ts.min():
        raise TrainingInputError(
            f"data from {ts.min()} to {ts.max()} are too short for a {train.test_days}-day "
            f"test ending {end} plus {train.warmup_months} warm-up and {train.tune_months} "
            "tuning months and a month of training; use more days or a shorter test"
        )
    return ScoredWindow(start, end)


def evaluate_model(
    feature_set: FeatureSet, model: str, window: ScoredWindow, config: EvaluationConfig
) -> EvaluationResult:
    """Walk-forward evaluation of one model (the unit of parallel work)."""
    return run_evaluation(
        feature_set,
        window.start,
        window.end,
        models=[model],
        horizon=config.horizon,
        config=config,
    )


def combine_evaluations(
    results: Sequence[EvaluationResult], models: Sequence[str], config: EvaluationConfig
) -> EvaluationResult:
    """Score every model together, as :func:`run_evaluation` does for several models.

    Diebold–Mariano tests and VaR backtests need all models' forecasts on the same rows, so
    the per-model forecasts are concatenated and scored by
    :func:`models.walkforward.score_forecasts`.
    """
    forecasts = pd.concat([r.forecasts for r in results], ignore_index=True)
    metrics = score_forecasts(forecasts, list(models), config)
    first = results[0].metrics
    metrics["config"] = {**first["config"], "models": list(models)}
    metrics["data"] = first["data"]
    metrics["tuning"] = {k: v for r in results for k, v in r.metrics.get("tuning", {}).items()}
    metrics["feature_importance"] = next(
        (r.metrics["feature_importance"] for r in results if r.metrics.get("feature_importance")),
        {},
    )
    metrics["timing"] = {
        k: v for r in results for k, v in r.metrics.get("timing", {}).items() if k != "total"
    }
    return EvaluationResult(metrics=metrics, forecasts=forecasts)


def training_panel(feature_set: FeatureSet, horizon: int) -> pd.DataFrame:
    """Features plus ``rv_fwd``/``ret_fwd`` targets (same rows, ``asset, ts`` order)."""
    ret = f"ret_{feature_set.interval}"
    frame = feature_set.frame.sort_values(["asset", "ts"], kind="stable").reset_index(drop=True)
    returns = frame[["ts", "asset", ret]].rename(columns={ret: "ret"})
    targets = forward_targets(returns, horizon=horizon, interval=feature_set.interval)
    panel = frame.copy()
    panel["asset"] = panel["asset"].astype(str)
    panel["rv_fwd"] = targets["rv_fwd"].to_numpy()
    panel["ret_fwd"] = targets["ret_fwd"].to_numpy()
    return panel


def fit_final(
    feature_set: FeatureSet, model: str, config: EvaluationConfig
) -> tuple[VarianceForecaster, pd.DataFrame]:
    """Fit ``model`` on every row whose target is known; return it and its training rows.

    Raises
    ------
    TrainingInputError
        If no row has a known target.
    """
    panel = training_panel(feature_set, config.horizon)
    rv = panel["rv_fwd"].to_numpy()
    rows = panel.loc[np.isfinite(rv) & (rv > 0)]
    if rows.empty:
        raise TrainingInputError("no row of the feature set has a known forward target")
    params = dict(config.model_params.get(model, {}))
    if model == "lgbm":
        params.setdefault("interval", config.interval)
    estimator = make_forecaster(model, horizon=config.horizon, **params)  # type: ignore[arg-type]
    estimator.fit(rows.drop(columns=["rv_fwd", "ret_fwd"]), rows["rv_fwd"].to_numpy())
    return estimator, rows.drop(columns=["rv_fwd", "ret_fwd"])


def leakage_evidence(
    estimator: VarianceForecaster, features_passed: bool, features_detail: str
) -> tuple[bool, str]:
    """Combine the feature truncation check with a check of the model's inputs.

    The model must not read a target column (``rv_fwd``, ``ret_fwd``, ...), which the
    truncation check of the features cannot see.
    """
    used = list(getattr(estimator, "feature_names_", None) or [])
    leaked = sorted(set(used) & set(TARGET_COLUMNS))
    if leaked:
        return False, f"model inputs include target columns {leaked}; {features_detail}"
    inputs = (
        f"model reads {len(used)} feature columns, none a target"
        if used
        else ("model reads only its declared columns")
    )
    return features_passed, f"{features_detail}; {inputs}"


def training_run(
    *,
    estimator: VarianceForecaster,
    train_rows: pd.DataFrame,
    evaluation: EvaluationResult,
    feature_set: FeatureSet,
    candidate: str,
    horizon: int,
    data_start: str,
    data_through: str,
    source: str,
    leakage: tuple[bool, str],
) -> TrainingRun:
    """The :class:`models.tracking.TrainingRun` to log and register."""
    importance = getattr(estimator, "feature_importances_", None)
    catalog = pd.DataFrame([spec.__dict__ for spec in feature_set.catalog])
    example_columns = ["ts", "asset", *feature_set.feature_names]
    return TrainingRun(
        model=estimator,
        model_name=candidate,
        horizon_hours=horizon,
        evaluation=evaluation.to_json_dict(),
        forecasts=evaluation.forecasts.rename(columns=REVIEW_COLUMNS),
        train_features=train_rows[example_columns].reset_index(drop=True),
        feature_catalog=catalog,
        data_start=pd.Timestamp(data_start).to_pydatetime(),
        data_through=pd.Timestamp(data_through).to_pydatetime(),
        data_source=source,
        feature_params=feature_set.config.to_dict(),
        feature_importance=importance if isinstance(importance, pd.Series) else None,
        feature_set_hash=feature_set.feature_set_hash,
        leakage_passed=leakage[0],
        leakage_detail=leakage[1],
    )


def mean_qlike(evaluation: EvaluationResult) -> dict[str, float]:
    """Mean QLIKE across assets per model (lower is better)."""
    return {k: float(v) for k, v in evaluation.metrics["mean"]["qlike"].items()}
