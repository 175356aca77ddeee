"""Scheduled deployments: retrain daily, publish hourly, backtest weekly (all UTC).

``dynamargin deploy`` serves them from the current process with :func:`prefect.serve`
(no work pool needed); ``prefect.yaml`` at the project root declares the same three for a
work pool. Watch them in the Prefect UI (``prefect server start``, then
http://127.0.0.1:4200/deployments) with ``PREFECT_API_URL`` pointing at that server.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from pipelines.flows.config import BacktestConfig, PipelineConfig
from pipelines.lifecycle import service_lifecycle


@dataclass(frozen=True)
class Schedule:
    """One deployment's name, cron (UTC) and what it runs."""

    name: str
    cron: str
    flow: str
    description: str


SCHEDULES: Final[tuple[Schedule, ...]] = (
    Schedule(
        "retrain-daily",
        "30 0 * * *",
        "pipeline",
        "ingest, features, train, review and publish every day at 00:30 UTC",
    ),
    Schedule(
        "publish-hourly",
        "5 * * * *",
        "publish",
        "a signed snapshot batch from the champion at minute 5 of every hour",
    ),
    Schedule(
        "backtest-weekly",
        "0 2 * * 1",
        "backtest",
        "the liquidation replay every Monday at 02:00 UTC",
    ),
)


def deployment_parameters(workdir: str, config: PipelineConfig) -> dict[str, dict[str, Any]]:
    """Parameters of each deployment (JSON), keyed by deployment name."""
    no_replay = config.model_copy(update={"backtest": BacktestConfig(enabled=False)})
    return {
        "retrain-daily": {"workdir": workdir, "config": no_replay.model_dump(mode="json")},
        "publish-hourly": {
            "workdir": workdir,
            "data": config.data.model_dump(mode="json"),
            "publish": config.publish.model_dump(mode="json"),
            "calibration": config.train.evaluation.calibration.model_dump(mode="json"),
        },
        "backtest-weekly": {
            "workdir": workdir,
            "data": config.data.model_dump(mode="json"),
            "backtest": config.backtest.model_dump(mode="json"),
        },
    }


def build_deployments(workdir: str, config: PipelineConfig) -> list[Any]:
    """The three :class:`prefect.deployments.runner.RunnerDeployment` objects.

    Entrypoints are importable module paths (``pipelines.flows.publish.publish_flow``), not
    file paths: a runner loads a file-path entrypoint as a script, which puts the script's
    folder first on ``sys.path`` where a sibling module could shadow a top-level package.
    """
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    from pipelines.flows.backtest import backtest_flow
    from pipelines.flows.pipeline import pipeline_flow
    from pipelines.flows.publish import publish_flow

    flows = {"pipeline": pipeline_flow, "publish": publish_flow, "backtest": backtest_flow}
    parameters = deployment_parameters(workdir, config)
    return [
        flows[item.flow].to_deployment(
            name=item.name,
            schedules=[Cron(item.cron, timezone="UTC")],
            parameters=parameters[item.name],
            description=item.description,
            tags=["dynamargin"],
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        for item in SCHEDULES
    ]


def serve_deployments(workdir: str, config: PipelineConfig, log: Callable[[str], None]) -> None:
    """Serve the deployments until SIGTERM or SIGINT, then stop cleanly.

    A stop signal pauses the schedules, cancels the flow runs in progress (the runner marks
    them cancelled) and terminates every child process before returning; ``log`` receives
    one line per lifecycle event.
    """
    from prefect.runner import Runner

    runner = Runner(name="dynamargin-deploy", pause_on_shutdown=True)
    for deployment in build_deployments(workdir, config):
        runner.add_deployment(deployment)
    asyncio.run(_serve_until_stopped(runner, log))


async def _serve_until_stopped(runner: Any, log: Callable[[str], None]) -> None:
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def stop() -> None:
        # Called from the signal handler: schedule the runner's own async shutdown.
        loop.call_soon_threadsafe(lambda: stopping.append(loop.create_task(runner.astop())))

    with service_lifecycle("deploy", stop, log):
        # Runner.start installs ``runner.handle_sigterm`` for SIGTERM; Prefect's own handler
        # calls the async ``stop`` without awaiting it and then exits mid-run, so ours
        # replaces it.
        runner.handle_sigterm = signal.getsignal(signal.SIGTERM)
        await runner.start()
        for task in stopping:
            await task
