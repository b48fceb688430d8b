"""Human review: a person approves or rejects a task paused at a review point.

A task reaches ``pending_review`` when its SOP comes to a ``review`` step (or, for a task type
the account requires review for, its first irreversible step): the worker records a screenshot
of the filled form, releases the task and closes its browser. :func:`decide` records the
decision. Approved, the task goes back to ``pending`` and runs again from the top: the agent
signs in, re-runs the steps before the review point (the form is filled again; nothing was
submitted), passes the review point without stopping, and goes on to submit. Rejected, it ends
``completed_with_issues`` with the reviewer's note, and ``task_finished`` is sent as usual.

The API (``POST /tasks/{id}/review``) and the operator console both call :func:`decide`; after
their transaction commits, :func:`shared.tasks.send_now` sends an approved task to the workers
at once (without it, the scheduler's next tick does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared import tasks as task_queries
from shared.db import Conn
from shared.sop.model import ReviewStep, Step, flatten
from shared.tasks import ReviewDecision, TaskStatus

if TYPE_CHECKING:
    from shared.sop.model import Sop

MAX_NOTE_CHARS = 2000
MAX_REVIEWER_CHARS = 200


class ReviewError(Exception):
    """Base of the errors of a review decision."""


class TaskNotFound(ReviewError):
    """No such task for this account."""


class NotReviewable(ReviewError):
    """The task is not ``pending_review``: there is nothing to decide."""

    def __init__(self, task_id: int, status: str) -> None:
        self.task_id = task_id
        self.status = status
        super().__init__(f"task {task_id} is {status}, not pending review")


def review_point(sop: Sop) -> str | None:
    """Where a task of this SOP pauses when its type requires review: the title of its
    ``review`` step, else of its first irreversible step; None if it has neither."""
    steps = flatten(sop.steps)
    found: Step | None = next((s for s in steps if isinstance(s, ReviewStep)), None)
    found = found or next((s for s in steps if s.irreversible), None)
    return found.title() if found is not None else None


def rejection_note(reviewer: str, note: str | None) -> str:
    """The notes of a rejected task: who rejected it, and why in their words."""
    said = f": {note}" if note else "."
    return f"Rejected in review by {reviewer}; nothing was submitted{said}"


def decide(
    conn: Conn,
    *,
    account_id: int,
    task_id: int,
    approved: bool,
    note: str | None,
    reviewer: str,
) -> dict[str, Any]:
    """Approve or reject the account's task paused for review; the task row, as it is now.

    In the caller's transaction (the task row stays locked until it ends). Raises
    :class:`TaskNotFound` for another account's task and :class:`NotReviewable` unless it is
    ``pending_review``. An approved task is ``pending``: call :func:`shared.tasks.send_now` after
    commit.
    """
    note = (note or "").strip()[:MAX_NOTE_CHARS] or None
    reviewer = reviewer.strip()[:MAX_REVIEWER_CHARS] or "unknown"
    locked = task_queries.lock_task(conn, task_id, account_id)
    if locked is None:
        raise TaskNotFound(f"task {task_id}")
    if locked["status"] != TaskStatus.PENDING_REVIEW:
        raise NotReviewable(task_id, locked["status"])
    decision = ReviewDecision.APPROVED if approved else ReviewDecision.REJECTED
    task_queries.record_review(conn, task_id, account_id, decision, reviewer=reviewer, note=note)
    if not approved:
        task_queries.finish_task(
            conn, task_id, TaskStatus.COMPLETED_WITH_ISSUES, rejection_note(reviewer, note)
        )
    row = task_queries.get_task(conn, task_id, account_id)
    assert row is not None  # locked above
    return row
