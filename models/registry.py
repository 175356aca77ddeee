"""The model registry review: challenger, champion, decisions, rollback.

Each candidate becomes a new version of the registered model ``dynamargin-vol-<H>h`` with
the alias ``@challenger``; the serving model is ``@champion``. Stages are deprecated in
MLflow, so only aliases are used.

Every decision (approve, override, reject, rollback, automatic promotion) is written twice:

- as **version tags** on the version it concerns (``dynamargin.decision``, ``...by``,
  ``...note``, ``...at``, and the override reason when there is one), so the MLflow UI
  shows it next to the model;
- as an **audit event**, a registered-model tag ``dynamargin.audit.<time>-<nonce>`` holding
  JSON. Keys are unique, so two reviewers acting at once never overwrite each other's
  record, and sorting the keys gives the events in time order. ``registry history`` and
  rollback replay these events.

Moving ``@champion`` is one registry call (MLflow stores an alias as one row pointing at one
version), so there is never a moment without a champion; the alias is read back afterwards
to confirm the move.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from contracts.timestamps import aware_utc
from models.errors import RegistryError
from models.mlflow_store import MlflowStore

CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"
TAG_PREFIX: Final = "dynamargin."
AUDIT_PREFIX: Final = "dynamargin.audit."

# Version tags written by the review (gates) and by decisions.
TAG_GATES_PASSED: Final = "dynamargin.gates.passed"
TAG_GATES_JSON: Final = "dynamargin.gates.json"
TAG_DECISION: Final = "dynamargin.decision"
TAG_DECISION_BY: Final = "dynamargin.decision.by"
TAG_DECISION_NOTE: Final = "dynamargin.decision.note"
TAG_DECISION_AT: Final = "dynamargin.decision.at"
TAG_OVERRIDE_REASON: Final = "dynamargin.override.reason"
TAG_REPORT_HTML: Final = "dynamargin.report.html"
TAG_REPORT_MARKDOWN: Final = "dynamargin.report.markdown"
TAG_REVIEW_FLOW_RUN: Final = "dynamargin.review.flow_run_id"
"""Set by the review flow when it pauses for this version's decision (see pipelines.flows)."""

Action = Literal["approve", "override", "auto", "reject", "rollback"]
CHAMPION_ACTIONS: Final[frozenset[str]] = frozenset({"approve", "override", "auto", "rollback"})


class UnknownVersionError(RegistryError):
    """The requested model version does not exist."""


class GateFailedError(RegistryError):
    """Approval was refused because the version failed (or never ran) its review gates."""


class DecisionError(RegistryError):
    """A decision is not allowed in the current state (e.g. approving a rejected version)."""


class NoPreviousChampionError(RegistryError):
    """Rollback was asked for but no earlier champion is on record."""


class AliasMismatchError(RegistryError):
    """The ``@champion`` alias does not point where the registry or the audit says it should."""


