"""Log a training run to MLflow, and read a logged run back as review evidence.

One training run records, in the project's store (never ``./mlruns``):

- **params**: model params (``model.*``), feature params (``feature.*``), the feature-set
  hash, the data range and data-through time, the git commit when one is available;
- **metrics**: every number of the evaluation, per asset and pooled, under sanitised keys
  (Basel zones also as ``zone_level`` 0/1/2 for green/yellow/red);
- **artifacts**: ``evaluation/evaluation.json``, ``evaluation/forecasts.parquet``,
  ``features/catalog.csv``, ``features/importance.csv``, ``plots/*.png``;
- **the model**, with signature and input example (MLflow 3 ``name=``);
- **dataset lineage**: the training features via ``mlflow.data.from_pandas`` +
  ``mlflow.log_input`` (context ``training``), plus ``dynamargin.data.*`` tags.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import re
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import mlflow
import mlflow.data
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from pydantic import BaseModel

from models.errors import ModelsError
from models.forecast_plots import calibration_figure, forecast_vs_realized_figure, png_bytes
from models.mlflow_store import MlflowStore
from models.review import CandidateEvidence, flatten_evaluation

EVALUATION_JSON: Final = "evaluation/evaluation.json"
FORECASTS_PARQUET: Final = "evaluation/forecasts.parquet"
FEATURE_CATALOG_CSV: Final = "features/catalog.csv"
FEATURE_IMPORTANCE_CSV: Final = "features/importance.csv"
MODEL_NAME: Final = "model"

TAG_MODEL_COLUMN: Final = "dynamargin.model_column"
TAG_HORIZON: Final = "dynamargin.horizon_hours"
TAG_DATA_SOURCE: Final = "dynamargin.data.source"
TAG_DATA_START: Final = "dynamargin.data.start"
TAG_DATA_THROUGH: Final = "dynamargin.data.through"
TAG_FEATURE_SET_HASH: Final = "dynamargin.feature_set_hash"
TAG_LEAKAGE_PASSED: Final = "dynamargin.leakage.passed"
TAG_LEAKAGE_DETAIL: Final = "dynamargin.leakage.detail"

EVALUATION_PARAM_SECTIONS: Final = frozenset({"config", "data", "tuning"})
ZONE_LEVEL: Final[Mapping[str, int]] = {"green": 0, "yellow": 1, "red": 2}
PROJECT_ROOT: Final = Path(__file__).resolve().parent.parent

logger = logging.getLogger(__name__)


class TrackingError(ModelsError, RuntimeError):
    """A training run could not be logged or read back."""


@dataclass(frozen=True)
class TrainingRun:
    """Everything one training run produced, ready to be logged.

    Parameters
    ----------
    model
        The fitted estimator (scikit-learn contract; ``get_params`` and ``predict``).
    model_name
        Its name in the ``model`` column of ``forecasts`` (e.g. ``"lgbm"``).
    horizon_hours
        Forecast horizon H.
    evaluation
        ``EvaluationResult.to_json_dict()``.
    forecasts
        ``EvaluationResult.forecasts``: ``ts, asset, model, forecast, realized``.
    train_features
        The feature matrix the model was fitted on (signature, input example, lineage).
    feature_catalog
        One row per feature column (name, window, definition).
    data_start, data_through
        Time range of the data used (UTC).
    data_source
        Where the data came from (store path or URI), for lineage.
    feature_params
        Parameters of the feature builders.
    feature_importance
        Importance per feature name, if the model has one.
    feature_set_hash
        Hash of the feature set; computed from the catalog when omitted.
    leakage_passed, leakage_detail
        Outcome of the look-ahead check (None: it did not run).
    """

    model: Any
    model_name: str
    horizon_hours: int
    evaluation: Mapping[str, Any]
    forecasts: pd.DataFrame
    train_features: pd.DataFrame
    feature_catalog: pd.DataFrame
    data_start: datetime
    data_through: datetime
    data_source: str
    feature_params: Mapping[str, Any] = field(default_factory=dict)
    feature_importance: pd.Series | None = None
    feature_set_hash: str | None = None
    leakage_passed: bool | None = None
    leakage_detail: str = ""

    def resolved_feature_set_hash(self) -> str:
        return self.feature_set_hash or feature_set_hash(self.feature_catalog)


@dataclass(frozen=True)
class LoggedRun:
    """Identifiers of a logged training run and its model."""

    run_id: str
    model_uri: str
    model_id: str | None
    experiment_id: str


def log_training_run(store: MlflowStore, run: TrainingRun) -> LoggedRun:
    """Log params, metrics, artifacts, model and lineage of one training run.

    Parameters
    ----------
    store
        The MLflow store (its experiment is created with an explicit artifact location).
    run
        What the training produced.

    Returns
    -------
    LoggedRun
    """
    experiment_id = store.ensure_experiment()
    through = pd.Timestamp(run.data_through)
    run_name = f"{run.model_name}-{run.horizon_hours}h-{through:%Y%m%dT%H%M}"
    with (
        store.bound(),
        mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as active,
    ):
        mlflow.set_tags(_run_tags(run))
        mlflow.log_params(training_params(run))
        mlflow.log_metrics(evaluation_metrics(run.evaluation))
        _log_artifacts(run)
        dataset = mlflow.data.from_pandas(
            run.train_features.reset_index(drop=True),
            source=dataset_source(run.data_source),
            name=f"features-{run.resolved_feature_set_hash()[:12]}",
        )
        mlflow.log_input(dataset, context="training")
        example = run.train_features.head(5)
        prediction = np.asarray(run.model.predict(example))
        example = schema_frame(example)
        signature = infer_signature(example, prediction)
        serialization, trusted = model_serialization(run.model)
        mlflow.log_param("model.serialization", serialization)
        info = mlflow.sklearn.log_model(
            run.model,
            name=MODEL_NAME,
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(run.model),
            serialization_format=serialization,
            skops_trusted_types=trusted,
        )
        return LoggedRun(
            run_id=active.info.run_id,
            model_uri=info.model_uri,
            model_id=getattr(info, "model_id", None),
            experiment_id=experiment_id,
        )


def read_evidence(store: MlflowStore, run_id: str, version: str | None = None) -> RunEvidence:
    """Read a logged run back: the evaluation, forecasts and importance the review needs.

    Raises
    ------
    TrackingError
        If the run lacks the dynamargin tags or artifacts (not logged by
        :func:`log_training_run`).
    """
    client = store.client()
    tags = client.get_run(run_id).data.tags
    missing = [t for t in (TAG_MODEL_COLUMN, TAG_DATA_THROUGH, TAG_HORIZON) if t not in tags]
    if missing:
        raise TrackingError(
            f"run {run_id} in {store.tracking_uri} lacks tags {missing}; it was not logged by "
            "dynamargin's log_training_run and cannot be reviewed"
        )
    with tempfile.TemporaryDirectory(prefix="dynamargin-evidence-") as tmp:
        try:
            local = Path(client.download_artifacts(run_id, "evaluation", tmp))
            evaluation = json.loads((local / "evaluation.json").read_text())
            forecasts = pd.read_parquet(local / "forecasts.parquet")
        except (OSError, ValueError) as exc:
            raise TrackingError(
                f"run {run_id}: cannot read {EVALUATION_JSON} / {FORECASTS_PARQUET}: {exc}"
            ) from exc
        importance = _read_importance(client, run_id, tmp)
    leakage = tags.get(TAG_LEAKAGE_PASSED)
    evidence = CandidateEvidence(
        model=tags[TAG_MODEL_COLUMN],
        evaluation=evaluation,
        forecasts=forecasts,
        data_through=pd.Timestamp(tags[TAG_DATA_THROUGH]).to_pydatetime(),
        horizon_hours=int(tags[TAG_HORIZON]),
        leakage_passed=None if leakage in (None, "not_run") else leakage == "true",
        leakage_detail=tags.get(TAG_LEAKAGE_DETAIL, ""),
        version=version,
    )
    return RunEvidence(evidence=evidence, feature_importance=importance, run_id=run_id)


@dataclass(frozen=True)
class RunEvidence:
    """A logged run as review evidence plus its feature importance."""

    evidence: CandidateEvidence
    feature_importance: pd.Series | None
    run_id: str


def schema_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with tz-aware datetime columns as naive UTC, for the MLflow signature.

    MLflow schemas cannot carry a time zone and reject tz-aware columns at enforcement, so
    the signature and input example describe ``ts`` as naive UTC.
    """
    out = frame.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.DatetimeTZDtype):
            out[column] = out[column].dt.tz_convert("UTC").dt.tz_localize(None)
    return out


