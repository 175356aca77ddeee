"""Task-runner selection: the thread pool by default, Dask for scale-out.

Per-asset work (features, per-asset evaluation, replay) is mapped over assets; the runner
decides where those tasks execute. The choice never changes results, only where and how
fast they are computed; ``tests/pipelines`` checks that.
"""

from __future__ import annotations

from typing import Literal

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from pipelines.errors import PipelineError

RunnerName = Literal["threads", "dask"]


class RunnerConfigError(PipelineError, ValueError):
    """A task-runner choice that cannot be built (unknown name, bad address)."""


def make_task_runner(
    runner: RunnerName = "threads",
    *,
    dask_address: str | None = None,
    n_workers: int = 2,
    max_threads: int | None = None,
) -> TaskRunner:
    """Build the task runner a flow run should use.

    Parameters
    ----------
    runner
        ``"threads"`` (default, in-process thread pool) or ``"dask"``.
    dask_address
        Scheduler address such as ``tcp://10.0.0.5:8786`` of an existing Dask cluster.
        Without it, ``"dask"`` starts a temporary local cluster of ``n_workers`` processes.
    n_workers
        Worker processes of the temporary local Dask cluster.
    max_threads
        Thread-pool size for ``"threads"`` (default: Prefect's).

    Returns
    -------
    prefect.task_runners.TaskRunner
        A runner to pass to ``flow.with_options(task_runner=...)``.

    Raises
    ------
    RunnerConfigError
        If the runner name is unknown or the address is not a ``tcp://`` URL.
    """
    if runner == "threads":
        return ThreadPoolTaskRunner(max_workers=max_threads)
    if runner == "dask":
        # Imported here so the thread-pool path never pays for importing distributed.
        from prefect_dask import DaskTaskRunner

        if dask_address is not None:
            if not dask_address.startswith(("tcp://", "tls://", "inproc://")):
                raise RunnerConfigError(
                    f"--dask-address {dask_address!r} is not a scheduler address; "
                    "expected e.g. tcp://127.0.0.1:8786"
                )
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={
                "n_workers": n_workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            },
        )
    raise RunnerConfigError(f"unknown runner {runner!r}; choose 'threads' or 'dask'")