def registered_model_name(horizon_hours: int) -> str:
    """Name of the registered model for a forecast horizon, e.g. ``dynamargin-vol-24h``."""
    if horizon_hours <= 0:
        raise ValueError(f"horizon_hours must be a positive number of hours, got {horizon_hours}")
    return f"dynamargin-vol-{horizon_hours}h"


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version as the review sees it."""

    name: str
    version: str
    run_id: str | None
    source: str
    model_id: str | None
    aliases: tuple[str, ...]
    tags: Mapping[str, str]
    created_at: datetime

    @property
    def decision(self) -> str:
        """``pending`` until someone approves or rejects the version."""
        return self.tags.get(TAG_DECISION, "pending")

    @property
    def gates_passed(self) -> bool | None:
        """True/False from the recorded review gates, None if gates never ran."""
        value = self.tags.get(TAG_GATES_PASSED)
        return None if value is None else value == "true"


@dataclass(frozen=True)
class AuditEvent:
    """One decision on the registered model, in the audit log."""

    at: datetime
    action: Action
    version: str
    by: str
    note: str
    previous_champion: str | None = None
    override_reason: str | None = None
    gates_passed: bool | None = None

    def to_json(self) -> str:
        payload = asdict(self)
        payload["at"] = self.at.isoformat()
        return json.dumps(payload, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AuditEvent:
        payload = json.loads(text)
        payload["at"] = datetime.fromisoformat(payload["at"])
        return cls(**payload)

    @property
    def changes_champion(self) -> bool:
        return self.action in CHAMPION_ACTIONS


@dataclass
class ChampionRegistry:
    """Registry operations on one registered model (``dynamargin-vol-<H>h``).

    Parameters
    ----------
    store
        The MLflow store.
    model_name
        Registered model name; see :func:`registered_model_name`.

    Examples
    --------
    >>> registry = ChampionRegistry(store, registered_model_name(24))  # doctest: +SKIP
    >>> registry.approve("3", by="alice", note="beats HAR on QLIKE")  # doctest: +SKIP
    """

    store: MlflowStore
    model_name: str
    _client: MlflowClient | None = field(default=None, init=False, repr=False)

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = self.store.client()
        return self._client

    # -- candidates -------------------------------------------------------------------

    def register_candidate(
        self,
        *,
        model_uri: str,
        run_id: str,
        model_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        description: str | None = None,
    ) -> VersionInfo:
        """Create a new version from a logged model and point ``@challenger`` at it."""
        if not self._registered_model_exists():
            self.client.create_registered_model(
                self.model_name,
                description="dynamargin volatility forecaster; serving version is @champion.",
            )
        with self.store.bound():
            created = self.client.create_model_version(
                self.model_name,
                source=model_uri,
                run_id=run_id,
                model_id=model_id,
                tags=dict(tags or {}),
                description=description,
            )
        self.client.set_model_version_tag(self.model_name, created.version, TAG_DECISION, "pending")
        self.client.set_registered_model_alias(self.model_name, CHALLENGER, created.version)
        return self.version(created.version)

    def record_review(self, version: str, tags: Mapping[str, str]) -> None:
        """Write review results (gate outcomes, report paths) as tags of ``version``."""
        self.version(version)
        for key, value in tags.items():
            self.client.set_model_version_tag(self.model_name, version, key, value)

    # -- reading ----------------------------------------------------------------------

    def version(self, version: str | int) -> VersionInfo:
        """Look up one version.

        Raises
        ------
        UnknownVersionError
            If the version (or the registered model) does not exist.
        """
        try:
            mv = self.client.get_model_version(self.model_name, str(version))
        except MlflowException as exc:
            if _is_not_found(exc):
                raise UnknownVersionError(
                    f"{self.model_name} has no version {version} in {self.store.tracking_uri}; "
                    "list versions with `dynamargin review show`"
                ) from exc
            raise
        return _version_info(mv)

    def alias_version(self, alias: str) -> VersionInfo | None:
        """The version an alias points at, or None when the alias (or model) does not exist."""
        # MLflow reports a missing alias as INVALID_PARAMETER_VALUE, indistinguishable from
        # a malformed request; the registered model's alias map answers it unambiguously.
        try:
            aliases = self.client.get_registered_model(self.model_name).aliases
        except MlflowException as exc:
            if _is_not_found(exc):
                return None
            raise
        version = aliases.get(alias)
        if version is None:
            return None
        return _version_info(self.client.get_model_version_by_alias(self.model_name, alias))

    def champion(self) -> VersionInfo | None:
        """The serving version (``@champion``), if any."""
        return self.alias_version(CHAMPION)

    def challenger(self) -> VersionInfo | None:
        """The latest candidate awaiting review (``@challenger``), if any."""
        return self.alias_version(CHALLENGER)

    def versions(self) -> list[VersionInfo]:
        """All versions of the model, newest first."""
        if not self._registered_model_exists():
            return []
        found = self.client.search_model_versions(f"name = '{self.model_name}'")
        infos = [_version_info(mv) for mv in found]
        return sorted(infos, key=lambda info: int(info.version), reverse=True)

    def history(self) -> list[AuditEvent]:
        """Every recorded decision, oldest first."""
        if not self._registered_model_exists():
            return []
        tags = self.client.get_registered_model(self.model_name).tags
        keys = sorted(key for key in tags if key.startswith(AUDIT_PREFIX))
        return [AuditEvent.from_json(tags[key]) for key in keys]

    def champion_lineage(self) -> list[str]:
        """Champion versions as a stack (oldest first); see :func:`replay_lineage`."""
        return replay_lineage(self.history())

    # -- decisions --------------------------------------------------------------------

    def approve(
        self,
        version: str | int,
        *,
        by: str,
        note: str,
        override_reason: str | None = None,
        automatic: bool = False,
        now: datetime | None = None,
    ) -> AuditEvent:
        """Promote ``version`` to ``@champion`` after checking its review gates.

        Parameters
        ----------
        version
            Version to promote.
        by, note
            Who decided and why; both are required and recorded.
        override_reason
            Promote even though gates failed (or never ran). The reason is recorded on the
            version and in the audit log. Automatic promotion can never override.
        automatic
            The promotion is made by the pipeline because settings allow it.
        now
            Decision time (UTC); defaults to the current time.

        Raises
        ------
        GateFailedError
            If the gates failed, never ran, or were evaluated against another champion than
            the current one, and there is no override.
        DecisionError
            If the version was rejected, is already champion, or ``by``/``note`` is empty.
        AliasMismatchError
            If reading the alias back does not give ``version``.
        """
        _require_text(by=by, note=note)
        info = self.version(version)
        if automatic and override_reason is not None:
            raise DecisionError("automatic promotion cannot override failed gates")
        if info.decision == "rejected":
            raise DecisionError(
                f"{self.model_name} v{info.version} was rejected by "
                f"{info.tags.get(TAG_DECISION_BY, '?')} at {info.tags.get(TAG_DECISION_AT, '?')};"
                " register a new candidate instead"
            )
        current = self.champion()
        if current is not None and current.version == info.version:
            raise DecisionError(f"{self.model_name} v{info.version} is already @champion")
        if info.gates_passed is not True and override_reason is None:
            state = "never ran" if info.gates_passed is None else "failed"
            raise GateFailedError(
                f"{self.model_name} v{info.version}: review gates {state} "
                f"({_failed_gate_names(info)}); fix the candidate, or approve with "
                "--override-gates --reason TEXT to record an explicit override"
            )
        if override_reason is not None and not override_reason.strip():
            raise DecisionError("an override needs a non-empty reason")
        reviewed_against = _gates_champion(info)
        current_version = None if current is None else current.version
        if override_reason is None and reviewed_against != current_version:
            raise GateFailedError(
                f"{self.model_name} v{info.version}: gates were evaluated against champion "
                f"{_label(reviewed_against)} but the champion is now {_label(current_version)}; "
                f"re-run them with `dynamargin review refresh {info.version}`"
            )
        action: Action = "auto" if automatic else "approve"
        if override_reason is not None and info.gates_passed is not True:
            action = "override"
        event = AuditEvent(
            at=_decision_time(now),
            action=action,
            version=info.version,
            by=by,
            note=note,
            previous_champion=None if current is None else current.version,
            override_reason=override_reason if action == "override" else None,
            gates_passed=info.gates_passed,
        )
        self._move_champion(event)
        if (challenger := self.challenger()) is not None and challenger.version == info.version:
            self.client.delete_registered_model_alias(self.model_name, CHALLENGER)
        return event

    def reject(
        self, version: str | int, *, by: str, note: str, now: datetime | None = None
    ) -> AuditEvent:
        """Reject a candidate: recorded, and it loses ``@challenger``.

        Raises
        ------
        DecisionError
            If the version is the serving champion (roll back instead) or already rejected.
        """
        _require_text(by=by, note=note)
        info = self.version(version)
        if CHAMPION in info.aliases:
            raise DecisionError(
                f"{self.model_name} v{info.version} is the serving @champion; use "
                "`dynamargin registry rollback` to restore the previous champion"
            )
        if info.decision == "rejected":
            raise DecisionError(f"{self.model_name} v{info.version} is already rejected")
        event = AuditEvent(
            at=_decision_time(now),
            action="reject",
            version=info.version,
            by=by,
            note=note,
            gates_passed=info.gates_passed,
        )
        self._tag_decision(event, "rejected")
        if CHALLENGER in info.aliases:
            self.client.delete_registered_model_alias(self.model_name, CHALLENGER)
        self._append_audit(event)
        return event

    def rollback(self, *, by: str, note: str, now: datetime | None = None) -> AuditEvent:
        """Point ``@champion`` back at the previous champion on record.

        Raises
        ------
        NoPreviousChampionError
            If fewer than two champions are on record.
        AliasMismatchError
            If ``@champion`` was moved outside dynamargin, so the record cannot be trusted.
        """
        _require_text(by=by, note=note)
        lineage = self.champion_lineage()
        current = self.champion()
        if current is None or len(lineage) < 2:
            raise NoPreviousChampionError(
                f"{self.model_name}: no previous champion on record (lineage {lineage or 'empty'})"
            )
        if lineage[-1] != current.version:
            raise AliasMismatchError(
                f"{self.model_name}: @champion is v{current.version} but the audit log says "
                f"v{lineage[-1]}; the alias was moved outside dynamargin. Approve the intended "
                "version explicitly to re-establish the record"
            )
        event = AuditEvent(
            at=_decision_time(now),
            action="rollback",
            version=lineage[-2],
            by=by,
            note=note,
            previous_champion=current.version,
            gates_passed=self.version(lineage[-2]).gates_passed,
        )
        self._move_champion(event)
        return event

    # -- internals --------------------------------------------------------------------

    def _move_champion(self, event: AuditEvent) -> None:
        decision = "rolled_back_to" if event.action == "rollback" else "approved"
        self.client.set_registered_model_alias(self.model_name, CHAMPION, event.version)
        confirmed = self.champion()
        if confirmed is None or confirmed.version != event.version:
            raise AliasMismatchError(
                f"{self.model_name}: set @champion to v{event.version} but read back "
                f"{None if confirmed is None else 'v' + confirmed.version}; check the registry "
                f"at {self.store.tracking_uri} before serving"
            )
        self._tag_decision(event, decision)
        self._append_audit(event)

    def _tag_decision(self, event: AuditEvent, decision: str) -> None:
        tags = {
            TAG_DECISION: decision,
            TAG_DECISION_BY: event.by,
            TAG_DECISION_NOTE: event.note,
            TAG_DECISION_AT: event.at.isoformat(),
        }
        if event.override_reason is not None:
            tags[TAG_OVERRIDE_REASON] = event.override_reason
        for key, value in tags.items():
            self.client.set_model_version_tag(self.model_name, event.version, key, value)

    def _append_audit(self, event: AuditEvent) -> None:
        # Time-ordered, collision-free key: concurrent decisions never overwrite each other.
        stamp = event.at.strftime("%Y%m%dT%H%M%S%fZ")
        key = f"{AUDIT_PREFIX}{stamp}-{uuid.uuid4().hex[:8]}"
        self.client.set_registered_model_tag(self.model_name, key, event.to_json())

    def _registered_model_exists(self) -> bool:
        try:
            self.client.get_registered_model(self.model_name)
        except MlflowException as exc:
            if _is_not_found(exc):
                return False
            raise
        return True


def replay_lineage(events: Iterable[AuditEvent]) -> list[str]:
    """Replay decisions into the stack of champions (oldest first, current last).

    A promotion pushes its version; a rollback pops the current champion, so successive
    rollbacks walk further back (v1 -> v2 -> v3, rollback -> v2, rollback -> v1).
    Rejections do not touch the stack.
    """
    stack: list[str] = []
    for event in events:
        if event.action == "rollback":
            if stack:
                stack.pop()
            # A rollback recorded against a stack that disagrees (e.g. a truncated log)
            # still ends with its target as champion.
            if not stack or stack[-1] != event.version:
                stack.append(event.version)
        elif event.changes_champion:
            stack.append(event.version)
    return stack


def _version_info(mv: object) -> VersionInfo:
    created_ms = getattr(mv, "creation_timestamp", 0) or 0
    return VersionInfo(
        name=mv.name,
        version=str(mv.version),
        run_id=mv.run_id,
        source=mv.source,
        model_id=getattr(mv, "model_id", None),
        aliases=tuple(getattr(mv, "aliases", ()) or ()),
        tags=dict(mv.tags or {}),
        created_at=datetime.fromtimestamp(created_ms / 1000, tz=UTC),
    )


def _is_not_found(exc: MlflowException) -> bool:
    return exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)


def _failed_gate_names(info: VersionInfo) -> str:
    raw = info.tags.get(TAG_GATES_JSON)
    if raw is None:
        return "no gate results recorded"
    failed = [g["name"] for g in json.loads(raw).get("results", []) if not g.get("passed")]
    return "failed: " + ", ".join(failed) if failed else "no failing gate listed"


def _gates_champion(info: VersionInfo) -> str | None:
    raw = info.tags.get(TAG_GATES_JSON)
    return None if raw is None else json.loads(raw).get("champion_version")


def _label(version: str | None) -> str:
    return "none" if version is None else f"v{version}"


def _require_text(**fields: str) -> None:
    for name, value in fields.items():
        if not value or not value.strip():
            raise DecisionError(f"--{name} must not be empty: every decision names who and why")


def _decision_time(now: datetime | None) -> datetime:
    return datetime.now(UTC) if now is None else aware_utc(now, "decision time")
