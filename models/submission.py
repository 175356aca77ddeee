"""Submit a trained candidate for review: the one call a training flow makes.

``submit_candidate`` logs the run, registers a new version with ``@challenger``, runs the
review gates against the current ``@champion`` and the baselines, records the outcome as
version tags, writes the review report under ``<workdir>/reports/`` (and logs it to the
run), and promotes automatically only when the caller's settings allow it and every gate
passed. Otherwise the version waits for ``dynamargin review approve``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from models.registry import (
    TAG_REPORT_HTML,
    TAG_REPORT_MARKDOWN,
    AuditEvent,
    ChampionRegistry,
    MlflowStore,
    VersionInfo,
    registered_model_name,
)
from models.review import CandidateEvidence, GateConfig, GateReport, evaluate_gates
from models.review_report import ReportPaths, ReviewContext, write_review_report
from models.tracking import LoggedRun, TrainingRun, log_training_run, read_evidence

AUTO_REVIEWER = "auto-promotion"


@dataclass(frozen=True)
class Submission:
    """What happened to a submitted candidate."""

    version: VersionInfo
    run: LoggedRun
    gates: GateReport
    report: ReportPaths
    promoted: AuditEvent | None


def submit_candidate(
    store: MlflowStore,
    run: TrainingRun,
    *,
    reports_dir: Path,
    gate_config: GateConfig | None = None,
    auto_promote: bool = False,
    reference_time: datetime | None = None,
    model_name: str | None = None,
    now: datetime | None = None,
) -> Submission:
    """Log, register, review and (if allowed) promote one candidate.

    Parameters
    ----------
    store
        The MLflow store.
    run
        The training run's outputs.
    reports_dir
        Where the review report goes (``<workdir>/reports``).
    gate_config
        Gate settings (defaults: :class:`~models.review.GateConfig`).
    auto_promote
        Promote without a human when every gate passes (from settings; never overrides).
    reference_time
        "Now" for the freshness gate (the as-of time when replaying history).
    model_name
        Registered model name; defaults to ``dynamargin-vol-<H>h``.
    now
        Time of the review and of any automatic decision (defaults to the current time).

    Returns
    -------
    Submission
    """
    now = now or datetime.now(UTC)
    registry = ChampionRegistry(store, model_name or registered_model_name(run.horizon_hours))
    logged = log_training_run(store, run)
    version = registry.register_candidate(
        model_uri=logged.model_uri,
        run_id=logged.run_id,
        model_id=logged.model_id,
        tags={"dynamargin.run_id": logged.run_id, "dynamargin.model_column": run.model_name},
        description=f"{run.model_name}, data through {run.data_through.isoformat()}",
    )
    gates, report = review_version(
        store,
        registry,
        version.version,
        reports_dir=reports_dir,
        gate_config=gate_config,
        reference_time=reference_time,
        now=now,
        challenger=CandidateEvidence(
            model=run.model_name,
            evaluation=run.evaluation,
            forecasts=run.forecasts,
            data_through=run.data_through,
            horizon_hours=run.horizon_hours,
            leakage_passed=run.leakage_passed,
            leakage_detail=run.leakage_detail,
            version=version.version,
        ),
        challenger_importance=run.feature_importance,
    )
    promoted = None
    if auto_promote and gates.passed:
        promoted = registry.approve(
            version.version,
            by=AUTO_REVIEWER,
            note="all review gates passed and settings allow automatic promotion",
            automatic=True,
            now=now,
        )
    return Submission(registry.version(version.version), logged, gates, report, promoted)


def review_version(
    store: MlflowStore,
    registry: ChampionRegistry,
    version: str,
    *,
    reports_dir: Path,
    gate_config: GateConfig | None = None,
    reference_time: datetime | None = None,
    now: datetime | None = None,
    challenger: CandidateEvidence | None = None,
    challenger_importance: pd.Series | None = None,
) -> tuple[GateReport, ReportPaths]:
    """(Re-)run the gates of a registered version against the current champion.

    Use it after the champion changed, or when the gate configuration changed. The gate
    tags and the report of the version are replaced.
    """
    info = registry.version(version)
    if info.run_id is None:
        raise ValueError(f"{registry.model_name} v{version} has no run; it cannot be reviewed")
    if challenger is None:
        logged = read_evidence(store, info.run_id, info.version)
        challenger, challenger_importance = logged.evidence, logged.feature_importance
    champion_info = registry.champion()
    champion = champion_importance = None
    if champion_info is not None and champion_info.version != info.version:
        if champion_info.run_id is None:
            raise ValueError(f"champion v{champion_info.version} has no run to compare with")
        logged_champion = read_evidence(store, champion_info.run_id, champion_info.version)
        champion, champion_importance = logged_champion.evidence, logged_champion.feature_importance
    gates = evaluate_gates(
        challenger, champion, gate_config, reference_time=reference_time, evaluated_at=now
    )
    registry.record_review(info.version, gates.to_tags())
    report = write_review_report(
        ReviewContext(
            model_name=registry.model_name,
            challenger=challenger,
            champion=champion,
            gates=gates,
            challenger_importance=challenger_importance,
            champion_importance=champion_importance,
            run_id=info.run_id,
        ),
        reports_dir,
    )
    client = store.client()
    for path in (report.html, report.markdown):
        client.log_artifact(info.run_id, str(path), artifact_path="review")
    gates_json = report.html.with_suffix(".gates.json")
    gates_json.write_text(json.dumps(gates.to_dict(), indent=2, sort_keys=True, default=str))
    client.log_artifact(info.run_id, str(gates_json), artifact_path="review")
    registry.record_review(
        info.version,
        {TAG_REPORT_HTML: str(report.html), TAG_REPORT_MARKDOWN: str(report.markdown)},
    )
    return gates, report
