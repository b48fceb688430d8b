"""Sending an ended task again (``POST /tasks/{id}/retry``, the console's "Send again"): which
tasks may be, what the new task carries, and the link between the two.

The new task is an ordinary creation (validated against the account's SOP of today, so a fixed
SOP or a stored login takes effect) with the old task's type, data, sensitive inputs and files.
A task whose run reached a submit step is never sent again this way: the payer may have what
it submitted, and a second claim or appeal is a real one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.fernet import MultiFernet

from shared.crypto import decrypt_json
from shared.db import Conn
from shared.inputs import parse_task_data
from shared.tasks import TaskStatus, iso

RETRYABLE = frozenset({TaskStatus.FAILED, TaskStatus.CANCELED, TaskStatus.COMPLETED_WITH_ISSUES})


class NotRetryable(Exception):
    """Why the task cannot be sent again (``code`` for the API's 409, ``details`` naming the
    task's status, and the submit step it ran and when)."""

    def __init__(self, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


@dataclass(frozen=True)
class RetryRequest:
    """The creation request that sends a task again."""

    task_type: str
    data: str | dict[str, Any] | None
    files: list[tuple[str, str, bytes]]  # (filename, content type, content)


def retry_request(conn: Conn, fernet: MultiFernet, task_id: int, account_id: int) -> RetryRequest:
    """What sending the account's task again creates. ``LookupError`` if it has no such task,
    :class:`NotRetryable` if the task may not be sent again.

    The task's row is read ``FOR SHARE``: the retention purge, which deletes a task's files
    before the task, skips it until this transaction ends, so the files read are all it had."""
    row = _task(conn, task_id, account_id, lock=True)
    if row is None:
        raise LookupError(task_id)
    if refused := _refusal(task_id, row):
        raise refused
    data: str | dict[str, Any] | None = row["data"]
    if row["secret_inputs"] is not None:
        # `data` shows the sensitive inputs as ***: the new task gets them back from their
        # encrypted copy, and the data as the object it was read into.
        data = {**parse_task_data(data), **decrypt_json(fernet, row["secret_inputs"])}
    files = conn.execute(
        "SELECT filename, content_type, content FROM task_files WHERE task_id = %s ORDER BY id",
        (task_id,),
    ).fetchall()
    return RetryRequest(
        row["type"], data, [(f["filename"], f["content_type"], bytes(f["content"])) for f in files]
    )


def refusal(conn: Conn, task_id: int, account_id: int) -> NotRetryable | None:
    """Why the account's task cannot be sent again, or None if it can (or does not exist)."""
    row = _task(conn, task_id, account_id)
    return _refusal(task_id, row) if row else None


def _task(conn: Conn, task_id: int, account_id: int, lock: bool = False) -> dict[str, Any] | None:
    return conn.execute(
        "SELECT type, status, data, secret_inputs, irreversible_step, irreversible_at"
        " FROM tasks WHERE id = %s AND account_id = %s" + (" FOR SHARE" if lock else ""),
        (task_id, account_id),
    ).fetchone()


def _refusal(task_id: int, row: dict[str, Any]) -> NotRetryable | None:
    status = row["status"]
    if row["irreversible_at"] is not None:
        step, at = row["irreversible_step"], iso(row["irreversible_at"])
        return NotRetryable(
            "may_have_submitted",
            f"Task {task_id} ran its submit step '{step}' at {at}: the payer may have it"
            " already. Check the portal; to submit again, create a new task.",
            {"status": status, "step": step, "at": at},
        )
    if status not in RETRYABLE:
        return NotRetryable(
            "not_retryable",
            f"Task {task_id} is {status}: only a task that ended failed, canceled or"
            " completed_with_issues can be sent again.",
            {"status": status},
        )
    return None


def send_link(conn: Conn, task_id: int, retry_of: int) -> None:
    """Send the INSERT that records ``task_id`` as a retry of ``retry_of`` (in a pipeline)."""
    conn.execute(
        "INSERT INTO task_retries (task_id, retry_of) VALUES (%s, %s)", (task_id, retry_of)
    )
