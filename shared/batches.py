"""Batches: the tasks one ``POST /tasks/batch`` created, followed as one.

A batch row counts its tasks that have yet to end. The transaction that ends a task (the one
place that does, :func:`shared.tasks.finish_task`) counts it down under the batch row's lock,
so exactly one ending sees the count reach 0: that one marks the batch finished and writes its
``batch.finished`` event, for an endpoint that opted in to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.db import Conn
from shared.tasks import BATCH_FINISHED, SELECT_TASKS, iso


def send_new_batch(conn: Conn, account_id: int, size: int) -> Callable[[], dict[str, Any]]:
    """Send the batch row's INSERT (for a pipeline, before its tasks'); the callable reads it."""
    cursor = conn.execute(
        "INSERT INTO task_batches (account_id, size, unfinished) VALUES (%s, %s, %s)"
        " RETURNING id, created_at",
        (account_id, size, size),
    )
    return lambda: cursor.fetchone() or {}


def send_members(conn: Conn, batch_id: int, task_ids: list[int]) -> None:
    """Send the INSERT that puts the tasks in the batch, in their order."""
    conn.execute(
        "INSERT INTO batch_tasks (task_id, batch_id, position)"
        " SELECT task_id, %s, position FROM unnest(%s::bigint[]) WITH ORDINALITY"
        " AS member(task_id, position)",
        (batch_id, task_ids),
    )


def task_ended(conn: Conn, task_id: int) -> None:
    """Count an ended task down in its batch, if it has one, in the caller's transaction; the
    last one marks the batch finished and writes the ``batch.finished`` event."""
    from shared.webhooks import enqueue_task_event

    row = conn.execute(
        """
        UPDATE task_batches b
           SET unfinished = b.unfinished - 1,
               finished_at = CASE WHEN b.unfinished = 1 THEN now() END
          FROM batch_tasks m
         WHERE m.task_id = %s AND b.id = m.batch_id AND b.unfinished > 0
        RETURNING b.*
        """,
        (task_id,),
    ).fetchone()
    if row is None or row["unfinished"] > 0:
        return
    batch = batch_json(conn, row)
    enqueue_task_event(
        conn, account_id=row["account_id"], task_id=None, event=BATCH_FINISHED, payload=batch
    )


def get_batch(conn: Conn, account_id: int, batch_id: int) -> dict[str, Any] | None:
    """The account's batch as the API shows it, or None."""
    row = conn.execute(
        "SELECT * FROM task_batches WHERE id = %s AND account_id = %s", (batch_id, account_id)
    ).fetchone()
    return batch_json(conn, row) if row else None


def batch_json(conn: Conn, row: dict[str, Any]) -> dict[str, Any]:
    """The batch object: its tasks in order, and how many are in each status now."""
    members = conn.execute(
        "SELECT m.task_id, t.status FROM batch_tasks m JOIN tasks t ON t.id = m.task_id"
        " WHERE m.batch_id = %s ORDER BY m.position",
        (row["id"],),
    ).fetchall()
    counts: dict[str, int] = {}
    for member in members:
        counts[member["status"]] = counts.get(member["status"], 0) + 1
    return {
        "id": row["id"],
        "accountId": row["account_id"],
        "size": row["size"],
        "unfinished": row["unfinished"],
        "finished": row["finished_at"] is not None,
        "createdAt": iso(row["created_at"]),
        "finishedAt": iso(row["finished_at"]),
        "counts": counts,
        "task_ids": [member["task_id"] for member in members],
        "links": {"self": f"/batches/{row['id']}"},
    }


def batch_tasks(conn: Conn, batch_id: int) -> list[dict[str, Any]]:
    """The batch's tasks in their order, as :func:`shared.tasks.task_json` takes them."""
    return conn.execute(
        f"{SELECT_TASKS} JOIN batch_tasks m ON m.task_id = t.id"
        " WHERE m.batch_id = %s ORDER BY m.position",
        (batch_id,),
    ).fetchall()


def list_batches(
    conn: Conn, account_id: int, *, before_id: int | None, limit: int
) -> list[dict[str, Any]]:
    """The account's batch rows, newest first (``before_id``: the page after that one)."""
    return conn.execute(
        "SELECT * FROM task_batches WHERE account_id = %s AND id < %s ORDER BY id DESC LIMIT %s",
        (account_id, before_id if before_id is not None else 2**63 - 1, limit),
    ).fetchall()


def batch_of(conn: Conn, task_id: int) -> dict[str, Any] | None:
    """The batch a task belongs to (``batch_id``, ``position`` from 1, ``size``), or None."""
    return conn.execute(
        "SELECT m.batch_id, m.position, b.size FROM batch_tasks m"
        " JOIN task_batches b ON b.id = m.batch_id WHERE m.task_id = %s",
        (task_id,),
    ).fetchone()
