"""Champion lineage replay: rollbacks walk back through promotions (property test)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from models.registry import AuditEvent, replay_lineage

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@given(
    st.lists(st.sampled_from(["promote", "override", "auto", "rollback", "reject"]), max_size=40)
)
def test_replay_matches_a_reference_stack(operations: list[str]) -> None:
    events, expected, next_version = [], [], 1
    for i, op in enumerate(operations):
        at = T0 + timedelta(minutes=i)
        if op == "rollback":
            if len(expected) < 2:
                continue  # the registry refuses: NoPreviousChampionError
            current = expected.pop()
            events.append(AuditEvent(at, "rollback", expected[-1], "ops", "n", current))
        elif op == "reject":
            events.append(AuditEvent(at, "reject", str(next_version), "ops", "n"))
            next_version += 1
        else:
            action = "approve" if op == "promote" else op
            events.append(AuditEvent(at, action, str(next_version), "ops", "n"))
            expected.append(str(next_version))
            next_version += 1
        assert replay_lineage(events) == expected


def test_audit_event_json_roundtrip() -> None:
    event = AuditEvent(T0, "override", "7", "carol", "note", "6", "regime change", False)
    assert AuditEvent.from_json(event.to_json()) == event
