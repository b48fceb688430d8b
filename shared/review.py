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

A task waits until its deadline, ``review.expires_at``: the account's ``review_timeout_hours``
(7 days unless set) after it paused. Undecided by then, the scheduler ends it as a rejection
does, ``completed_with_issues`` with nothing submitted (:func:`expire_due`), so a claim nobody
looked at reaches the client's webhook instead of waiting out of sight.
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
MAX_REVIEW_TIMEOUT_HOURS = 2160  # 90 days
EXPIRED_PER_CALL = 100

# The reviews past their deadline, by the partial index on it: the due ones and only those.
_DUE = """
    SELECT id, account_id, review_step, review_requested_at, review_expires_at FROM tasks
     WHERE status = 'pending_review' AND review_expires_at <= now()
     ORDER BY review_expires_at
     LIMIT %s
     FOR UPDATE SKIP LOCKED
"""

# A task paused by a worker of the release before deadlines existed, still running during a
# rolling upgrade after the migration, has none (the migration set only those paused before
# it): it gets the account's, from when it paused, so it cannot wait out of sight for ever.
# Found by the same partial index, ordered by its key, then updated by id: a tick with no such
# task reads nothing. (As one UPDATE joined to its ids, the planner could scan every task.)
_MISSING_DEADLINES = """
    SELECT id FROM tasks
     WHERE status = 'pending_review' AND review_expires_at IS NULL
       AND review_requested_at IS NOT NULL
     ORDER BY review_expires_at
     LIMIT 1000
     FOR UPDATE SKIP LOCKED
"""
_SET_DEADLINES = """
    UPDATE tasks t
       SET review_expires_at = t.review_requested_at
                               + make_interval(hours => a.review_timeout_hours)
      FROM accounts a
     WHERE t.id = ANY(%s) AND a.id = t.account_id
"""


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


def expire_due(conn: Conn, limit: int = EXPIRED_PER_CALL) -> int:
    """End the tasks whose review nobody decided before its deadline: ``completed_with_issues``
    with ``task_finished``, their review's decision ``expired``; how many. In the caller's
    transaction; a task another transaction holds (a decision being made) is left to it."""
    missing = [row["id"] for row in conn.execute(_MISSING_DEADLINES).fetchall()]
    if missing:
        conn.execute(_SET_DEADLINES, (missing,))
    due = conn.execute(_DUE, (limit,)).fetchall()
    for row in due:
        task_queries.record_review(
            conn, row["id"], row["account_id"], ReviewDecision.EXPIRED, reviewer=None, note=None
        )
        task_queries.finish_task(
            conn, row["id"], TaskStatus.COMPLETED_WITH_ISSUES, expiry_note(row)
        )
    return len(due)


def expiry_note(row: dict[str, Any]) -> str:
    """The notes of a task whose review expired: since when it waited, and what to do now."""
    hours = round((row["review_expires_at"] - row["review_requested_at"]).total_seconds() / 3600)
    return (
        f"Not reviewed within {hours} hours (the account's review_timeout_hours): nothing was"
        f" submitted. It paused before {row['review_step']!r} at"
        f" {task_queries.iso(row['review_requested_at'])}. To have it filled and reviewed again,"
        f" send it again: POST /tasks/{row['id']}/retry."
    )
