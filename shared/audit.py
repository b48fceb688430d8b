"""The audit log: who did what to which thing, and when. Append-only.

Console actions are recorded in the transaction that does them; mutating API calls right after
they succeed. ``actor`` is a user's email or ``api_key:<visible prefix>``.
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from shared.db import Conn
from shared.tasks import iso


def record(
    conn: Conn,
    *,
    account_id: int,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one entry to the account's audit log (in the caller's transaction)."""
    conn.execute(
        "INSERT INTO audit_log (account_id, actor, action, target, detail)"
        " VALUES (%s, %s, %s, %s, %s)",
        (account_id, actor, action, target, Jsonb(detail) if detail is not None else None),
    )


def list_entries_query(
    account_id: int, *, before_id: int | None, limit: int
) -> tuple[str, list[Any]]:
    """The SQL and parameters of :func:`list_entries`.

    The cursor is a condition only when there is one: ``(%s IS NULL OR id < %s)`` would leave
    a generic plan (a prepared statement's, after a few runs) walking every newer entry.
    """
    sql = (
        "SELECT id, actor, action, target, detail, created_at FROM audit_log WHERE account_id = %s"
    )
    params: list[Any] = [account_id]
    if before_id is not None:
        sql += " AND id < %s"
        params.append(before_id)
    return f"{sql} ORDER BY id DESC LIMIT %s", [*params, limit]


def list_entries(
    conn: Conn, account_id: int, *, before_id: int | None, limit: int
) -> list[dict[str, Any]]:
    """The account's entries, newest first, keyset-paginated on id."""
    sql, params = list_entries_query(account_id, before_id=before_id, limit=limit)
    return conn.execute(sql, params).fetchall()


def entry_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "actor": row["actor"],
        "action": row["action"],
        "target": row["target"],
        "detail": row["detail"],
        "created_at": iso(row["created_at"]),
    }
