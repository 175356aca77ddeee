"""The publication store's schema: its tables and the triggers that keep it append-only.

Every table refuses UPDATE and DELETE (and TRUNCATE on PostgreSQL), and a BEFORE INSERT
trigger refuses an insert over an existing key: SQLite's ``REPLACE`` family deletes the
conflicting row without firing DELETE triggers, so without it a row could be rewritten.
Insert triggers also keep each hash chain linked (a row must name its chain's current
head as ``prev_hash``, see :mod:`serving.hash_chain`), ``update_id`` strictly increasing
and ``published_at`` never decreasing per asset, and ``store_meta`` to its single row.
Every message starts ``dynamargin:`` and says ``append-only``, which is how
:mod:`serving.store` recognises them.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from serving.hash_chain import GENESIS, Chain

SCHEMA_VERSION: Final[int] = 2
"""Version written to ``store_meta``; 2 is the first with hash chains and checkpoints."""

metadata = MetaData()

store_meta = Table(
    "store_meta",
    metadata,
    Column("id", Integer, CheckConstraint("id = 1"), primary_key=True, autoincrement=False),
    Column("store_id", String(36), nullable=False),
    Column("mode", String(8), CheckConstraint("mode IN ('live', 'replay')"), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("schema_version", Integer, nullable=False),
)

batches = Table(
    "batches",
    metadata,
    Column("batch_id", Integer, primary_key=True, autoincrement=False),
    Column("published_at_us", BigInteger, nullable=False),
    Column("n_snapshots", Integer, CheckConstraint("n_snapshots >= 1"), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
)

publications = Table(
    "publications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("batch_id", Integer, ForeignKey("batches.batch_id"), nullable=False),
    Column("asset", String(64), nullable=False),
    Column("update_id", BigInteger, CheckConstraint("update_id >= 1"), nullable=False),
    Column("as_of_us", BigInteger, nullable=False),
    Column("published_at_us", BigInteger, nullable=False),
    Column("valid_until_us", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("multiplier", Float, nullable=False),
    Column("reference_id", String(160), nullable=False),
    Column("snapshot", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    UniqueConstraint("asset", "update_id", name="uq_publications_asset_update_id"),
    Index("ix_publications_asset_published", "asset", "published_at_us"),
    Index("ix_publications_asset_id", "asset", "id"),
)

policy_states = Table(
    "policy_states",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("asset", String(64), nullable=False),
    Column("recorded_at_us", BigInteger, nullable=False),
    Column("batch_id", Integer, ForeignKey("batches.batch_id"), nullable=True),
    Column("audit_id", Integer, ForeignKey("audit.id"), nullable=True),
    Column("state", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Index("ix_policy_states_asset", "asset", "id"),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("asset", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("operator", String(200), nullable=False),
    Column("note", Text, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Column("multiplier_before", Float, nullable=False),
    Column("override_multiplier", Float, nullable=True),
    Column("override_until_us", BigInteger, nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Index("ix_audit_asset", "asset", "id"),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("body", Text, nullable=False),
    Column("public_key", String(64), nullable=False),
    Column("signature", String(128), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
)

TABLES: Final[tuple[str, ...]] = (
    "store_meta",
    "batches",
    "publications",
    "policy_states",
    "audit",
    "checkpoints",
)
CHAIN_TABLES: Final[dict[Chain, Table]] = {
    "batches": batches,
    "publications": publications,
    "policy_states": policy_states,
    "audit": audit,
    "checkpoints": checkpoints,
}
KEY_COLUMN: Final[dict[str, str]] = {
    "store_meta": "id",
    "batches": "batch_id",
    "publications": "id",
    "policy_states": "id",
    "audit": "id",
    "checkpoints": "id",
}


_CHAINED_PER_ASSET = ("publications", "policy_states", "audit")
_CHAINED_STORE_WIDE = ("batches", "checkpoints")


def sqlite_triggers() -> list[str]:
    statements: list[str] = []

    def refuse(name: str, table: str, when: str, message: str, op: str = "INSERT") -> None:
        statements.append(
            f"CREATE TRIGGER IF NOT EXISTS {name} BEFORE {op} ON {table} "
            + (f"WHEN {when} " if when else "")
            + f"BEGIN SELECT RAISE(ABORT, 'dynamargin: {message}'); END"
        )

    for table in TABLES:
        key = KEY_COLUMN[table]
        for op in ("UPDATE", "DELETE"):
            refuse(f"{table}_no_{op.lower()}", table, "", f"{table} is append-only ({op})", op)
        # REPLACE / INSERT OR REPLACE delete the conflicting row without firing DELETE
        # triggers; refusing the insert of an existing key closes that door.
        refuse(
            f"{table}_no_overwrite",
            table,
            f"EXISTS (SELECT 1 FROM {table} WHERE {key} = NEW.{key})",
            f"{table} is append-only (INSERT over an existing {key})",
        )
    refuse(
        "store_meta_single_row",
        "store_meta",
        "EXISTS (SELECT 1 FROM store_meta)",
        "store_meta is append-only (it has its one row)",
    )
    for table in _CHAINED_PER_ASSET:
        refuse(
            f"{table}_chain_link",
            table,
            f"NEW.prev_hash IS NOT COALESCE((SELECT entry_hash FROM {table} "
            f"WHERE asset = NEW.asset ORDER BY id DESC LIMIT 1), '{GENESIS}')",
            f"{table} is append-only: prev_hash must be the hash of the asset''s newest row",
        )
    for table in _CHAINED_STORE_WIDE:
        key = KEY_COLUMN[table]
        refuse(
            f"{table}_chain_link",
            table,
            f"NEW.prev_hash IS NOT COALESCE((SELECT entry_hash FROM {table} "
            f"ORDER BY {key} DESC LIMIT 1), '{GENESIS}')",
            f"{table} is append-only: prev_hash must be the hash of the newest row",
        )
    # One trigger, so the update_id rule is checked before the time rule: a publisher that
    # lost a race hears "update_id", whatever its clock said.
    statements.append(
        "CREATE TRIGGER IF NOT EXISTS publications_order BEFORE INSERT ON publications BEGIN "
        "SELECT RAISE(ABORT, 'dynamargin: publications is append-only: update_id must strictly "
        "increase per asset') WHERE NEW.update_id <= COALESCE((SELECT MAX(update_id) FROM "
        "publications WHERE asset = NEW.asset), 0); "
        "SELECT RAISE(ABORT, 'dynamargin: publications is append-only: published_at must not "
        "go back in time per asset') WHERE NEW.published_at_us < COALESCE((SELECT "
        "MAX(published_at_us) FROM publications WHERE asset = NEW.asset), NEW.published_at_us); "
        "END"
    )
    return statements


def postgres_triggers() -> list[str]:
    statements = [
        """
        CREATE OR REPLACE FUNCTION dynamargin_forbid_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'dynamargin: % is append-only (%)', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'integrity_constraint_violation';
        END $$
        """
    ]
    for table in TABLES:
        key = KEY_COLUMN[table]
        checks = [
            f"IF EXISTS (SELECT 1 FROM {table} WHERE {key} = NEW.{key}) THEN "
            f"RAISE EXCEPTION 'dynamargin: {table} is append-only (INSERT over an existing "
            f"{key} %)', NEW.{key} USING ERRCODE = 'integrity_constraint_violation'; END IF;"
        ]
        if table == "store_meta":
            checks.append(
                "IF EXISTS (SELECT 1 FROM store_meta) THEN RAISE EXCEPTION "
                "'dynamargin: store_meta is append-only (it has its one row)' "
                "USING ERRCODE = 'integrity_constraint_violation'; END IF;"
            )
        if table in _CHAINED_PER_ASSET or table in _CHAINED_STORE_WIDE:
            where = "WHERE asset = NEW.asset " if table in _CHAINED_PER_ASSET else ""
            checks.append(
                f"SELECT entry_hash INTO head FROM {table} {where}ORDER BY {key} DESC LIMIT 1; "
                f"IF NEW.prev_hash IS DISTINCT FROM COALESCE(head, '{GENESIS}') THEN "
                f"RAISE EXCEPTION 'dynamargin: {table} is append-only: prev_hash must be the "
                "hash of the newest row' USING ERRCODE = 'integrity_constraint_violation'; END IF;"
            )
        if table == "publications":
            checks.append(
                # Serialise publishers of one asset so ids commit in order.
                "PERFORM pg_advisory_xact_lock(hashtext('dynamargin.publications:' || NEW.asset)); "
                "SELECT max(update_id), max(published_at_us) INTO last_id, last_at "
                "FROM publications WHERE asset = NEW.asset; "
                "IF last_id IS NOT NULL AND NEW.update_id <= last_id THEN RAISE EXCEPTION "
                "'dynamargin: publications is append-only: update_id % of % must exceed %', "
                "NEW.update_id, NEW.asset, last_id "
                "USING ERRCODE = 'integrity_constraint_violation'; END IF; "
                "IF last_at IS NOT NULL AND NEW.published_at_us < last_at THEN RAISE EXCEPTION "
                "'dynamargin: publications is append-only: published_at must not go back in "
                "time for %', NEW.asset USING ERRCODE = 'integrity_constraint_violation'; END IF;"
            )
        statements.append(
            f"CREATE OR REPLACE FUNCTION dynamargin_{table}_insert() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ DECLARE head text; last_id bigint; last_at bigint; BEGIN "
            + " ".join(checks)
            + " RETURN NEW; END $$"
        )
        statements.append(
            f"CREATE OR REPLACE TRIGGER {table}_insert_rules BEFORE INSERT ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION dynamargin_{table}_insert()"
        )
        statements.append(
            f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION dynamargin_forbid_change()"
        )
        statements.append(
            f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION dynamargin_forbid_change()"
        )
    return statements


def id_column(table: Table) -> Any:
    """The primary key column of a table (``batch_id`` for batches, ``id`` elsewhere)."""
    return table.c.batch_id if table.name == "batches" else table.c.id
