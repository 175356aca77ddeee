"""The deployments as a user runs them: a real Prefect server, ``dynamargin deploy``, a runner.

In-process flow tests (``prefect_test_harness``) never load an entrypoint the way a runner
does, so they missed that ``pipelines/flows/features.py`` shadowed the ``features`` package
once a runner put ``pipelines/flows/`` on ``sys.path``. Here a real ``prefect server start``
runs on a loopback port, ``dynamargin deploy`` serves the three deployments in its own
process, and each deployment is triggered through the server and must reach ``Completed``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import psutil
import pytest

from tests.pipelines.conftest import small_config

# Generous: a loaded 2-core machine runs the three flows several times slower than idle.
pytestmark = pytest.mark.timeout(1800)

DYNAMARGIN = str(Path(sys.executable).with_name("dynamargin"))
PREFECT = str(Path(sys.executable).with_name("prefect"))
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _environment(home: Path, api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "false",
            "DO_NOT_TRACK": "1",
        }
    )
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A real ``prefect server start`` on a free loopback port; yields (api url, home)."""
    home = tmp_path_factory.mktemp("prefect-server-home")
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    log = (home / "server.log").open("wb")
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=_environment(home, api_url),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"prefect server exited: {(home / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("prefect server did not answer /api/health within 120 s")
        yield api_url, home
    finally:
        _stop(server)
        log.close()


# Prefect's own client retries these (PREFECT_CLIENT_MAX_RETRIES, Retry-After honoured): the
# server answers 503 while its SQLite database is busy, which a loaded CI machine provokes.
RETRY_STATUS = {429, 502, 503}


