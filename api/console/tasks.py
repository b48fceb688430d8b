"""Tasks: the list with filters, a task's page with its live trajectory, the MFA code form,
the human review form and "Send again"."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import Response, abort, redirect, render_template, request, url_for
from marshmallow import ValidationError

from api.console import audit_entry, bp, current, record, record_if_replayed, requires
from api.errors import ApiError
from api.pagination import decode_cursor, encode_cursor
from api.runtime import runtime
from api.tasks import InputSchema, retry
from shared import batches, retries
from shared import tasks as task_queries
from shared.db import whole_number
from shared.sop import store as sop_store
from shared.sop.task_types import TASK_TYPES
from shared.tasks import FINAL_STATUSES, TaskStatus, task_json
from shared.trajectories import account_artifact, trajectory_steps
from shared.users import Role

PAGE_SIZE = 50


@bp.get("/")
def home():
    return redirect(url_for("console.tasks"), 303)


def _day(name: str) -> date | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        abort(400, f"{name} must be a date such as 2026-12-01.")


def _start_of(day: date | None) -> datetime | None:
    return datetime.combine(day, time(), tzinfo=UTC) if day else None


@bp.get("/tasks")
def tasks():
    account = current().user.account_id
    status = request.args.get("status", "")
    task_type = request.args.get("type", "")
    batch = request.args.get("batch", "").strip()
    since, until = _day("since"), _day("until")
    if status and status not in {s.value for s in TaskStatus}:
        abort(400, f"Unknown status {status!r}.")
    if batch and whole_number(batch) is None:
        abort(400, "batch must be a batch's number.")
    with runtime().pool.connection() as conn:
        types = [*TASK_TYPES, *sop_store.custom_types(conn, account, removed=True)]
        if task_type and task_type not in types:
            abort(400, f"Unknown task type {task_type!r}.")
        rows = task_queries.list_tasks(
            conn,
            account,
            before_id=decode_cursor(request.args.get("cursor")),
            limit=PAGE_SIZE + 1,
            statuses=[status] if status else [],
            types=[task_type] if task_type else [],
            created_since=_start_of(since),
            # "until" is the last day shown, so the bound is the start of the day after it
            # (after the last day a date can be, there is none).
            created_before=_start_of(until + timedelta(days=1))
            if until and until < date.max
            else None,
            batch_id=int(batch) if batch else None,
        )
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    filters = {"status": status, "type": task_type, "since": since or "", "until": until or "",
               "batch": batch}  # fmt: skip
    older = None
    if more:
        older = url_for("console.tasks", **{k: v for k, v in filters.items() if v},
                        cursor=encode_cursor(rows[-1]["id"]))  # fmt: skip
    return render_template(
        "console/tasks.html", tasks=[task_json(r) for r in rows], filters=filters,
        statuses=[s.value for s in TaskStatus], types=types, older=older,
    )  # fmt: skip


def _task_or_404(task_id: int) -> tuple[dict[str, Any], list[dict], retries.NotRetryable | None]:
    """The task, its steps, and once it has ended, why it cannot be sent again (None: it can)."""
    with runtime().pool.connection() as conn:
        row = task_queries.get_task(conn, task_id, current().user.account_id)
        if row is None:
            abort(404, "No such task.")
        steps = trajectory_steps(conn, task_id)
        not_again = None
        if row["status"] in FINAL_STATUSES:  # (a page stops polling once final: read once)
            not_again = retries.refusal(conn, task_id, current().user.account_id)
    return task_json(row), steps, not_again


def _live_context(task_id: int, **extra: Any) -> dict[str, Any]:
    task, steps, not_again = _task_or_404(task_id)
    final = task["status"] in FINAL_STATUSES
    return {
        "task": task, "steps": steps, "final": final,
        "input_error": None, "review_error": None, "cancel_error": None, "retry_error": None,
        # "Send again": offered for a task that can be; a submitted one says why it is not.
        "retryable": final and not_again is None,
        "submitted": not_again.message if not_again and not_again.code == "may_have_submitted"
        else None,
        **extra,
    }  # fmt: skip


def _page(task_id: int, status: int = 200, **extra: Any):
    """The task's whole page: the live part and its batch (the task names the tasks it
    retries or that retry it)."""
    context = _live_context(task_id, **extra)
    with runtime().pool.connection() as conn:
        batch = batches.batch_of(conn, task_id)
    return render_template("console/task.html", batch=batch, **context), status


@bp.get("/tasks/<int:task_id>")
def task(task_id: int):
    return _page(task_id)


@bp.get("/tasks/<int:task_id>/live")
def task_live(task_id: int):
    """The part of the task's page that changes while it runs: polled by console.js."""
    return render_template("console/_task_live.html", **_live_context(task_id))


