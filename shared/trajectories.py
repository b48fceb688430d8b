"""A task's trajectory: every step the agent took, per attempt, with its screenshots.

The worker writes it as the run goes (``worker.runner.DbRecorder``); the API reads it.
"""

from __future__ import annotations

from datetime import datetime

from shared.db import Conn, fetch_one


def record_step(
    conn: Conn,
    *,
    task_id: int,
    account_id: int,
    attempt: int,
    seq: int,
    name: str,
    status: str,
    message: str,
    started_at: datetime,
    duration_ms: int,
    screenshot: bytes | None,
) -> None:
    """Store one step, and its screenshot as an artifact the account can fetch."""
    artifact_id = None
    if screenshot:
        artifact_id = fetch_one(
            conn,
            "INSERT INTO artifacts (account_id, task_id, content_type, content)"
            " VALUES (%s, %s, 'image/png', %s) RETURNING id",
            (account_id, task_id, screenshot),
        )["id"]
    conn.execute(
        "INSERT INTO trajectory_steps (task_id, attempt, seq, name, status, message,"
        " started_at, duration_ms, artifact_id) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
        (task_id, attempt, seq, name, status, message, started_at, duration_ms, artifact_id),
    )


def stored_counts(conn: Conn, task_id: int) -> tuple[int, int]:
    """The steps and the screenshots the task's trajectory holds, every attempt together: where
    a new run's count starts (MAX_TASK_STEPS and MAX_TASK_SCREENSHOTS bound the task, not one
    run of it)."""
    row = fetch_one(
        conn,
        "SELECT count(*) AS steps, count(artifact_id) AS screenshots"
        " FROM trajectory_steps WHERE task_id = %s",
        (task_id,),
    )
    return row["steps"], row["screenshots"]


def task_trajectory_id(conn: Conn, task_id: int, account: int) -> str | None:
    row = conn.execute(
        "SELECT trajectory_id FROM tasks WHERE id = %s AND account_id = %s", (task_id, account)
    ).fetchone()
    return str(row["trajectory_id"]) if row else None


def trajectory_steps(conn: Conn, task_id: int) -> list[dict]:
    """Every recorded step of every attempt, in the order they ran."""
    return conn.execute(
        "SELECT attempt, seq, name, status, message, started_at, duration_ms, artifact_id"
        " FROM trajectory_steps WHERE task_id = %s ORDER BY attempt, seq, id",
        (task_id,),
    ).fetchall()


def account_artifact(conn: Conn, artifact_id: int, account: int) -> dict | None:
    return conn.execute(
        "SELECT content_type, content FROM artifacts WHERE id = %s AND account_id = %s",
        (artifact_id, account),
    ).fetchone()
