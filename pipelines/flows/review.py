"""``review_flow``: gates and report, then automatic promotion or a pause for approval.

When the settings allow automatic promotion and every gate passes, the challenger becomes
``@champion`` at once (recorded as ``auto``). Otherwise the flow records its own flow-run
id on the model version (tag :data:`TAG_REVIEW_FLOW_RUN`) and pauses with
``pause_flow_run(wait_for_input=ApprovalInput)``. A reviewer resumes it from the Prefect UI
(the input form is :class:`ApprovalInput`) or from the CLI: ``dynamargin review approve``
moves the alias and then calls :func:`resume_review`, so the paused run records the same
decision and finishes. A review that times out leaves the version pending; it can still be
approved later from the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger, pause_flow_run, task
from prefect.exceptions import FlowPauseTimeout
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from models.mlflow_store import MlflowStore
from models.registry import (
    CHAMPION,
    TAG_REVIEW_FLOW_RUN,
    ChampionRegistry,
    registered_model_name,
)
from models.submission import AUTO_REVIEWER, review_version
from pipelines.flows.config import ReviewConfig
from pipelines.flows.runtime import IO_TASK, FlowInputError, flow_settings
from pipelines.settings import Settings


class ApprovalInput(BaseModel):
    """The reviewer's decision, typed in the Prefect UI or sent by ``dynamargin review``."""

    approve: bool = Field(description="True promotes the version to @champion; False rejects.")
    by: str = Field(min_length=1, description="Who decides (recorded on the version).")
    note: str = Field(min_length=1, description="Why (recorded on the version).")
    override_reason: str | None = Field(
        default=None, description="Promote despite failed gates; the reason is recorded."
    )


@dataclass(frozen=True)
class ReviewOutput:
    """Outcome of a review.

    Attributes
    ----------
    model_name, version
        The reviewed version.
    gates_passed
        True when every gate passed.
    gates
        One dict per gate: ``name``, ``passed``, ``summary``.
    report_html, report_markdown
        The review report.
    decision
        ``auto``, ``approve``, ``override``, ``reject`` or ``pending``.
    champion
        The ``@champion`` version after the review (None if there is none).
    """

    model_name: str
    version: str
    gates_passed: bool
    gates: list[dict[str, Any]] = field(default_factory=list)
    report_html: str = ""
    report_markdown: str = ""
    decision: str = "pending"
    champion: str | None = None


def open_registry(settings: Settings) -> ChampionRegistry:
    """The registry of the work dir's MLflow store."""
    store = MlflowStore.for_workdir(settings.workdir, settings.mlflow_uri)
    return ChampionRegistry(store, registered_model_name(settings.horizon_hours))


@task(**IO_TASK)
def run_gates(
    workdir: str, version: str, review: ReviewConfig, reference_time: datetime | None
) -> tuple[dict[str, Any], str, str]:
    """Gates and report (:func:`models.submission.review_version`).

    Returns
    -------
    tuple
        ``(gate report dict, html path, markdown path)``.
    """
    settings = flow_settings(workdir)
    registry = open_registry(settings)
    gates, report = review_version(
        registry.store,
        registry,
        version,
        reports_dir=settings.reports_dir,
        gate_config=review.gates,
        reference_time=reference_time,
    )
    return gates.to_dict(), str(report.html), str(report.markdown)


@task(**IO_TASK)
def promote_automatically(workdir: str, version: str) -> str:
    """Move ``@champion`` to ``version`` as an automatic decision (gates must have passed)."""
    registry = open_registry(flow_settings(workdir))
    event = registry.approve(
        version,
        by=AUTO_REVIEWER,
        note="all review gates passed and settings allow automatic promotion",
        automatic=True,
    )
    return event.action


@task(**IO_TASK)
def record_waiting_run(workdir: str, version: str, flow_run_id: str) -> None:
    """Tag the version with the paused flow run so the CLI can resume it."""
    open_registry(flow_settings(workdir)).record_review(version, {TAG_REVIEW_FLOW_RUN: flow_run_id})


@task
def apply_decision(workdir: str, version: str, approval: ApprovalInput) -> str:
    """Record the reviewer's decision, unless the CLI already did.

    ``dynamargin review approve`` moves the alias before resuming the run; the decision is
    then already on the version and is not applied twice.
    """
    registry = open_registry(flow_settings(workdir))
    info = registry.version(version)
    if approval.approve:
        if CHAMPION in info.aliases:
            recorded = [e for e in registry.history() if e.version == info.version]
            return recorded[-1].action if recorded else "approve"
        event = registry.approve(
            version, by=approval.by, note=approval.note, override_reason=approval.override_reason
        )
        return event.action
    if info.decision == "rejected":
        return "reject"
    return registry.reject(version, by=approval.by, note=approval.note).action


