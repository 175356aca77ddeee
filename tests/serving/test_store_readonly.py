"""Opening the publication store without creating it: no DDL, read-only roles and files."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, event, make_url

from serving.errors import PublicationStoreError
from serving.policy import AuditRecord, PolicyBook, PolicyConfig, PolicyState
from serving.publishing import ProvenanceInfo, publish_batch
from serving.store import (
    PublicationStore,
    StoreNotInitialisedError,
    StoreReadOnlyError,
    sqlite_read_only_url,
)
from serving.store_connection import sqlite_path
from tests.serving.conftest import T0, liquidity_for, make_forecasts, private_schema_url

ASSETS = ("BTCUSDT", "ETHUSDT")
BOOK = PolicyBook.uniform(PolicyConfig(sigma_ref=0.03, max_step_up=0.5, max_step_down=0.05))
DDL_PREFIXES = ("CREATE", "ALTER", "DROP", "GRANT", "REVOKE", "PRAGMA JOURNAL_MODE")


@contextmanager
def captured_statements() -> Iterator[list[str]]:
    """Every SQL statement any engine sends while the block runs (upper-cased)."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        seen.append(" ".join(str(statement).split()).upper())

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def publish_some(store: PublicationStore, signer, batches: int = 3) -> None:
    """Publish ``batches`` hourly batches of both assets through the real publisher."""
    forecasts = make_forecasts(ASSETS, hours=batches + 2)
    for k in range(batches):
        now = T0 + timedelta(hours=k + 1, minutes=5)
        publish_batch(
            forecasts[forecasts["ts"] <= now],
            liquidity_for(ASSETS),
            BOOK,
            store,
            signer,
            ProvenanceInfo(mlflow_run_id="run-ro", feature_set_hash="sha256:" + "0" * 64),
            now,
        )


def halt_record(store: PublicationStore) -> tuple[AuditRecord, PolicyState]:
    """An audit record and state for a halt, to try writing through a read-only store."""
    state = store.policy_states()["BTCUSDT"]
    halted, record = BOOK.policy("BTCUSDT").halt(
        state, "ops", "read-only probe", T0 + timedelta(days=1)
    )
    return record, halted


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def read_only_role(owner_url: str) -> Iterator[str]:
    """A LOGIN role with SELECT on the tables of ``owner_url``'s schema; yields its URL.

    The schema comes from the URL's ``search_path`` option (each test owns one, so the
    grants cannot leak into other tests). The role is dropped on exit.
    """
    owner = make_url(owner_url)
    schema = str(owner.query["options"]).split("search_path=", 1)[1]
    role = f"dynamargin_ro_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(owner_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
        conn.exec_driver_sql(f'GRANT CONNECT ON DATABASE "{owner.database}" TO "{role}"')
        conn.exec_driver_sql(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        conn.exec_driver_sql(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
    try:
        yield owner.set(username=role, password=None).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
            conn.exec_driver_sql(f'DROP ROLE "{role}"')
            remaining = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)
            ).scalar_one()
        admin.dispose()
        assert remaining == 0


@pytest.fixture()
def pg_schema_url(postgres_url: str) -> Iterator[str]:
    """A private schema of the session database, selected through ``search_path``."""
    with private_schema_url(postgres_url, prefix="ro") as url:
        yield url


def test_missing_sqlite_file_is_not_initialised_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "publications.db"
    with pytest.raises(StoreNotInitialisedError, match="run `dynamargin publish` first"):
        PublicationStore(f"sqlite:///{path}", create=False)
    assert not path.exists()
    assert not path.parent.exists()
    with pytest.raises(StoreNotInitialisedError, match="in memory"):
        PublicationStore("sqlite://", create=False)


def test_empty_database_is_not_initialised_on_both_backends(store_url: str) -> None:
    if store_url.startswith("sqlite"):
        sqlalchemy.create_engine(store_url).connect().close()  # an empty database file
    with captured_statements() as statements, pytest.raises(StoreNotInitialisedError) as exc:
        PublicationStore(store_url, create=False)
    assert "missing tables: store_meta, batches, publications, policy_states, audit" in str(
        exc.value
    )
    assert "dynamargin publish" in str(exc.value)
    assert not [s for s in statements if s.startswith(DDL_PREFIXES)]


