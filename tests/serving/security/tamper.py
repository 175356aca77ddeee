"""What an attacker with database access does once the triggers are out of the way."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import sqlalchemy as sa

from serving.standard import canonical_json


@contextlib.contextmanager
def unguarded(url: str) -> Iterator[sa.Connection]:
    """A connection on which the append-only triggers do not fire.

    SQLite: every trigger is dropped (anyone who can write the file can). PostgreSQL:
    ``session_replication_role = replica`` skips ordinary triggers (a superuser can).
    """
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                names = conn.execute(
                    sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
                ).scalars()
                for name in list(names):
                    conn.execute(sa.text(f'DROP TRIGGER "{name}"'))
            else:
                conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
            yield conn
    finally:
        engine.dispose()


def latest_publication_id(conn: sa.Connection, asset: str) -> int:
    return int(
        conn.execute(
            sa.text("SELECT max(id) FROM publications WHERE asset = :a"), {"a": asset}
        ).scalar_one()
    )


def forge_latest_publication(url: str, asset: str, multiplier: float = 0.5) -> None:
    """Rewrite the newest snapshot of ``asset`` to ``ok`` at ``multiplier`` (signature kept)."""
    forge_publication(url, asset, None, multiplier)


def forge_publication(url: str, asset: str, update_id: int | None, multiplier: float = 0.5) -> None:
    """Rewrite one snapshot of ``asset`` (the newest when ``update_id`` is None)."""
    with unguarded(url) as conn:
        row_id = (
            latest_publication_id(conn, asset)
            if update_id is None
            else conn.execute(
                sa.text("SELECT id FROM publications WHERE asset = :a AND update_id = :u"),
                {"a": asset, "u": update_id},
            ).scalar_one()
        )
        raw = conn.execute(
            sa.text("SELECT snapshot FROM publications WHERE id = :i"), {"i": row_id}
        ).scalar_one()
        snapshot = json.loads(raw)
        snapshot["margin"]["multiplier"] = multiplier
        snapshot["status"] = "ok"
        conn.execute(
            sa.text(
                "UPDATE publications SET snapshot = :s, multiplier = :m, status = 'ok' "
                "WHERE id = :i"
            ),
            {"s": canonical_json(snapshot).decode(), "m": multiplier, "i": row_id},
        )


def delete_latest_publication(url: str, asset: str) -> None:
    """Roll ``asset`` back to its previous (genuine, signed) snapshot."""
    with unguarded(url) as conn:
        row_id = latest_publication_id(conn, asset)
        conn.execute(sa.text("DELETE FROM publications WHERE id = :i"), {"i": row_id})


def delete_publication(url: str, asset: str, update_id: int) -> None:
    with unguarded(url) as conn:
        conn.execute(
            sa.text("DELETE FROM publications WHERE asset = :a AND update_id = :u"),
            {"a": asset, "u": update_id},
        )


def clear_halt(url: str, asset: str) -> None:
    """Flip the newest policy state of ``asset`` back to not halted."""
    with unguarded(url) as conn:
        row_id, state = conn.execute(
            sa.text(
                "SELECT id, state FROM policy_states WHERE asset = :a ORDER BY id DESC LIMIT 1"
            ),
            {"a": asset},
        ).one()
        data = json.loads(state)
        data["halted"] = False
        data["halt_note"] = None
        conn.execute(
            sa.text("UPDATE policy_states SET state = :s WHERE id = :i"),
            {"s": json.dumps(data, sort_keys=True), "i": row_id},
        )


def rewrite_audit_note(url: str, asset: str, note: str) -> None:
    with unguarded(url) as conn:
        conn.execute(
            sa.text("UPDATE audit SET note = :n WHERE asset = :a"), {"n": note, "a": asset}
        )


def rewrite_column(url: str, table: str, column: str, value: object, newest: bool = True) -> None:
    """Set ``column`` of the newest (or oldest) row of ``table`` to ``value``."""
    key = "batch_id" if table == "batches" else "id"
    order = "DESC" if newest else "ASC"
    with unguarded(url) as conn:
        row_id = conn.execute(
            sa.text(f"SELECT {key} FROM {table} ORDER BY {key} {order} LIMIT 1")
        ).scalar_one()
        conn.execute(
            sa.text(f"UPDATE {table} SET {column} = :v WHERE {key} = :k"), {"v": value, "k": row_id}
        )


def delete_all(url: str, table: str) -> None:
    with unguarded(url) as conn:
        conn.execute(sa.text(f"DELETE FROM {table}"))


def roll_back_newest_batch(url: str) -> None:
    """Remove the newest batch whole (its rows in every table and its checkpoint), leaving a
    store that is consistent as of the batch before."""
    with unguarded(url) as conn:
        newest = conn.execute(sa.text("SELECT max(batch_id) FROM batches")).scalar_one()
        conn.execute(sa.text("DELETE FROM publications WHERE batch_id = :b"), {"b": newest})
        conn.execute(sa.text("DELETE FROM policy_states WHERE batch_id = :b"), {"b": newest})
        conn.execute(sa.text("DELETE FROM batches WHERE batch_id = :b"), {"b": newest})
        conn.execute(
            sa.text("DELETE FROM checkpoints WHERE id = (SELECT max(id) FROM checkpoints)")
        )