def dataset_source(source: str) -> DatasetSource:
    """MLflow dataset source for a data location.

    Local paths and ``file://``/``http(s)://`` URIs resolve to MLflow's own source types;
    anything else (``synthetic://...``, a venue name) is kept verbatim in a code source,
    because MLflow refuses sources it cannot resolve.
    """
    try:
        return resolve_dataset_source(source)
    except MlflowException:
        return CodeDatasetSource(tags={TAG_DATA_SOURCE: source})


def training_params(run: TrainingRun) -> dict[str, str]:
    """Params of a run: ``model.*``, ``feature.*``, hash, data range and git commit."""
    params: dict[str, str] = {
        "model.class": f"{type(run.model).__module__}.{type(run.model).__qualname__}",
        "model.name": run.model_name,
        "horizon_hours": str(run.horizon_hours),
        "feature_set_hash": run.resolved_feature_set_hash(),
        "n_features": str(run.train_features.shape[1]),
        "n_train_rows": str(run.train_features.shape[0]),
        "data.start": pd.Timestamp(run.data_start).isoformat(),
        "data.through": pd.Timestamp(run.data_through).isoformat(),
        "data.source": run.data_source,
        "git.commit": git_commit() or "unavailable",
    }
    get_params = getattr(run.model, "get_params", None)
    model_params = get_params(deep=True) if callable(get_params) else {}
    for key, value in model_params.items():
        if hasattr(value, "get_params"):
            continue  # a nested estimator: its own parameters are listed as key__param
        params[f"model.{key}"] = _param_text(value)
    for key, value in flatten_evaluation(run.feature_params).items():
        params[f"feature.{key}"] = _param_text(value)
    for key, value in flatten_evaluation(run.evaluation).items():
        if key.split(".")[0] in EVALUATION_PARAM_SECTIONS:
            params[f"evaluation.{key}"] = _param_text(value)
    return {sanitize_key(k): v for k, v in params.items()}


