"""Every statement that rewrites or removes a stored row is refused by the database itself.

The store is append-only by triggers. SQLite's ``REPLACE`` family deletes the conflicting
row without firing DELETE triggers, so the guarantee also needs BEFORE INSERT triggers that
refuse an existing key. This test issues each rewriting statement, on every table the store
has, on both backends, and checks that the statement fails and that no row changed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from serving.policy import PolicyBook
from serving.publishing import apply_operator_action
from serving.store import PublicationStore
from tests.serving.security.conftest import Seeded, seeded_store

# Column rewritten in each table, and the forged value (what an attacker would want).
REWRITES: dict[str, tuple[str, Any]] = {
    "batches": ("n_snapshots", 99),
    "publications": ("status", "ok"),
    "policy_states": ("state", "{}"),
    "audit": ("note", "rewritten"),
    "checkpoints": ("signature", "00"),
    "store_meta": ("mode", "replay"),
}

Statement = Callable[[str, str, str, dict[str, Any]], tuple[str, dict[str, Any]]]


def _values(row: dict[str, Any]) -> str:
    return ", ".join(f":{name}" for name in row)


def _insert(table: str, row: dict[str, Any], verb: str = "INSERT") -> str:
    return f"{verb} INTO {table} ({', '.join(row)}) VALUES ({_values(row)})"


def replace_into(table: str, pk: str, column: str, row: dict[str, Any]):
    return _insert(table, row, "REPLACE"), row


def insert_or_replace(table: str, pk: str, column: str, row: dict[str, Any]):
    return _insert(table, row, "INSERT OR REPLACE"), row


def upsert(table: str, pk: str, column: str, row: dict[str, Any]):
    sql = _insert(table, row) + f" ON CONFLICT ({pk}) DO UPDATE SET {column} = excluded.{column}"
    return sql, row


def update(table: str, pk: str, column: str, row: dict[str, Any]):
    return f"UPDATE {table} SET {column} = :{column} WHERE {pk} = :{pk}", row


def delete(table: str, pk: str, column: str, row: dict[str, Any]):
    return f"DELETE FROM {table} WHERE {pk} = :{pk}", {pk: row[pk]}


def merge_update(table: str, pk: str, column: str, row: dict[str, Any]):
    sql = (
        f"MERGE INTO {table} AS t USING (SELECT CAST(:{pk} AS bigint) AS k) AS s "
        f"ON t.{pk} = s.k WHEN MATCHED THEN UPDATE SET {column} = :{column}"
    )
    return sql, {pk: row[pk], column: row[column]}


def merge_delete(table: str, pk: str, column: str, row: dict[str, Any]):
    sql = (
        f"MERGE INTO {table} AS t USING (SELECT CAST(:{pk} AS bigint) AS k) AS s "
        f"ON t.{pk} = s.k WHEN MATCHED THEN DELETE"
    )
    return sql, {pk: row[pk]}


def truncate(table: str, pk: str, column: str, row: dict[str, Any]):
    return f"TRUNCATE {table} CASCADE", {}


STATEMENTS: dict[str, dict[str, Statement]] = {
    "sqlite": {
        "REPLACE": replace_into,
        "INSERT OR REPLACE": insert_or_replace,
        "UPSERT": upsert,
        "UPDATE": update,
        "DELETE": delete,
    },
    "postgresql": {
        "ON CONFLICT DO UPDATE": upsert,
        "MERGE UPDATE": merge_update,
        "MERGE DELETE": merge_delete,
        "UPDATE": update,
        "DELETE": delete,
        "TRUNCATE": truncate,
    },
}


def dump(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    tables = sa.inspect(engine).get_table_names()
    with engine.connect() as conn:
        return {
            t: [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {t} ORDER BY 1"))]
            for t in tables
        }


def halt(url: str, asset: str) -> None:
    """An operator action, so that the audit table has a row to rewrite."""
    with PublicationStore(url) as store:
        apply_operator_action(
            store, PolicyBook.uniform(), asset, "halt", "ops", "incident", datetime.now(UTC)
        )


MATRIX = [(backend, name) for backend, statements in STATEMENTS.items() for name in statements]


@pytest.mark.parametrize(("backend", "name"), MATRIX, ids=[f"{b}-{n}" for b, n in MATRIX])
def test_rewriting_statement_is_refused_on_every_table(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, name: str
) -> None:
    seeded = seeded_store(request, tmp_path, backend)
    halt(seeded.url, "BTCUSDT")
    engine = sa.create_engine(seeded.url)
    try:
        before = dump(engine)
        unknown = set(before) - set(REWRITES)
        assert not unknown, f"the store grew tables this test does not rewrite: {unknown}"
        accepted: list[str] = []
        unexplained: list[str] = []
        for table in sorted(before):
            pk = sa.inspect(engine).get_pk_constraint(table)["constrained_columns"][0]
            column, forged = REWRITES[table]
            with engine.connect() as conn:
                first = conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY {pk} LIMIT 1"))
                row = dict(first.mappings().one())
            row[column] = forged
            sql, params = STATEMENTS[backend][name](table, pk, column, row)
            try:
                with engine.begin() as conn:
                    conn.execute(sa.text(sql), params)
            except sa.exc.DBAPIError as exc:
                if "append-only" not in str(exc.orig):
                    unexplained.append(f"{table}: {str(exc.orig).splitlines()[0]}")
                continue
            accepted.append(table)
        assert accepted == [], f"{backend} accepted {name} on {accepted}"
        assert dump(engine) == before
        assert unexplained == [], f"refused without naming the append-only rule: {unexplained}"
    finally:
        engine.dispose()


@pytest.mark.parametrize("table", ["publications", "policy_states", "audit", "batches"])
def test_sqlite_replace_of_the_newest_row_names_the_append_only_rule(
    seeded: Seeded, table: str
) -> None:
    halt(seeded.url, "ETHUSDT")
    engine = sa.create_engine(seeded.url)
    try:
        pk = "batch_id" if table == "batches" else "id"
        with engine.begin() as conn:
            row = dict(
                conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY {pk} DESC LIMIT 1"))
                .mappings()
                .one()
            )
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(sa.text(_insert(table, row, "REPLACE")), row)
    finally:
        engine.dispose()