@bp.get("/artifacts/<int:artifact_id>")
def artifact(artifact_id: int):
    with runtime().pool.connection() as conn:
        row = account_artifact(conn, artifact_id, current().user.account_id)
    if row is None:
        abort(404, "No such screenshot.")
    # Patient data: no-store and nosniff, as on every answer (api.limits).
    return Response(bytes(row["content"]), mimetype=row["content_type"])


def _again(task_id: int, status: int, **errors: str | None):
    """The task's page again, saying why the form was refused (and keeping what was typed)."""
    return _page(task_id, status, **errors)


@bp.post("/tasks/<int:task_id>/input")
@requires(Role.OPERATOR)
def task_input(task_id: int):
    """The one-time code a waiting task asked for, through the same function as the API's."""
    try:
        code = InputSchema().load({"code": request.form.get("code", "").strip()})["code"]
    except ValidationError:
        return _again(task_id, 422, input_error="Enter the code (1 to 64 characters).")
    with runtime().pool.connection() as conn:
        try:
            found = task_queries.give_input(
                conn, runtime().fernet, account_id=current().user.account_id, task_id=task_id,
                code=code,
            )  # fmt: skip
        except task_queries.NotWaiting as err:
            conn.rollback()
            return _again(task_id, 409, input_error=str(err))
        if not found:
            abort(404, "No such task.")
        record(conn, "task.input", f"task:{task_id}")  # the code itself is never recorded
    return redirect(url_for("console.task", task_id=task_id, notice="input"), 303)


@bp.post("/tasks/<int:task_id>/cancel")
@requires(Role.OPERATOR)
def task_cancel(task_id: int):
    """Cancel, through the same function as ``POST /tasks/{id}/cancel``."""
    with runtime().pool.connection() as conn:
        try:
            found = task_queries.cancel_task(
                conn, account_id=current().user.account_id, task_id=task_id
            )
        except task_queries.AlreadyFinished as err:
            conn.rollback()
            return _again(task_id, 409, cancel_error=str(err))
        if not found:
            abort(404, "No such task.")
        record(conn, "task.cancel", f"task:{task_id}")
    return redirect(url_for("console.task", task_id=task_id, notice="canceled"), 303)


@bp.post("/tasks/<int:task_id>/review")
@requires(Role.OPERATOR)
def task_review(task_id: int):
    """Approve or reject a task that is pending review (``shared.review``)."""
    from shared import review  # the human review step's module

    decision = request.form.get("decision")
    # A browser sends a textarea's line breaks as CRLF; its maxlength counted each as one.
    note = request.form.get("note", "").replace("\r\n", "\n").strip() or None
    if decision not in ("approve", "reject"):
        return _again(task_id, 422, review_error="Choose approve or reject.", review_note=note)
    if note and len(note) > review.MAX_NOTE_CHARS:  # as POST /tasks/{id}/review refuses it
        return _again(
            task_id, 422, review_error=f"A note is at most {review.MAX_NOTE_CHARS} characters.",
            review_note=note,
        )  # fmt: skip
    with runtime().pool.connection() as conn:
        try:
            review.decide(
                conn, account_id=current().user.account_id, task_id=task_id,
                approved=decision == "approve", note=note, reviewer=current().user.email,
            )  # fmt: skip
        except review.TaskNotFound:
            abort(404, "No such task.")
        except review.NotReviewable as err:
            conn.rollback()
            return _again(task_id, 409, review_error=str(err), review_note=note)
        record(conn, f"task.review.{decision}", f"task:{task_id}", {"note": note})
    if decision == "approve":  # committed: send it to the workers now, not at the next tick
        task_queries.send_now(runtime(), task_id)
    return redirect(url_for("console.task", task_id=task_id, notice="reviewed"), 303)


@bp.post("/tasks/<int:task_id>/retry")
@requires(Role.OPERATOR)
def task_retry(task_id: int):
    """Send the task again, through the same function as ``POST /tasks/{id}/retry``. The
    Idempotency-Key is the task's and the number of times the page saw it sent again: pressed
    twice, or on two such pages, it sends once and shows the task it created; pressed on the
    page after that task failed too, it sends once more."""
    seen = request.form.get("retries", "0")
    if not (seen.isdigit() and len(seen) <= 6):
        abort(400, "retries must be a number.")
    entry = audit_entry("task.retry", f"task:{task_id}")
    try:
        answer, _status = retry(task_id, f"console-retry-{task_id}-{seen}", entry)
    except ApiError as err:
        if err.status == 404:
            abort(404, "No such task.")
        return _again(task_id, err.status, retry_error=err.message)
    record_if_replayed(entry)
    return redirect(url_for("console.task", task_id=answer["id"], notice="retried"), 303)
