"""What every flow shares: the work dir's settings, the offline Prefect environment, retries.

Flows take the work dir as a plain string parameter (a Prefect parameter must be JSON) and
rebuild :class:`~pipelines.settings.Settings` from it with :func:`flow_settings`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

from pipelines.errors import PipelineError
from pipelines.settings import Settings, configure_offline_environment, get_settings

IO_RETRIES: Final[int] = 3
"""Retries of tasks that touch files, databases or the registry."""

IO_RETRY_DELAYS: Final[list[float]] = [1.0, 4.0, 16.0]
"""Exponential backoff between those retries, in seconds."""


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry I/O hiccups, never a data or decision error.

    A corrupt file, a failed gate or a contract violation fails the same way every time;
    retrying it only delays the message. Locked databases, dropped connections and
    timeouts are worth another try.
    """
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import OperationalError

    error = state.result(raise_on_failure=False)
    transient = (OSError, TimeoutError, ConnectionError, MlflowException, OperationalError)
    return isinstance(error, transient) and not isinstance(error, ValueError)


IO_TASK: Final[dict[str, Any]] = {
    "retries": IO_RETRIES,
    "retry_delay_seconds": IO_RETRY_DELAYS,
    "retry_condition_fn": retry_transient,
}
"""Keyword arguments of ``@task`` for tasks that touch files, databases or the registry."""


class FlowInputError(PipelineError, RuntimeError):
    """A flow was handed something it cannot work on (no data, no feature set, no version)."""


def prepare_environment(workdir: Path | str | None = None) -> Settings:
    """Settings of ``workdir`` with Prefect, MLflow and results kept inside it.

    Call before :mod:`prefect` is imported for the first time in a process, so Prefect's
    root settings see ``PREFECT_HOME`` (the CLI's root callback does it for commands).
    Variables the operator has set are kept.
    """
    settings = get_settings(Path(workdir) if workdir is not None else None)
    configure_offline_environment(settings)
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(settings.prefect_home / "storage"))
    return settings


def flow_settings(workdir: str | None) -> Settings:
    """Settings of a flow run's work dir (the environment's when ``workdir`` is None)."""
    return get_settings(Path(workdir) if workdir else None)