def evaluation_metrics(evaluation: Mapping[str, Any]) -> dict[str, float]:
    """Every number of an evaluation dict as an MLflow metric (sanitised dotted keys).

    Booleans become 0/1 and Basel zones an extra ``zone_level`` (0 green, 1 yellow, 2 red);
    other strings are left to the evaluation JSON artifact. The sections that describe the
    setup rather than the result (``config``, ``data``, ``tuning``) are params instead.
    """
    metrics: dict[str, float] = {}
    for key, value in flatten_evaluation(evaluation).items():
        if key.split(".")[0] in EVALUATION_PARAM_SECTIONS:
            continue
        name = sanitize_key(key)
        if isinstance(value, bool):
            metrics[name] = float(value)
        elif isinstance(value, int | float | np.integer | np.floating):
            metrics[name] = float(value)
        elif isinstance(value, str) and key.endswith(".zone") and value in ZONE_LEVEL:
            metrics[f"{name}_level"] = float(ZONE_LEVEL[value])
    return metrics


_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./ ]")


def sanitize_key(key: str) -> str:
    """Make a metric/param key acceptable to MLflow (letters, digits, ``_-./`` and space)."""
    clean = _UNSAFE.sub("_", key).strip()
    if not clean or ".." in clean or clean.startswith("/"):
        clean = clean.replace("..", "._").lstrip("/") or "_"
    return clean[:250]


def feature_set_hash(catalog: pd.DataFrame) -> str:
    """SHA-256 of the feature catalog (row and column order do not matter)."""
    canonical = catalog.reindex(sorted(catalog.columns), axis=1).astype(str)
    canonical = canonical.sort_values(list(canonical.columns)).reset_index(drop=True)
    return hashlib.sha256(canonical.to_csv(index=False).encode()).hexdigest()


