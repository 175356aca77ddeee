"""``train_flow``: walk-forward evaluation, final fit, MLflow logging, ``@challenger``.

Each compared model's walk-forward runs as its own task (mapped: in parallel on threads or
Dask workers), then all are scored together. The candidate is refitted on every row whose
target is known, logged to MLflow with its evaluation, forecasts and lineage, and
registered as a new version of ``dynamargin-vol-<H>h`` carrying the ``@challenger`` alias.
The review is a separate flow (:mod:`pipelines.flows.review`).
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow, get_run_logger, task, unmapped

from features.build import FeatureSet
from models import training
from models.calibrated import CalibratedForecaster
from models.mlflow_store import MlflowStore
from models.registry import ChampionRegistry, registered_model_name
from models.spec import TargetSpec
from models.tracking import TrainingRun, log_training_run
from models.walkforward import EvaluationConfig, EvaluationResult
from pipelines.flows.config import TrainConfig
from pipelines.flows.featurize import FeaturesOutput
from pipelines.flows.runtime import IO_TASK, flow_settings


@dataclass(frozen=True)
class TrainOutput:
    """The registered challenger and how the compared models scored.

    Attributes
    ----------
    model_name, version, run_id
        Registered model, its new version (``@challenger``) and the MLflow run.
    candidate
        Model column of the registered candidate (e.g. ``lgbm``; the best baseline when the
        primary lost to it on pooled QLIKE).
    candidate_reason
        Why that model was registered (:func:`models.training.choose_candidate`).
    mean_qlike
        Mean QLIKE across assets per compared model, on the test period.
    test_start, test_end
        Scored test period (UTC ISO).
    data_through
        Close of the last bar the model saw.
    leakage_passed
        Outcome of the look-ahead checks.
    """

    model_name: str
    version: str
    run_id: str
    candidate: str
    mean_qlike: dict[str, float]
    test_start: str
    test_end: str
    data_through: str
    leakage_passed: bool
    candidate_reason: str = ""


@task(**IO_TASK)
def load_feature_set(features: FeaturesOutput) -> FeatureSet:
    """Read the feature set the features flow persisted (hash-checked)."""
    return features.load()


@task(task_run_name="walk-forward-{model}")
def evaluate(
    feature_set: FeatureSet,
    model: str,
    window: training.ScoredWindow,
    config: EvaluationConfig,
    target: TargetSpec,
) -> EvaluationResult:
    """Walk-forward of one model (:func:`models.training.evaluate_model`)."""
    return training.evaluate_model(feature_set, model, window, config, target)


@task
def score(
    results: list[EvaluationResult], config: EvaluationConfig, target: TargetSpec
) -> EvaluationResult:
    """Score all models on common rows (:func:`models.training.combine_evaluations`)."""
    return training.combine_evaluations(results, config, target)


@task
def fit_candidate(
    feature_set: FeatureSet,
    config: EvaluationConfig,
    target: TargetSpec,
    evaluation: EvaluationResult,
    model: str,
) -> tuple[CalibratedForecaster, object]:
    """Final fit and calibration of the candidate (:func:`models.training.fit_candidate`)."""
    return training.fit_candidate(feature_set, config, target, evaluation, model)


@task(**IO_TASK)
def register_challenger(workdir: str, run: TrainingRun) -> tuple[str, str, str]:
    """Log the run to MLflow and register it as ``@challenger``.

    Returns
    -------
    tuple
        ``(model_name, version, run_id)``.
    """
    settings = flow_settings(workdir)
    store = MlflowStore.for_workdir(settings.workdir, settings.mlflow_uri)
    registry = ChampionRegistry(store, registered_model_name(run.horizon_hours))
    logged = log_training_run(store, run)
    version = registry.register_candidate(
        model_uri=logged.model_uri,
        run_id=logged.run_id,
        model_id=logged.model_id,
        tags={"dynamargin.run_id": logged.run_id, "dynamargin.model_column": run.model_name},
        description=f"{run.model_name}, data through {run.data_through.isoformat()}",
    )
    return registry.model_name, version.version, logged.run_id


@flow(name="train", log_prints=True)
def train_flow(
    features: FeaturesOutput,
    workdir: str | None = None,
    train: TrainConfig | None = None,
) -> TrainOutput:
    """Evaluate the compared models, fit the candidate, log and register it.

    Parameters
    ----------
    features
        Output of ``features_flow``.
    workdir
        Work dir (MLflow store ``<workdir>/mlflow.db`` unless ``DYNAMARGIN_MLFLOW_URI``).
    train
        Compared models, candidate, walk-forward settings and the test window.

    Returns
    -------
    TrainOutput
    """
    train = train or TrainConfig()
    settings = flow_settings(workdir)
    logger = get_run_logger()
    target = TargetSpec(horizon=settings.horizon_hours)
    config = train.evaluation
    feature_set = load_feature_set(features)
    window = training.scored_window(feature_set, train.test_days, config, target)
    logger.info("walk-forward of %s on %s .. %s", list(config.models), window.start, window.end)
    per_model = evaluate.map(
        unmapped(feature_set),
        list(config.models),
        unmapped(window),
        unmapped(config),
        unmapped(target),
    )
    evaluation = score(per_model, config, target)
    # Further horizons and tail quantiles, when configured, for the review's gates.
    evaluation = training.add_forecast_evidence(feature_set, window, config, target, evaluation)
    candidate, reason = training.choose_candidate(evaluation, config)
    logger.info("candidate: %s (%s)", candidate, reason)
    forecaster, rows = fit_candidate(feature_set, config, target, evaluation, candidate)
    leakage = training.leakage_evidence(
        forecaster, features.leakage_passed, features.leakage_detail
    )
    run = training.training_run(
        forecaster=forecaster,
        train_rows=rows,
        evaluation=evaluation,
        feature_set=feature_set,
        target=target,
        data_start=features.data_start,
        data_through=features.data_through,
        source=features.source,
        leakage=leakage,
    )
    model_name, version, run_id = register_challenger(str(settings.workdir), run)
    qlike = training.mean_qlike(evaluation)
    logger.info(
        "%s v%s registered as @challenger (run %s); mean QLIKE %s",
        model_name,
        version,
        run_id,
        {k: round(v, 4) for k, v in qlike.items()},
    )
    return TrainOutput(
        model_name=model_name,
        version=version,
        run_id=run_id,
        candidate=candidate,
        mean_qlike=qlike,
        test_start=window.start.isoformat(),
        test_end=window.end.isoformat(),
        data_through=features.data_through,
        leakage_passed=leakage[0],
        candidate_reason=reason,
    )
