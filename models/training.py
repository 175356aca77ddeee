"""Training a candidate: walk-forward per model, joint scoring, final fit, the run to log.

The training flow maps :func:`evaluate_model` over the compared models (the unit of parallel
work), scores them together with :func:`combine_evaluations`, fits the candidate on every row
whose target is known with :func:`fit_candidate` (calibrated on its own out-of-sample
forecasts of the test period) and logs :func:`training_run`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.bars import interval_to_timedelta
from features.build import FeatureSet
from models.calibrated import CalibratedForecaster
from models.conformal import CalibrationError
from models.errors import ModelsError
from models.factory import build_forecaster
from models.review import FORECAST_COLUMN, REALIZED_COLUMN
from models.spec import TargetSpec
from models.targets import TARGET_COLUMNS, attach_targets
from models.tracking import TrainingRun
from models.walkforward import EvaluationConfig, EvaluationResult, run_evaluation, scoring

REVIEW_COLUMNS = {"variance": FORECAST_COLUMN, "rv": REALIZED_COLUMN}
"""Walk-forward output columns -> the names the review reads (``models.review``)."""


class TrainingInputError(ModelsError, ValueError):
    """The feature set cannot support the requested training (too short, no targets)."""


@dataclass(frozen=True)
class ScoredWindow:
    """The scored test period ``[start, end)`` (UTC)."""

    start: pd.Timestamp
    end: pd.Timestamp


def scored_window(
    feature_set: FeatureSet, test_days: int, config: EvaluationConfig, target: TargetSpec
) -> ScoredWindow:
    """The last ``test_days`` whose targets are known, whole days (UTC).

    Raises
    ------
    TrainingInputError
        If the data are too short for the test period, warm-up and tuning months.
    """
    step = interval_to_timedelta(feature_set.interval)
    ts = feature_set.frame["ts"]
    end = (ts.max() + step - target.horizon * step).floor("D")
    start = end - pd.Timedelta(days=test_days)
    earliest = start - pd.DateOffset(months=config.warmup_months + config.tune_months + 1)
    if earliest < ts.min():
        raise TrainingInputError(
            f"data from {ts.min()} to {ts.max()} are too short for a {test_days}-day "
            f"test ending {end} plus {config.warmup_months} warm-up and {config.tune_months} "
            "tuning months and a month of training; use more days or a shorter test"
        )
    return ScoredWindow(start, end)


def evaluate_model(
    feature_set: FeatureSet,
    model: str,
    window: ScoredWindow,
    config: EvaluationConfig,
    target: TargetSpec,
) -> EvaluationResult:
    """Walk-forward evaluation of one model (the unit of parallel work)."""
    return run_evaluation(
        feature_set,
        window.start,
        window.end,
        config.with_models([model], primary=model),
        target=target,
    )


def combine_evaluations(
    results: Sequence[EvaluationResult], config: EvaluationConfig, target: TargetSpec
) -> EvaluationResult:
    """Score every model together, as :func:`models.walkforward.run_evaluation` does.

    Diebold–Mariano tests and VaR backtests need all models' forecasts on the same rows, so
    the per-model forecasts are concatenated and scored by
    :func:`models.scoring.score_forecasts`.
    """
    from models.scoring import score_forecasts

    forecasts = pd.concat([r.forecasts for r in results], ignore_index=True)
    metrics = score_forecasts(forecasts, config.models, scoring(config, target))
    first = results[0].metrics
    metrics["config"] = {**first["config"], **config.describe()}
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


def add_forecast_evidence(
    feature_set: FeatureSet,
    window: ScoredWindow,
    config: EvaluationConfig,
    target: TargetSpec,
    evaluation: EvaluationResult,
) -> EvaluationResult:
    """Add the ``horizons`` and ``tails`` sections the review's gates read, when asked for.

    With ``config.horizons`` every further horizon is walked forward on the same window
    (:func:`models.horizons.run_horizons`) and summarised against HAR; with
    ``config.tails`` the tail forecasters are evaluated at the target's horizon and those.
    Without either, ``evaluation`` is returned unchanged.
    """
    if not config.horizons and not config.tails:
        return evaluation
    metrics = dict(evaluation.metrics)
    if config.horizons:
        from models.horizons import REFERENCE, horizon_summary, run_horizons

        models = (*config.models, *([REFERENCE] if REFERENCE not in config.models else []))
        compared = config.with_models(models, primary=config.primary)
        extra = [h for h in config.horizons if h != target.horizon]
        results = run_horizons(feature_set, window.start, window.end, extra, compared)
        metrics["horizons"] = horizon_summary(results, config.primary)
    if config.tails:
        from models.tails import TailConfig, run_tail_evaluation

        horizons = sorted({target.horizon, *config.horizons})
        tails = TailConfig(
            warmup_months=config.warmup_months,
            history_days=config.history_days,
            calibration=config.calibration.model_copy(update={"min_scores": 100}),
        )
        metrics["tails"] = run_tail_evaluation(
            feature_set, window.start, window.end, horizons, tails
        ).metrics
    return EvaluationResult(metrics=metrics, forecasts=evaluation.forecasts)


def choose_candidate(evaluation: EvaluationResult, config: EvaluationConfig) -> tuple[str, str]:
    """The model to register: the primary, unless a baseline beat it on pooled QLIKE.

    A primary whose pooled QLIKE (:func:`models.review.pooled_qlike`, on the rows every
    compared model forecast) is higher than the best baseline's is not a candidate: the
    review would refuse it anyway. The best baseline is registered instead, so the champion
    is never a model that lost to a simpler one.

    Returns
    -------
    tuple
        ``(model, reason)``; the reason is one sentence for the logs and the summary.
    """
    from models.review import pooled_qlike

    models = list(config.models)
    baselines = [m for m in models if m != config.primary]
    if not baselines:
        return config.primary, f"{config.primary} is the only model compared"
    pooled = pooled_qlike(evaluation.forecasts, models)
    best = min(baselines, key=lambda m: pooled[m])
    if pooled[config.primary] <= pooled[best]:
        return config.primary, (
            f"{config.primary} pooled QLIKE {pooled[config.primary]:.4f} <= best baseline "
            f"{best} {pooled[best]:.4f}"
        )
    return best, (
        f"{config.primary} pooled QLIKE {pooled[config.primary]:.4f} is worse than the best "
        f"baseline {best} ({pooled[best]:.4f}): {best} is registered instead"
    )


def fit_candidate(
    feature_set: FeatureSet,
    config: EvaluationConfig,
    target: TargetSpec,
    evaluation: EvaluationResult,
    model: str | None = None,
) -> tuple[CalibratedForecaster, pd.DataFrame]:
    """The candidate (``model``, default the primary) fitted on every row with a known
    target, and calibrated.

    The calibration uses the model's own out-of-sample walk-forward forecasts of the test
    period (the last ``calibration.window_days`` of them), never in-sample fits, so the
    registered forecaster publishes calibrated VaR, ES and intervals by itself.

    Returns
    -------
    tuple
        The calibrated forecaster and its training rows (features only).

    Raises
    ------
    TrainingInputError
        If no row has a known target or the out-of-sample forecasts cannot calibrate it.
    """
    panel = attach_targets(feature_set.frame, target, feature_set.interval)
    rv = panel["rv_fwd"].to_numpy()
    rows = panel.loc[np.isfinite(rv) & (rv > 0)]
    if rows.empty:
        raise TrainingInputError("no row of the feature set has a known forward target")
    features = rows.drop(columns=["rv_fwd", "ret_fwd"])
    name = model or config.primary
    forecaster = build_forecaster(config.spec(name, target), feature_set.interval)
    forecaster.fit(features, rows["rv_fwd"].to_numpy())
    try:
        forecaster.calibrate_on(evaluation.model_forecasts(name))
    except CalibrationError as exc:
        raise TrainingInputError(
            f"{name} cannot be calibrated on its out-of-sample forecasts: {exc}"
        ) from exc
    return forecaster, features


def leakage_evidence(
    forecaster: CalibratedForecaster, features_passed: bool, features_detail: str
) -> tuple[bool, str]:
    """Combine the feature truncation check with a check of the model's inputs.

    The model must not read a target column (``rv_fwd``, ``ret_fwd``, ...), which the
    truncation check of the features cannot see.
    """
    used = list(forecaster.feature_names_)
    leaked = sorted(set(used) & set(TARGET_COLUMNS))
    if leaked:
        return False, f"model inputs include target columns {leaked}; {features_detail}"
    inputs = f"model reads {len(used)} feature columns, none a target"
    return features_passed, f"{features_detail}; {inputs}"


def training_run(
    *,
    forecaster: CalibratedForecaster,
    train_rows: pd.DataFrame,
    evaluation: EvaluationResult,
    feature_set: FeatureSet,
    target: TargetSpec,
    data_start: str,
    data_through: str,
    source: str,
    leakage: tuple[bool, str],
) -> TrainingRun:
    """The :class:`models.tracking.TrainingRun` to log and register."""
    catalog = pd.DataFrame([spec.__dict__ for spec in feature_set.catalog])
    example_columns = ["ts", "asset", *feature_set.feature_names]
    return TrainingRun(
        model=forecaster,
        model_name=forecaster.name,
        horizon_hours=target.horizon,
        evaluation=evaluation.to_json_dict(),
        forecasts=evaluation.forecasts.rename(columns=REVIEW_COLUMNS),
        train_features=train_rows[example_columns].reset_index(drop=True),
        feature_catalog=catalog,
        data_start=pd.Timestamp(data_start).to_pydatetime(),
        data_through=pd.Timestamp(data_through).to_pydatetime(),
        data_source=source,
        feature_params=feature_set.config.to_dict(),
        feature_importance=forecaster.feature_importances_,
        feature_set_hash=feature_set.feature_set_hash,
        leakage_passed=leakage[0],
        leakage_detail=leakage[1],
    )


def mean_qlike(evaluation: EvaluationResult) -> dict[str, float]:
    """Mean QLIKE across assets per model (lower is better)."""
    return {k: float(v) for k, v in evaluation.metrics["mean"]["qlike"].items()}