@flow(name="review", log_prints=True)
def review_flow(
    version: str,
    workdir: str | None = None,
    review: ReviewConfig | None = None,
    reference_time: datetime | None = None,
) -> ReviewOutput:
    """Review ``version``: gates, report, then promotion or a pause for approval.

    Parameters
    ----------
    version
        Registered version to review (the ``@challenger`` the train flow returned).
    workdir
        Work dir.
    review
        Gate settings and the decision path.
    reference_time
        "Now" of the freshness gate (the last bar's close for historical runs).

    Returns
    -------
    ReviewOutput
    """
    review = review or ReviewConfig()
    settings = flow_settings(workdir)
    logger = get_run_logger()
    gates, html, markdown = run_gates(str(settings.workdir), version, review, reference_time)
    rows = [
        {"name": g["name"], "passed": g["passed"], "summary": g["summary"]}
        for g in gates["results"]
    ]
    for row in rows:
        logger.info(
            "gate %-20s %s  %s", row["name"], "PASS" if row["passed"] else "FAIL", row["summary"]
        )
    decision = "pending"
    if review.auto_promote and gates["passed"]:
        decision = promote_automatically(str(settings.workdir), version)
    elif review.wait_for_approval:
        decision = _wait_for_decision(settings, version, review, html)
    else:
        logger.warning(
            "v%s waits for `dynamargin review approve %s --by NAME --note TEXT` (%s)",
            version,
            version,
            "gates failed" if not gates["passed"] else "approval required",
        )
    champion = open_registry(settings).champion()
    return ReviewOutput(
        model_name=registered_model_name(settings.horizon_hours),
        version=version,
        gates_passed=bool(gates["passed"]),
        gates=rows,
        report_html=html,
        report_markdown=markdown,
        decision=decision,
        champion=None if champion is None else champion.version,
    )


def _wait_for_decision(settings: Settings, version: str, review: ReviewConfig, html: str) -> str:
    logger = get_run_logger()
    run_id = str(flow_run.get_id())
    record_waiting_run(str(settings.workdir), version, run_id)
    logger.info(
        "v%s waits for approval (report %s): resume flow run %s in the Prefect UI or run "
        "`dynamargin review approve %s --by NAME --note TEXT`",
        version,
        html,
        run_id,
        version,
    )
    try:
        approval = pause_flow_run(
            wait_for_input=ApprovalInput,
            timeout=review.approval_timeout_s,
            poll_interval=review.poll_interval_s,
        )
    except FlowPauseTimeout:
        logger.warning(
            "no decision within %ss: v%s stays pending", review.approval_timeout_s, version
        )
        return "pending"
    decision = apply_decision(str(settings.workdir), version, approval)
    logger.info("v%s: %s by %s (%s)", version, decision, approval.by, approval.note)
    return decision


def resume_review(version: str, approval: ApprovalInput, workdir: str | None = None) -> UUID:
    """Resume the paused review flow run of ``version`` with ``approval``.

    Called by ``dynamargin review approve|reject`` after recording the decision, so the
    paused run finishes with the same decision.

    Parameters
    ----------
    version
        Model version whose review is paused.
    approval
        The decision.
    workdir
        Work dir (its registry holds the flow-run tag).

    Returns
    -------
    uuid.UUID
        The resumed flow run.

    Raises
    ------
    FlowInputError
        If no review flow run waits for this version, or it is no longer paused.
    """
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    registry = open_registry(flow_settings(workdir))
    run_id = registry.version(version).tags.get(TAG_REVIEW_FLOW_RUN)
    if not run_id:
        raise FlowInputError(
            f"{registry.model_name} v{version}: no review flow run waits for it (tag "
            f"{TAG_REVIEW_FLOW_RUN} missing); the decision stands without resuming a flow"
        )
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(run_id)).state
    if state is None or not state.is_paused():
        name = state.name if state is not None else "unknown"
        raise FlowInputError(
            f"review flow run {run_id} of v{version} is {name}, not paused; nothing to resume"
        )
    resume_flow_run(UUID(run_id), run_input=approval.model_dump())
    return UUID(run_id)


def resume_if_waiting(
    version: str, approval: ApprovalInput, workdir: str | Path | None = None
) -> UUID | None:
    """Resume the paused review of ``version`` if one waits; None when none does.

    The hook for ``dynamargin review approve|reject`` after the decision is recorded: a
    version reviewed without a pause (or whose review already finished) has nothing to
    resume, which is not an error. Prefect is contacted only when the version carries the
    :data:`TAG_REVIEW_FLOW_RUN` tag.
    """
    try:
        return resume_review(version, approval, None if workdir is None else str(workdir))
    except FlowInputError:
        return None