def _api(method: str, url: str, **kwargs: object) -> httpx.Response:
    """One API call with the Prefect client's retry policy; other errors are raised."""
    delay = 1.0
    for attempt in range(8):
        try:
            response = httpx.request(method, url, timeout=30, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError:
            if attempt == 7:
                raise
        else:
            if response.status_code not in RETRY_STATUS or attempt == 7:
                return response
            retry_after = response.headers.get("Retry-After", "")
            delay = float(retry_after) if retry_after.isdigit() else delay
        time.sleep(delay)
        delay = min(delay * 2, 30.0)
    raise AssertionError("unreachable")


def _deployment_id(api_url: str, flow: str, name: str) -> str | None:
    response = _api("GET", f"{api_url}/deployments/name/{flow}/{name}")
    return response.json()["id"] if response.status_code == 200 else None


def _run_deployment(api_url: str, flow: str, name: str, timeout_s: float) -> dict[str, object]:
    """Trigger ``flow/name`` through the server and wait for a terminal state."""
    deployment = _deployment_id(api_url, flow, name)
    assert deployment is not None, f"deployment {flow}/{name} is not registered"
    created = _api("POST", f"{api_url}/deployments/{deployment}/create_flow_run", json={})
    created.raise_for_status()
    run_id = created.json()["id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = _api("GET", f"{api_url}/flow_runs/{run_id}").json()
        if run["state_type"] in TERMINAL:
            return run
        time.sleep(1.0)
    pytest.fail(f"{flow}/{name} not finished after {timeout_s} s (state {run['state_type']})")


def _wait_for_deployments(api_url: str, deploy: subprocess.Popen[bytes], log: Path) -> None:
    wanted = [
        ("pipeline", "retrain-daily"),
        ("publish", "publish-hourly"),
        ("backtest", "backtest-weekly"),
    ]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if deploy.poll() is not None:
            pytest.fail(f"dynamargin deploy exited early:\n{log.read_text()[-3000:]}")
        if all(_deployment_id(api_url, flow, name) for flow, name in wanted):
            return
        time.sleep(1.0)
    pytest.fail(f"deployments not registered within 120 s:\n{log.read_text()[-3000:]}")


def test_each_deployment_completes_through_a_real_runner(
    prefect_api: tuple[str, Path], tmp_path: Path
) -> None:
    """retrain-daily, publish-hourly and backtest-weekly all reach Completed when served."""
    api_url, home = prefect_api
    config = small_config(auto_promote=True, wait_for_approval=False)
    replay = config.backtest.replay  # type: ignore[attr-defined]
    config = config.model_copy(  # type: ignore[attr-defined]
        update={
            # 10k traders: the runner's loading of the flow is under test, not the replay.
            "backtest": config.backtest.model_copy(  # type: ignore[attr-defined]
                update={
                    "enabled": True,
                    "seeds": 1,
                    "policies": ("static", "ewma"),
                    "replay": replace(replay, book=replace(replay.book, n_traders=10_000)),
                }
            ),
            "publish": config.publish.model_copy(  # type: ignore[attr-defined]
                update={"publish_time": "data-end"}
            ),
        }
    )
    config_file = tmp_path / "pipeline.json"
    config_file.write_text(json.dumps(config.model_dump(mode="json")))  # type: ignore[attr-defined]
    workdir = tmp_path / "workdir"
    log_path = tmp_path / "deploy.log"
    with log_path.open("wb") as log:
        deploy = subprocess.Popen(
            [DYNAMARGIN, "--workdir", str(workdir), "deploy", "--config", str(config_file)],
            env=_environment(home, api_url),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,  # not the project root: the entrypoints must import from anywhere
        )
        try:
            _wait_for_deployments(api_url, deploy, log_path)
            results = {}
            for flow, name, budget in (
                ("pipeline", "retrain-daily", 600),
                ("publish", "publish-hourly", 240),
                ("backtest", "backtest-weekly", 600),
            ):
                run = _run_deployment(api_url, flow, name, budget)
                results[name] = (run["state_type"], run["state"]["message"])
            failed = {k: v for k, v in results.items() if v[0] != "COMPLETED"}
            assert not failed, f"{failed}\n{log_path.read_text()[-4000:]}"
            assert (workdir / "publications.db").exists()
        finally:
            _stop(deploy)
    text = log_path.read_text()
    assert "deploy: SIGTERM received; shutting down" in text
    assert "deploy: stopped" in text


def test_sigterm_during_a_run_stops_deploy_and_its_children(
    prefect_api: tuple[str, Path], tmp_path: Path
) -> None:
    """SIGTERM while a flow run is in progress: deploy exits, no process is left behind."""
    api_url, home = prefect_api
    config = small_config(auto_promote=True, wait_for_approval=False)
    config_file = tmp_path / "pipeline.json"
    config_file.write_text(json.dumps(config.model_dump(mode="json")))  # type: ignore[attr-defined]
    log_path = tmp_path / "deploy.log"
    with log_path.open("wb") as log:
        deploy = subprocess.Popen(
            [DYNAMARGIN, "--workdir", str(tmp_path / "wd"), "deploy", "--config", str(config_file)],
            env=_environment(home, api_url),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for_deployments(api_url, deploy, log_path)
            deployment = _deployment_id(api_url, "pipeline", "retrain-daily")
            _api(
                "POST", f"{api_url}/deployments/{deployment}/create_flow_run", json={}
            ).raise_for_status()
            parent = psutil.Process(deploy.pid)
            # The runner polls the server, then starts a process that imports the flow: on a
            # loaded machine that took over 120 s once.
            deadline = time.monotonic() + 360
            while not parent.children(recursive=True) and time.monotonic() < deadline:
                time.sleep(0.5)
            children = parent.children(recursive=True)
            assert children, "the runner never started the flow-run process"
            deploy.send_signal(signal.SIGTERM)
            deploy.wait(timeout=60)
        finally:
            _stop(deploy)
    _, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"left behind: {[p.pid for p in alive]}\n{log_path.read_text()[-3000:]}"
    assert "deploy: SIGTERM received; shutting down" in log_path.read_text()
