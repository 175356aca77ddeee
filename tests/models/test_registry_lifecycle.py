"""Register -> gates -> approve / reject / override / rollback, on SQLite and PostgreSQL."""

from __future__ import annotations

import mlflow.sklearn
import pytest

from models.registry import (
    CHALLENGER,
    CHAMPION,
    TAG_DECISION,
    TAG_DECISION_BY,
    TAG_OVERRIDE_REASON,
    DecisionError,
    GateFailedError,
    NoPreviousChampionError,
)
from models.submission import review_version
from tests.models.registry_factory import DATA_THROUGH, FEATURES, Backend


def test_register_gates_approve_moves_champion(backend: Backend) -> None:
    first = backend.submit(challenger_error=0.3, seed=1)
    registry = backend.registry()
    assert first.version.version == "1"
    assert CHALLENGER in first.version.aliases
    assert first.gates.passed, first.gates.failures
    assert registry.champion() is None, "no promotion without approval or auto_promote"

    event = registry.approve("1", by="alice", note="first model, beats HAR")

    champion = registry.champion()
    assert champion is not None and champion.version == "1"
    assert event.previous_champion is None and event.action == "approve"
    assert champion.tags[TAG_DECISION] == "approved"
    assert champion.tags[TAG_DECISION_BY] == "alice"
    assert registry.challenger() is None, "approval consumes the @challenger alias"
    with backend.store.bound():
        model = mlflow.sklearn.load_model(f"models:/{backend.model_name}@{CHAMPION}")
    assert list(model.feature_names_in_) == list(FEATURES)


def test_rollback_restores_previous_champion(backend: Backend) -> None:
    backend.submit(auto_promote=True, challenger_error=0.3, seed=1)
    second = backend.submit(challenger_error=0.1, seed=2)
    registry = backend.registry()
    assert second.gates.passed, second.gates.failures
    registry.approve(second.version.version, by="alice", note="lower QLIKE")
    assert registry.champion().version == "2"

    event = registry.rollback(by="bob", note="margin spikes after promotion")

    assert registry.champion().version == "1"
    assert (event.action, event.version, event.previous_champion) == ("rollback", "1", "2")
    actions = [(e.action, e.version) for e in registry.history()]
    assert actions == [("auto", "1"), ("approve", "2"), ("rollback", "1")]
    with pytest.raises(NoPreviousChampionError):
        registry.rollback(by="bob", note="nothing older than v1")


def test_failing_gate_blocks_approval_and_override_is_recorded(sqlite_backend: Backend) -> None:
    sqlite_backend.submit(auto_promote=True, challenger_error=0.2, seed=1)
    # Biased three times too high: QLIKE much worse than champion and HAR, ETH VaR red.
    bad = sqlite_backend.submit(
        auto_promote=True, challenger_bias=3.0, zones={"ETHUSDT": "red"}, seed=2
    )
    registry = sqlite_backend.registry()
    failed = {r.name for r in bad.gates.failures}
    assert {"qlike_vs_champion", "qlike_vs_har", "var_green_zone"} <= failed
    assert bad.promoted is None, "automatic promotion never passes a failed gate"
    assert registry.champion().version == "1"

    with pytest.raises(GateFailedError, match="qlike_vs_champion"):
        registry.approve("2", by="carol", note="looks fine to me")
    assert registry.champion().version == "1"
    with pytest.raises(DecisionError):
        registry.approve("2", by="carol", note="x", override_reason="   ")

    event = registry.approve(
        "2", by="carol", note="emergency", override_reason="regime change; HAR stale"
    )

    assert event.action == "override" and event.gates_passed is False
    info = registry.version("2")
    assert CHAMPION in info.aliases
    assert info.tags[TAG_OVERRIDE_REASON] == "regime change; HAR stale"
    last = registry.history()[-1]
    assert (last.action, last.override_reason, last.by) == (
        "override",
        "regime change; HAR stale",
        "carol",
    )


def test_reject_records_decision_and_blocks_later_approval(sqlite_backend: Backend) -> None:
    candidate = sqlite_backend.submit(challenger_error=0.2, seed=3)
    registry = sqlite_backend.registry()

    event = registry.reject(candidate.version.version, by="dave", note="features drifted")

    info = registry.version("1")
    assert info.decision == "rejected" and info.tags[TAG_DECISION_BY] == "dave"
    assert CHALLENGER not in info.aliases and registry.challenger() is None
    assert registry.history()[-1] == event
    with pytest.raises(DecisionError, match="rejected"):
        registry.approve("1", by="erin", note="changed my mind")
    with pytest.raises(DecisionError, match="already rejected"):
        registry.reject("1", by="dave", note="twice")
    with pytest.raises(DecisionError, match="--by"):
        registry.reject("1", by=" ", note="who?")
    assert registry.champion() is None


def test_gates_against_an_old_champion_must_be_refreshed(sqlite_backend: Backend) -> None:
    sqlite_backend.submit(auto_promote=True, challenger_error=0.3, seed=1)
    second = sqlite_backend.submit(challenger_error=0.15, seed=2)
    third = sqlite_backend.submit(challenger_error=0.1, seed=3)
    registry = sqlite_backend.registry()
    assert second.gates.champion_version == third.gates.champion_version == "1"
    registry.approve("2", by="alice", note="first of two candidates")

    with pytest.raises(GateFailedError, match="evaluated against champion v1 but the champion"):
        registry.approve("3", by="alice", note="second candidate")

    gates, report = review_version(
        sqlite_backend.store,
        registry,
        "3",
        reports_dir=sqlite_backend.workdir / "reports",
        reference_time=DATA_THROUGH,
    )
    assert gates.champion_version == "2" and gates.passed, gates.failures
    assert "champion v2 (lgbm)" in report.html.read_text()
    registry.approve("3", by="alice", note="re-reviewed against v2")
    assert registry.champion_lineage() == ["1", "2", "3"]
