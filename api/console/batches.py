"""Batches: new tasks from a file (a clinic's CSV export, or JSON lines), a batch's page that
follows its tasks until the last one ends, and the list of the account's batches.

A file becomes one batch through the same function as ``POST /tasks/batch``, all or none: a
refused file names each bad row by its line. Each form carries a one-time token, sent as the
batch's Idempotency-Key, so a form sent twice (a double click, a reload) creates its tasks once.
"""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, render_template, request, url_for

from api.console import (
    audit_entry,
    bp,
    current,
    new_submission,
    record_if_replayed,
    requires,
    sent_submission,
)
from api.errors import ApiError, ValidationFailed, field_errors
from api.limits import check_json
from api.pagination import decode_cursor, encode_cursor
from api.runtime import runtime
from api.tasks import batch_items, create_batch
from shared import batches
from shared.sop import store as sop_store
from shared.sop.task_types import TASK_TYPES
from shared.task_files import TaskFileError, name_lines, read_task_file
from shared.tasks import task_json
from shared.users import Role

PAGE_SIZE = 50


@bp.get("/batches")
def batches_page():
    account = current().user.account_id
    with runtime().pool.connection() as conn:
        rows = batches.list_batches(
            conn, account, before_id=decode_cursor(request.args.get("cursor")),
            limit=PAGE_SIZE + 1,
        )  # fmt: skip
    older = None
    if len(rows) > PAGE_SIZE:
        rows = rows[:PAGE_SIZE]
        older = url_for("console.batches_page", cursor=encode_cursor(rows[-1]["id"]))
    return render_template("console/batches.html", batches=rows, older=older)


def _types() -> list[str]:
    with runtime().pool.connection() as conn:
        return [*TASK_TYPES, *sop_store.custom_types(conn, current().user.account_id)]


def _form(status: int = 200, **shown: Any):
    """The "New tasks" form, with a fresh one-time token unless it shows a refusal of a sent
    one (sending it again after fixing the file is then the same submission)."""
    context = {
        "types": _types(), "chosen_type": "", "problems": [], "error": None,
        "submission": new_submission(), "limit": runtime().settings.max_batch_tasks,
        **shown,
    }  # fmt: skip
    return render_template("console/batch_new.html", **context), status


@bp.get("/batches/new")
@requires(Role.OPERATOR)
def batch_new():
    return _form()


@bp.post("/batches")
@requires(Role.OPERATOR)
def batch_create():
    """Create the file's tasks as one batch, all or none, then show the batch."""
    chosen_type = request.form.get("type", "").strip()
    submission = sent_submission()
    shown: dict[str, Any] = {"chosen_type": chosen_type, "submission": submission}
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _form(422, error="Choose a file of tasks.", **shown)
    limit = runtime().settings.max_file_bytes
    content = upload.read(limit + 1)
    if len(content) > limit:
        return _form(413, error=f"The file is over {limit} bytes (MAX_FILE_BYTES).", **shown)
    try:
        text = content.decode("utf-8")
        rows = read_task_file(
            text, is_csv=upload.filename.lower().endswith(".csv"),
            task_type=chosen_type or None, choose_type="choose a type above",
            max_rows=runtime().settings.max_batch_tasks,
        )  # fmt: skip
    except UnicodeDecodeError:
        return _form(422, error="The file is not UTF-8 text: save it as CSV (UTF-8).", **shown)
    except TaskFileError as err:
        return _form(422, error=f"The file cannot be read: {err}.", **shown)
    for number, task in rows:  # what POST /tasks/batch refuses in its JSON body
        try:
            check_json(task, runtime().settings.max_json_depth)
        except ApiError as err:
            return _form(err.status, error=f"{err.message} (line {number})", **shown)
    lines = [number for number, _task in rows]
    entry = audit_entry("batch.create", "batches", {"file": upload.filename})
    try:
        items = batch_items({"tasks": [task for _number, task in rows]})
        answer, _status = create_batch(items, f"console-{submission}", entry)
    except ValidationFailed as err:
        problems = name_lines(field_errors(err.details), lines)
        message = "No task was created: fix these rows and send the file again."
        return _form(err.status, error=message, problems=problems, **shown)
    except ApiError as err:
        if err.code == "idempotency_conflict":
            message = "This form was already sent with another file: open a new form to send it."
            return _form(409, error=message, chosen_type=chosen_type)
        task = (err.details or {}).get("task") if isinstance(err.details, dict) else None
        where = f" (line {lines[task]})" if isinstance(task, int) and task < len(lines) else ""
        return _form(err.status, error=f"{err.message}{where}", **shown)
    record_if_replayed(entry)
    return redirect(
        url_for("console.batch", batch_id=answer["batch_id"], notice="batch_created"), 303
    )


def _batch_context(batch_id: int) -> dict[str, Any]:
    with runtime().pool.connection() as conn:
        found = batches.get_batch(conn, current().user.account_id, batch_id)
        if found is None:
            abort(404, "No such batch.")
        tasks = [task_json(row) for row in batches.batch_tasks(conn, batch_id)]
    return {"batch": found, "tasks": tasks, "final": found["finished"]}


@bp.get("/batches/<int:batch_id>")
def batch(batch_id: int):
    return render_template("console/batch.html", **_batch_context(batch_id))


@bp.get("/batches/<int:batch_id>/live")
def batch_live(batch_id: int):
    """The part of the batch's page that changes while its tasks run: polled by console.js."""
    return render_template("console/_batch_live.html", **_batch_context(batch_id))
