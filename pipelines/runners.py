"""Task-runner selection: the thread pool by default, Dask for scale-out.

Per-asset work (features, per-asset evaluation, replay) is mapped over assets; the runner
decides where those tasks execute. The choice never changes results, only where and how
fast they are computed; ``tests/pipelines`` checks that.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

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
            return DaskTaskRunner(address=checked_address(dask_address))
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs=local_cluster_kwargs(n_workers),
        )
    raise RunnerConfigError(f"unknown runner {runner!r}; choose 'threads' or 'dask'")


def checked_address(dask_address: str) -> str:
    """``dask_address`` if it is a scheduler address, else :class:`RunnerConfigError`."""
    if not dask_address.startswith(("tcp://", "tls://", "inproc://")):
        raise RunnerConfigError(
            f"--dask-address {dask_address!r} is not a scheduler address; "
            "expected e.g. tcp://127.0.0.1:8786"
        )
    return dask_address


def local_cluster_kwargs(n_workers: int = 2, processes: bool = True) -> dict[str, Any]:
    """Settings of every temporary LocalCluster: one thread per worker, no dashboard."""
    return {
        "n_workers": n_workers,
        "threads_per_worker": 1,
        "processes": processes,
        "dashboard_address": None,
    }


@contextmanager
def dask_client(
    dask_address: str | None = None, *, n_workers: int = 2, processes: bool = True
) -> Iterator[Any]:
    """A ``distributed.Client`` for work submitted directly (not through a Prefect flow).

    Parameters
    ----------
    dask_address
        Scheduler of an existing cluster (``tcp://host:8786``); without it a temporary
        LocalCluster of ``n_workers`` workers is started and closed on exit.
    n_workers, processes
        Size and kind (processes or threads) of the temporary LocalCluster.

    Yields
    ------
    distributed.Client

    Raises
    ------
    RunnerConfigError
        If the address is not a scheduler address or no scheduler answers there.
    """
    # Imported here so a local run never pays for importing distributed.
    from distributed import Client, LocalCluster

    if dask_address is not None:
        try:
            client = Client(checked_address(dask_address))
        except OSError as exc:
            raise RunnerConfigError(
                f"cannot reach the Dask scheduler {dask_address}: {exc}"
            ) from exc
        with client:
            yield client
        return
    with (
        LocalCluster(**local_cluster_kwargs(n_workers, processes)) as cluster,
        Client(cluster) as client,
    ):
        yield client
