"""The task aggregate: statuses, the wire format, and its named queries."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb


class TaskStatus(StrEnum):
    PENDING = "pending"
    DISPATCHING = "dispatching"
    RUNNING = "running"
    WAITING_FOR_INPUT = "waiting_for_input"
    PENDING_REVIEW = "pending_review"
    COMPLETED = "completed"
    COMPLETED_WITH_ISSUES = "completed_with_issues"
    FAILED = "failed"
    CANCELED = "canceled"


FINAL_STATUSES = frozenset(
    {
        TaskStatus.COMPLETED,
        TaskStatus.COMPLETED_WITH_ISSUES,
        TaskStatus.FAILED,
        TaskStatus.CANCELED,
    }
)
CLAIMABLE_STATUSES = (TaskStatus.PENDING, TaskStatus.DISPATCHING)

TASK_FINISHED = "task_finished"


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and a Z, as the reference API writes times."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


_TASK_COLUMNS = """
    t.id, t.account_id, t.task_number, t.type, t.status, t.handler, t.title, t.instructions,
    t.data, t.notes, t.result, t.trajectory_id, t.attempts, t.sop_id, s.version AS sop_version,
    s.account_id IS NULL AS sop_builtin, t.created_at, t.updated_at, t.started_at,
    t.completed_at, t.failed_at, t.canceled_at,
    COALESCE((SELECT json_agg(json_build_object('id', f.id, 'filename', f.filename,
                'content_type', f.content_type, 'size', f.size_bytes) ORDER BY f.id)
              FROM task_files f WHERE f.task_id = t.id), '[]'::json) AS files
"""


def task_json(row: dict[str, Any]) -> dict[str, Any]:
    """The task object of the API and the webhook: the reference fields, then ours."""
    return {
        "id": row["id"],
        "accountId": row["account_id"],
        "task_number": row["task_number"],
        "status": row["status"],
        "handler": row["handler"],
        "title": row["title"],
        "instructions": row["instructions"],
        "startedAt": iso(row["started_at"]),
        "completedAt": iso(row["completed_at"]),
        "failedAt": iso(row["failed_at"]),
        "notes": row["notes"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
        "type": row["type"],
        "data": row["data"],
        "files": row["files"],
        "result": row["result"],
        "trajectory_id": str(row["trajectory_id"]),
        "canceledAt": iso(row["canceled_at"]),
        "attempts": row["attempts"],
        "sop": {
            "id": row["sop_id"],
            "version": row["sop_version"],
            "builtin": row["sop_builtin"],
        },
        "links": {
            "self": f"/tasks/{row['id']}",
            "trajectory": f"/tasks/{row['id']}/trajectory",
        },
    }


def insert_task(
    conn: Connection,
    *,
    account_id: int,
    task_type: str,
    title: str,
    instructions: str,
    sop_id: int,
    data: str | None,
    inputs: dict[str, Any],
) -> int:
    """Insert a pending task with the account's next task number, in the caller's transaction."""
    seq = conn.execute(
        "UPDATE accounts SET task_seq = task_seq + 1 WHERE id = %s RETURNING task_seq",
        (account_id,),
    ).fetchone()
    row = conn.execute(
        """
        INSERT INTO tasks (account_id, task_number, type, title, instructions, sop_id, data, inputs)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
        RETURNING id
        """,
        (account_id, seq["task_seq"], task_type, title, instructions, sop_id, data, Jsonb(inputs)),
    ).fetchone()
    return int(row["id"])


def insert_file(
    conn: Connection, task_id: int, filename: str, content_type: str, content: bytes
) -> None:
    conn.execute(
        "INSERT INTO task_files (task_id, filename, content_type, size_bytes, content)"
        " VALUES (%s, %s, %s, %s, %s)",
        (task_id, filename, content_type, len(content), content),
    )


def get_task(conn: Connection, task_id: int, account_id: int | None = None) -> dict | None:
    """One task; with ``account_id``, only if it belongs to that account."""
    sql = f"SELECT {_TASK_COLUMNS} FROM tasks t JOIN sops s ON s.id = t.sop_id WHERE t.id = %s"
    params: list[Any] = [task_id]
    if account_id is not None:
        sql += " AND t.account_id = %s"
        params.append(account_id)
    return conn.execute(sql, params).fetchone()


def list_tasks(
    conn: Connection,
    account_id: int,
    *,
    before_id: int | None,
    limit: int,
    statuses: list[str],
    types: list[str],
) -> list[dict]:
    """Newest first, keyset-paginated on id."""
    where = ["t.account_id = %s"]
    params: list[Any] = [account_id]
    if before_id is not None:
        where.append("t.id < %s")
        params.append(before_id)
    if statuses:
        where.append("t.status = ANY(%s)")
        params.append(statuses)
    if types:
        where.append("t.type = ANY(%s)")
        params.append(types)
    params.append(limit)
    return conn.execute(
        f"SELECT {_TASK_COLUMNS} FROM tasks t JOIN sops s ON s.id = t.sop_id"
        f" WHERE {' AND '.join(where)} ORDER BY t.id DESC LIMIT %s",
        params,
    ).fetchall()


def mark_dispatched(conn: Connection, task_id: int) -> None:
    """Record that a message was sent; a task already claimed is left alone."""
    conn.execute(
        "UPDATE tasks SET status = 'dispatching', enqueued_at = now(), updated_at = now()"
        " WHERE id = %s AND status IN ('pending', 'dispatching')",
        (task_id,),
    )
