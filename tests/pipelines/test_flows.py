"""The flows under a real Prefect test server, on a small synthetic market.

The full pipeline leaves a champion in MLflow and a signed
batch in the store; a corrupt input fails with a clear message and publishes nothing; a
missing champion publishes fallback snapshots; a review pauses and resumes on approval;
the Dask runner (2-worker LocalCluster) gives the same features as the thread pool.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from serving.mechanisms import POLICY_VERSION, split_provenance
from tests.pipelines.conftest import PipelineRun, copy_workdir

pytestmark = pytest.mark.timeout(600)


def _publications(workdir: Path) -> tuple[list[int], dict[str, object]]:
    from serving.store import PublicationStore, default_store_url

    with PublicationStore(default_store_url(workdir)) as store:
        batches = [b.batch_id for b in store.batches()]
        latest = {a: (p.update_id, p.status, p.multiplier) for a, p in store.latest().items()}
    return batches, latest


def test_pipeline_leaves_champion_and_signed_batch(pipeline_run: PipelineRun) -> None:
    from pipelines.flows.review import open_registry
    from pipelines.settings import get_settings
    from serving.signing import verify_snapshot
    from serving.store import PublicationStore, default_store_url

    summary = pipeline_run.summary
    registry = open_registry(get_settings(pipeline_run.workdir))
    champion = registry.champion()
    assert champion is not None and champion.version == summary.train.version
    assert summary.review.decision == "auto" and summary.review.gates_passed
    assert set(summary.train.mean_qlike) == {"ewma", "har", "lgbm"}
    assert Path(summary.review.report_html).is_file()

    with PublicationStore(default_store_url(pipeline_run.workdir)) as store:
        latest = store.latest()
        assert len(store.batches()) == 1
    assert sorted(latest) == list(summary.features.assets)
    for publication in latest.values():
        snapshot = publication.snapshot
        assert snapshot["status"] == "ok"
        # The champion's version, and the policy that published it: the default.
        assert split_provenance(snapshot["provenance"]["model_version"]) == (
            champion.version,
            f"{POLICY_VERSION}.default",
        )
        assert verify_snapshot(snapshot).ok
    assert summary.publish.source == "champion"


def test_summary_renders_every_section(pipeline_run: PipelineRun) -> None:
    from rich.console import Console

    from pipelines.summary import render_summary

    console = Console(record=True, width=160)
    render_summary(pipeline_run.summary, console)
    text = console.export_text()
    for needle in (
        "Models compared",
        "review gates",
        "published",
        "ui mlflow",
        "serve",
        pipeline_run.summary.review.report_html,
    ):
        assert needle in text


def test_corrupt_input_fails_clearly_and_publishes_nothing(
    pipeline_run: PipelineRun, tmp_path: Path
) -> None:
    from pipelines.flows.config import DataConfig
    from pipelines.flows.pipeline import pipeline_flow

    workdir = copy_workdir(pipeline_run, tmp_path / "workdir")
    before = _publications(workdir)
    bad = tmp_path / "dump" / "binance/data/spot/monthly/klines/BTCUSDT/1h"
    bad.mkdir(parents=True)
    (bad / "BTCUSDT-1h-2024-01.zip").write_bytes(b"PK\x03\x04 this is not a zip archive")
    config = pipeline_run.config.model_copy(update={"data": DataConfig(data=tmp_path / "dump")})

    started = time.perf_counter()
    with pytest.raises(Exception, match=r"BTCUSDT-1h-2024-01\.zip.*(corrupt|zip)"):
        pipeline_flow(str(workdir), config)
    # A data error is not retried: it fails the same way every time.
    assert time.perf_counter() - started < 60
    assert _publications(workdir) == before


def test_missing_champion_publishes_fallback(pipeline_run: PipelineRun, tmp_path: Path) -> None:
    import shutil

    from pipelines.flows.publish import publish_flow
    from serving.policy import PolicyConfig

    workdir = tmp_path / "workdir"
    workdir.mkdir()
    # Same market, no MLflow store at all: there is no champion to load.
    shutil.copytree(pipeline_run.workdir / "store", workdir / "store")
    config = pipeline_run.config
    output = publish_flow(str(workdir), pipeline_run.summary.features, config.data, config.publish)
    assert output.source == "fallback" and "no champion" in output.note
    assert {row["status"] for row in output.assets} == {"fallback"}
    assert {row["multiplier"] for row in output.assets} == {PolicyConfig().fallback_multiplier}
    batches, latest = _publications(workdir)
    assert len(batches) == 1 and sorted(latest) == list(pipeline_run.summary.features.assets)


def test_stale_champion_falls_back(pipeline_run: PipelineRun) -> None:
    from models.forecast_sources import champion_forecasts
    from models.spec import TargetSpec
    from pipelines.settings import get_settings

    settings = get_settings(pipeline_run.workdir)
    features = pipeline_run.summary.features
    later = pd.Timestamp(features.data_through).to_pydatetime() + pd.Timedelta(days=30)
    bundle = champion_forecasts(
        settings.workdir,
        settings.mlflow_uri,
        TargetSpec(),
        features.load(),
        later,
        history_days=10,
        max_age_days=14,
    )
    assert bundle.is_fallback and "stale" in bundle.note and bundle.forecasts.empty


def test_review_pauses_then_resumes_on_approval(pipeline_run: PipelineRun, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    from models.review import GateConfig
    from pipelines.flows.config import ReviewConfig
    from pipelines.flows.review import (
        TAG_REVIEW_FLOW_RUN,
        ApprovalInput,
        open_registry,
        resume_if_waiting,
        resume_review,
        review_flow,
    )
    from pipelines.settings import get_settings

    workdir = copy_workdir(pipeline_run, tmp_path / "workdir")
    registry = open_registry(get_settings(workdir))
    champion = registry.champion()
    assert champion is not None and champion.run_id is not None
    # A second candidate from the same run: equal to the champion, so its gates pass.
    candidate = registry.register_candidate(
        model_uri=f"runs:/{champion.run_id}/model", run_id=champion.run_id
    ).version
    review = ReviewConfig(
        gates=GateConfig(allowed_var_zones=("green", "yellow")),
        auto_promote=False,
        approval_timeout_s=240,
        poll_interval_s=1,
    )
    reference = pd.Timestamp(pipeline_run.summary.features.data_through).to_pydatetime()
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = review_flow(candidate, str(workdir), review, reference)
        except BaseException as exc:  # surfaced by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    run_id = _wait_for_paused_run(registry, candidate, TAG_REVIEW_FLOW_RUN, get_client)
    assert run_id is not None, outcome.get("error")
    assert registry.champion().version == champion.version  # nothing moves while paused

    # What `dynamargin review approve` does: record the decision, then resume the run.
    registry.approve(candidate, by="risk-officer", note="reviewed the report")
    resume_review(
        candidate, ApprovalInput(approve=True, by="risk-officer", note="ok"), str(workdir)
    )
    thread.join(timeout=120)
    assert not thread.is_alive() and "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.decision == "approve" and result.champion == candidate
    assert registry.champion().version == candidate
    # The run has finished: the CLI hook finds nothing left to resume.
    again = ApprovalInput(approve=True, by="risk-officer", note="again")
    assert resume_if_waiting(candidate, again, workdir) is None


def _wait_for_paused_run(registry, version, tag, get_client, timeout=120.0):  # type: ignore[no-untyped-def]
    from uuid import UUID

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run_id = registry.version(version).tags.get(tag)
        if run_id:
            with get_client(sync_client=True) as client:
                state = client.read_flow_run(UUID(run_id)).state
            if state is not None and state.is_paused():
                return run_id
        time.sleep(0.5)
    return None


def test_dask_runner_gives_the_same_features(pipeline_run: PipelineRun) -> None:
    from prefect.settings import PREFECT_TASKS_REFRESH_CACHE, temporary_settings

    from features.build import build_features
    from features.store import MarketStore
    from pipelines.flows.featurize import features_flow
    from pipelines.runners import make_task_runner

    workdir = str(pipeline_run.workdir)
    data = pipeline_run.config.data
    threads = pipeline_run.summary.features.load().frame
    # Recompute every per-asset task on the Dask workers instead of reading the cache.
    with temporary_settings({PREFECT_TASKS_REFRESH_CACHE: True}):
        on_dask = features_flow.with_options(task_runner=make_task_runner("dask", n_workers=2))(
            workdir, data
        )
    pd.testing.assert_frame_equal(on_dask.load().frame, threads)
    market = MarketStore(pipeline_run.workdir / "store").read_market(data.interval)
    pd.testing.assert_frame_equal(build_features(market).frame, threads)


def test_publish_command_with_a_baseline(
    pipeline_run: PipelineRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from pipelines.cli import app

    for key in ("PREFECT_HOME", "MLFLOW_TRACKING_URI", "DO_NOT_TRACK"):
        monkeypatch.delenv(key, raising=False)  # the root callback sets them; undo after
    workdir = copy_workdir(pipeline_run, tmp_path / "workdir")
    before, _ = _publications(workdir)
    args = ["--workdir", str(workdir), "publish", "--model", "baseline:har", "--at", "data-end"]
    # The market is 200 days: calibrate on 60 of them, as the pipeline's short-market training.
    args += ["--calibration-days", "60"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["note"] == "har baseline"
    assert {row["asset"] for row in payload["assets"]} == set(pipeline_run.summary.features.assets)
    after, latest = _publications(workdir)
    assert len(after) == len(before) + 1
    assert all(update_id == 2 for update_id, _status, _m in latest.values())

    bad = CliRunner().invoke(app, ["--workdir", str(workdir), "publish", "--model", "garch"])
    assert bad.exit_code == 1 and "baseline:har" in bad.output
    short = CliRunner().invoke(app, args[:-2])  # the default 180-day window leaves 20 days
    assert short.exit_code == 1
    assert "or a shorter calibration window" in " ".join(short.output.split())