def git_commit(root: Path = PROJECT_ROOT) -> str | None:
    """HEAD commit of the project (with ``-dirty`` if the tree has changes), or None."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        logger.info("no git commit recorded: %s", exc)
        return None
    return f"{head}-dirty" if dirty else head


def model_serialization(model: Any) -> tuple[str, list[str] | None]:
    """Serialization format for the model and, for skops, the types to trust on load.

    skops (MLflow's default) refuses unknown types at load time unless they are listed; the
    list is computed here from the model itself and stored in the MLmodel file, so loading
    trusts exactly what was logged. A model skops cannot serialize falls back to
    cloudpickle, with a warning, and the run records which format was used.
    """
    try:
        import skops.io

        trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    except Exception as exc:  # skops raises many types for objects it cannot persist
        logger.warning("skops cannot serialize %s (%s); using cloudpickle", type(model), exc)
        return "cloudpickle", None
    return "skops", trusted


def pip_requirements(model: Any) -> list[str]:
    """Pinned requirements of the model's flavour (skips MLflow's slow inference)."""
    names = {"scikit-learn", "numpy", "pandas", "scipy", "skops"}
    top = type(model).__module__.split(".")[0]
    names.add(_IMPORT_TO_DISTRIBUTION.get(top, top))
    pinned = []
    for name in sorted(names):
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue  # e.g. the project's own package ("models") when run from a checkout
    return pinned


# Import names that differ from their distribution names. A full scan with
# importlib.metadata.packages_distributions() costs seconds per process.
_IMPORT_TO_DISTRIBUTION: Final[Mapping[str, str]] = {"sklearn": "scikit-learn"}


def _run_tags(run: TrainingRun) -> dict[str, str]:
    leakage = "not_run" if run.leakage_passed is None else str(run.leakage_passed).lower()
    return {
        TAG_MODEL_COLUMN: run.model_name,
        TAG_HORIZON: str(run.horizon_hours),
        TAG_DATA_SOURCE: run.data_source,
        TAG_DATA_START: pd.Timestamp(run.data_start).isoformat(),
        TAG_DATA_THROUGH: pd.Timestamp(run.data_through).isoformat(),
        TAG_FEATURE_SET_HASH: run.resolved_feature_set_hash(),
        TAG_LEAKAGE_PASSED: leakage,
        TAG_LEAKAGE_DETAIL: run.leakage_detail[:8000],
    }


def _log_artifacts(run: TrainingRun) -> None:
    with tempfile.TemporaryDirectory(prefix="dynamargin-run-") as tmp:
        root = Path(tmp)
        (root / "evaluation").mkdir()
        (root / "features").mkdir()
        (root / "plots").mkdir()
        (root / EVALUATION_JSON).write_text(
            json.dumps(run.evaluation, indent=2, sort_keys=True, default=_json_default)
        )
        run.forecasts.to_parquet(root / FORECASTS_PARQUET, index=False)
        run.feature_catalog.to_csv(root / FEATURE_CATALOG_CSV, index=False)
        if run.feature_importance is not None:
            importance = run.feature_importance.rename("importance").rename_axis("feature")
            importance.reset_index().to_csv(root / FEATURE_IMPORTANCE_CSV, index=False)
        frames = {label: rows for label, rows in run.forecasts.groupby("model", sort=True)}
        (root / "plots" / "calibration.png").write_bytes(png_bytes(calibration_figure(frames)))
        (root / "plots" / "forecast_vs_realized.png").write_bytes(
            png_bytes(forecast_vs_realized_figure(frames, highlight=run.model_name))
        )
        for sub in ("evaluation", "features", "plots"):
            mlflow.log_artifacts(str(root / sub), artifact_path=sub)


def _read_importance(client: Any, run_id: str, tmp: str) -> pd.Series | None:
    listed = {a.path for a in client.list_artifacts(run_id, "features")}
    if FEATURE_IMPORTANCE_CSV not in listed:
        return None
    path = Path(client.download_artifacts(run_id, FEATURE_IMPORTANCE_CSV, tmp))
    frame = pd.read_csv(path)
    return frame.set_index("feature")["importance"].astype(float)


def _param_text(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text[:6000]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer | np.floating):
        return value.item()
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    raise TypeError(f"evaluation value {value!r} of type {type(value).__name__} is not JSON-able")


def log_summary_run(
    tracking_uri: str,
    artifact_root: Path,
    experiment: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    files: Sequence[Path] = (),
    artifact_path: str = "summary",
) -> str:
    """Log one run of flat params, flat metrics and files to ``experiment`` (e.g. a replay).

    The experiment is created with its artifact location under ``artifact_root``, so nothing
    falls back to ``./mlruns``.

    Returns
    -------
    str
        The MLflow run id.
    """
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        artifact_root.mkdir(parents=True, exist_ok=True)
        experiment_id = client.create_experiment(
            experiment, artifact_location=artifact_root.resolve().as_uri()
        )
    else:
        experiment_id = found.experiment_id
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    entries = [Param(sanitize_key(k), _param_text(v)) for k, v in params.items()]
    values = [Metric(sanitize_key(k), float(v), now, 0) for k, v in metrics.items()]
    try:
        # MLflow takes at most 100 params and 1000 metrics per batch.
        for i in range(0, len(entries), 100):
            client.log_batch(run_id, params=entries[i : i + 100])
        for i in range(0, len(values), 1000):
            client.log_batch(run_id, metrics=values[i : i + 1000])
        for path in files:
            client.log_artifact(run_id, str(path), artifact_path=artifact_path)
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
    return run_id
