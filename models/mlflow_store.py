"""Where runs, models and artifacts live: one MLflow store, bound without leaking globals."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import mlflow
from mlflow import MlflowClient

from models.errors import RegistryError

EXPERIMENT_NAME: Final = "dynamargin-vol"
"""Experiment that holds the training runs."""

_GLOBAL_URI_LOCK = threading.RLock()


@dataclass(frozen=True)
class MlflowStore:
    """Where runs, models and artifacts live.

    Parameters
    ----------
    tracking_uri
        Backend store, e.g. ``sqlite:///<workdir>/mlflow.db`` or
        ``postgresql+psycopg://user@host/db``. The registry uses the same store.
    artifact_root
        Directory for run and model artifacts. It is set explicitly on the experiment, so
        nothing falls back to ``./mlruns``.
    experiment_name
        Experiment that holds the training runs.
    """

    tracking_uri: str
    artifact_root: Path
    experiment_name: str = EXPERIMENT_NAME

    @classmethod
    def for_workdir(cls, workdir: Path, tracking_uri: str | None = None) -> MlflowStore:
        """The project's default store: SQLite and artifacts both under ``workdir``."""
        workdir = Path(workdir).resolve()
        uri = tracking_uri or f"sqlite:///{workdir / 'mlflow.db'}"
        return cls(tracking_uri=uri, artifact_root=workdir / "mlartifacts")

    @contextmanager
    def bound(self) -> Iterator[None]:
        """Point MLflow's process-global URIs at this store for the duration of a block.

        The fluent API (``start_run``, ``log_model``) and some store internals (the SQL
        registry resolving a ``models:/m-...`` source) read the global tracking URI; left
        unset it defaults to ``./mlflow.db`` or ``./mlruns`` in the current directory. The
        caller's URIs are restored afterwards. The globals are process-wide, so blocks are
        serialised across threads (flow task runners use threads).
        """
        with _GLOBAL_URI_LOCK:
            previous_tracking = mlflow.get_tracking_uri()
            previous_registry = mlflow.get_registry_uri()
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
            try:
                yield
            finally:
                mlflow.set_tracking_uri(previous_tracking)
                mlflow.set_registry_uri(previous_registry)

    def client(self) -> MlflowClient:
        """A client bound to this store (tracking and registry), independent of globals."""
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def ensure_experiment(self) -> str:
        """Return the experiment id, creating the experiment with an explicit artifact location.

        Raises
        ------
        RegistryError
            If the experiment exists but is deleted (restore or rename it).
        """
        client = self.client()
        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            location = (Path(self.artifact_root).resolve() / self.experiment_name).as_uri()
            return client.create_experiment(self.experiment_name, artifact_location=location)
        if experiment.lifecycle_stage != "active":
            raise RegistryError(
                f"experiment {self.experiment_name!r} in {self.tracking_uri} is deleted; "
                "restore it with `mlflow experiments restore` or choose another name"
            )
        return experiment.experiment_id