def test_open_existing_issues_no_ddl_and_reads_what_was_published(store_url: str, signer) -> None:
    with PublicationStore(store_url) as writer:
        publish_some(writer, signer)
        expected = writer.latest()
    with captured_statements() as statements:
        with PublicationStore(store_url, create=False) as reader:
            latest = reader.latest()
            history = reader.history("BTCUSDT")
            assert reader.policy_states().keys() == {"BTCUSDT", "ETHUSDT"}
    assert latest == expected
    assert [p.update_id for p in history.items] == [1, 2, 3]
    ddl = [s for s in statements if s.startswith(DDL_PREFIXES)]
    assert ddl == [], ddl
    assert any(s.startswith("SELECT") for s in statements)


def test_open_existing_can_still_write_with_a_writable_connection(store_url: str, signer) -> None:
    # create=False is about DDL, not about writes: the admin API appends audit rows.
    with PublicationStore(store_url) as writer:
        publish_some(writer, signer, batches=1)
    with PublicationStore(store_url, create=False) as store:
        record, state = halt_record(store)
        audit_id = store.record_operator_action(record, state)
        assert store.audit_log()[-1].action == "halt"
    assert audit_id >= 1


def test_read_only_sqlite_file_serves_reads_and_refuses_writes(tmp_path: Path, signer) -> None:
    path = tmp_path / "publications.db"
    with PublicationStore(f"sqlite:///{path}") as writer:
        publish_some(writer, signer)
        expected = writer.latest()
    os.chmod(path, 0o444)
    before = digest(path)
    with PublicationStore(sqlite_read_only_url(path), create=False) as reader:
        assert reader.latest() == expected
        assert len(reader.batches()) == 3
        record, state = halt_record(reader)
        # mode=ro makes SQLite open the file O_RDONLY, so this holds even for root.
        with pytest.raises(StoreReadOnlyError, match="read-only"):
            reader.record_operator_action(record, state)
        assert reader.audit_log() == []
    assert digest(path) == before


def test_read_only_url_of_a_missing_file_is_not_initialised(tmp_path: Path) -> None:
    with pytest.raises(StoreNotInitialisedError, match="no database file"):
        PublicationStore(sqlite_read_only_url(tmp_path / "publications.db"), create=False)
    assert list(tmp_path.iterdir()) == []


def test_read_only_url_refuses_paths_sqlite_cannot_express(tmp_path: Path) -> None:
    with pytest.raises(PublicationStoreError, match="'\\?' or '#'"):
        sqlite_read_only_url(tmp_path / "odd?name.db")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.text(
            st.characters(codec="utf-8", exclude_characters="/?#\x00", exclude_categories=["Cs"]),
            min_size=1,
            max_size=12,
        ).filter(lambda part: part not in (".", "..")),
        min_size=1,
        max_size=4,
    )
)
def test_read_only_url_names_the_same_file(parts: list[str]) -> None:
    path = Path("/", *parts)
    assert sqlite_path(sqlite_read_only_url(path)) == path
    assert sqlite_path(f"sqlite:///{path}") == path


def test_postgres_read_only_role_reads_but_cannot_create_or_write(
    pg_schema_url: str, signer
) -> None:
    with PublicationStore(pg_schema_url) as writer:
        publish_some(writer, signer)
        expected = writer.latest()
    with read_only_role(pg_schema_url) as ro_url:
        # The old behaviour: opening creates the schema, which a SELECT-only role cannot.
        with pytest.raises(StoreReadOnlyError, match="create=False"):
            PublicationStore(ro_url)
        with PublicationStore(ro_url, create=False) as reader:
            assert reader.latest() == expected
            assert reader.last_update_ids() == {"BTCUSDT": 3, "ETHUSDT": 3}
            record, state = halt_record(reader)
            with pytest.raises(StoreReadOnlyError, match="permission denied"):
                reader.record_operator_action(record, state)
            assert reader.audit_log() == []


def test_postgres_schema_without_tables_is_not_initialised_for_a_read_only_role(
    pg_schema_url: str,
) -> None:
    with read_only_role(pg_schema_url) as ro_url:
        with pytest.raises(StoreNotInitialisedError, match="no publication store"):
            PublicationStore(ro_url, create=False)
