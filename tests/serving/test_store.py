"""PublicationStore on SQLite and on the real PostgreSQL: the database enforces the rules."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy
from sqlalchemy.exc import DBAPIError

from serving.errors import PublicationStoreError, UpdateIdConflictError
from serving.policy import AuditRecord, PolicyState
from serving.signing import SnapshotSigner, verify_snapshot
from serving.standard import RiskSnapshot, reference_id
from serving.store import PublicationRecord, PublicationStore

T0 = datetime(2025, 6, 1, tzinfo=UTC)


def snapshot(signer: SnapshotSigner, asset: str, update_id: int, published_at: datetime) -> dict:
    data = {
        "asset": asset,
        "venue": "binance",
        "update_id": update_id,
        "as_of": published_at - timedelta(hours=1),
        "published_at": published_at,
        "valid_until": published_at + timedelta(hours=2),
        "horizon_hours": 24,
        "sigma": 0.03,
        "sigma_lower": 0.02,
        "sigma_upper": 0.04,
        "var_99": 0.07,
        "var_99_lower": 0.05,
        "var_99_upper": 0.09,
        "es_99": 0.08,
        "es_99_lower": 0.06,
        "es_99_upper": 0.1,
        "liquidity": {
            "amihud": 1e-10,
            "spread_bps": 1.0,
            "slippage_bps": 5.0,
            "standard_size_usd": 1e6,
        },
        "margin": {
            "multiplier": 1.0 + update_id / 100,
            "previous_multiplier": 1.0,
            "base_imf": 0.05,
            "base_mmf": 0.03,
            "imf": 0.05,
            "mmf": 0.03,
        },
        "status": "ok",
        "provenance": {
            "model_name": "har",
            "model_version": "1",
            "data_through": published_at - timedelta(hours=1),
            "reference_id": "-",
        },
    }
    draft = RiskSnapshot.model_validate(data)
    prov = draft.provenance.model_copy(update={"reference_id": reference_id(draft.to_dict())})
    return signer.sign(draft.model_copy(update={"provenance": prov})).to_dict()


def record(signer, asset, update_id, published_at) -> PublicationRecord:
    snap = snapshot(signer, asset, update_id, published_at)
    state = PolicyState(asset, snap["margin"]["multiplier"], published_at)
    return PublicationRecord(snap, "tightened", state)


def publish(store, signer, assets, update_id, published_at):
    return store.append_batch(
        [record(signer, a, update_id, published_at) for a in assets], published_at
    )


def test_round_trip_latest_and_signatures_survive(store, signer):
    publish(store, signer, ["BTCUSDT", "ETHUSDT"], 1, T0)
    publish(store, signer, ["BTCUSDT", "ETHUSDT"], 2, T0 + timedelta(hours=1))
    latest = store.latest()
    assert sorted(latest) == ["BTCUSDT", "ETHUSDT"]
    assert {p.update_id for p in latest.values()} == {2}
    btc = store.latest("BTCUSDT")
    assert verify_snapshot(btc.snapshot).ok
    assert btc.reason == "tightened" and btc.published_at == T0 + timedelta(hours=1)
    assert store.latest("SOLUSDT") is None
    assert store.last_update_ids() == {"BTCUSDT": 2, "ETHUSDT": 2}
    assert store.policy_states()["BTCUSDT"].multiplier == pytest.approx(1.02)


def test_update_id_must_strictly_increase_and_batch_is_atomic(store, signer):
    publish(store, signer, ["BTCUSDT", "ETHUSDT"], 5, T0)
    with pytest.raises(UpdateIdConflictError):
        # ETH's id goes backwards: the whole batch, BTC included, must be rolled back.
        store.append_batch(
            [
                record(signer, "BTCUSDT", 6, T0 + timedelta(hours=1)),
                record(signer, "ETHUSDT", 4, T0 + timedelta(hours=1)),
            ],
            T0 + timedelta(hours=1),
        )
    with pytest.raises(UpdateIdConflictError):
        publish(store, signer, ["BTCUSDT"], 5, T0 + timedelta(hours=2))
    assert store.last_update_ids() == {"BTCUSDT": 5, "ETHUSDT": 5}
    assert len(store.batches()) == 1
    publish(store, signer, ["BTCUSDT"], 9, T0 + timedelta(hours=3))  # gaps are allowed
    assert store.latest("BTCUSDT").update_id == 9


def test_database_itself_rejects_a_lower_update_id(store, signer):
    publish(store, signer, ["BTCUSDT"], 3, T0)
    raw = dict(
        batch_id=1,
        asset="BTCUSDT",
        update_id=2,
        as_of_us=0,
        published_at_us=0,
        valid_until_us=0,
        status="ok",
        reason="tightened",
        multiplier=1.0,
        reference_id="r",
        snapshot="{}",
    )
    # Bypass the store API entirely: plain SQL must be refused by the trigger.
    with pytest.raises(DBAPIError, match="update_id"), store.engine.begin() as conn:
        conn.execute(
            sqlalchemy.text(
                "INSERT INTO publications (batch_id, asset, update_id, as_of_us, published_at_us, "
                "valid_until_us, status, reason, multiplier, reference_id, snapshot) VALUES "
                "(:batch_id, :asset, :update_id, :as_of_us, :published_at_us, :valid_until_us, "
                ":status, :reason, :multiplier, :reference_id, :snapshot)"
            ),
            raw,
        )
    assert store.last_update_ids() == {"BTCUSDT": 3}


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE publications SET multiplier = 9 WHERE asset = 'BTCUSDT'",
        "DELETE FROM publications",
        "UPDATE batches SET n_snapshots = 7",
        "DELETE FROM policy_states",
        "DELETE FROM audit",
    ],
)
def test_store_is_append_only(store, signer, statement):
    publish(store, signer, ["BTCUSDT"], 1, T0)
    store.record_operator_action(
        AuditRecord("BTCUSDT", "halt", "ops", "incident", T0, 1.0), PolicyState("BTCUSDT", 1.0)
    )
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(sqlalchemy.text(statement))
    assert store.latest("BTCUSDT").multiplier == pytest.approx(1.01)
    assert len(store.audit_log()) == 1


def test_time_travel_returns_what_was_in_force(store, signer):
    for hour in range(5):
        publish(store, signer, ["BTCUSDT"], hour + 1, T0 + timedelta(hours=hour))
    assert store.at("BTCUSDT", T0 - timedelta(seconds=1)) is None
    assert store.at("BTCUSDT", T0).update_id == 1
    assert store.at("BTCUSDT", T0 + timedelta(hours=2, minutes=59)).update_id == 3
    assert store.at("BTCUSDT", T0 + timedelta(days=9)).update_id == 5


def test_history_paginates_with_a_stable_cursor(store, signer):
    for hour in range(7):
        publish(store, signer, ["BTCUSDT", "ETHUSDT"], hour + 1, T0 + timedelta(hours=hour))
    page = store.history("BTCUSDT", limit=3)
    seen = [p.update_id for p in page.items]
    # A publication arriving between pages does not shift them (keyset pagination).
    publish(store, signer, ["BTCUSDT"], 8, T0 + timedelta(hours=7))
    while page.next_cursor:
        page = store.history("BTCUSDT", limit=3, cursor=page.next_cursor)
        seen += [p.update_id for p in page.items]
    assert seen == list(range(1, 9))
    window = store.history(
        "BTCUSDT", start=T0 + timedelta(hours=2), end=T0 + timedelta(hours=4), limit=10
    )
    assert [p.update_id for p in window.items] == [3, 4, 5] and window.next_cursor is None
    with pytest.raises(PublicationStoreError):
        store.history("BTCUSDT", cursor="not-a-cursor")


def test_policy_state_and_audit_persist_across_reopen(store_url, signer):
    with PublicationStore(store_url) as first:
        publish(first, signer, ["BTCUSDT"], 1, T0)
        halted = PolicyState("BTCUSDT", 1.01, T0, halted=True, halt_note="incident")
        first.record_operator_action(
            AuditRecord("BTCUSDT", "halt", "alice", "incident", T0 + timedelta(minutes=1), 1.01),
            halted,
        )
    with PublicationStore(store_url) as reopened:
        assert reopened.policy_states()["BTCUSDT"] == halted
        (entry,) = reopened.audit_log("BTCUSDT")
        assert (entry.action, entry.operator, entry.note) == ("halt", "alice", "incident")
        assert reopened.assets() == ["BTCUSDT"]


def test_empty_or_duplicated_batches_are_refused(store, signer):
    with pytest.raises(PublicationStoreError, match="empty"):
        store.append_batch([], T0)
    with pytest.raises(PublicationStoreError, match="twice"):
        store.append_batch([record(signer, "BTCUSDT", 1, T0), record(signer, "BTCUSDT", 2, T0)], T0)
    assert store.batches() == []


def test_concurrent_publishers_cannot_both_claim_an_update_id(store_url, signer):
    with PublicationStore(store_url) as setup:
        publish(setup, signer, ["BTCUSDT"], 1, T0)
    stores = [PublicationStore(store_url), PublicationStore(store_url)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def race(store: PublicationStore, minute: int) -> None:
        next_id = store.last_update_ids()["BTCUSDT"] + 1  # both read 1 and claim 2
        rec = record(signer, "BTCUSDT", next_id, T0 + timedelta(minutes=minute))
        barrier.wait()
        try:
            store.append_batch([rec], T0 + timedelta(minutes=minute))
            outcomes.append("committed")
        except UpdateIdConflictError:
            outcomes.append("rejected")

    threads = [threading.Thread(target=race, args=(s, i + 1)) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for s in stores:
        s.close()
    assert sorted(outcomes) == ["committed", "rejected"]
    with PublicationStore(store_url) as check:
        assert [p.update_id for p in check.history("BTCUSDT").items] == [1, 2]
