"""/tasks: create (one, or a batch of many), read and list tasks; /batches: follow a batch.

Creation is one transaction (task rows, files, a batch's row, idempotency record); the Celery
messages are sent only after it commits. If Redis is unreachable the tasks are still stored as
``pending`` and the scheduler sends them later, so the client's 200 is never a lie.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any, NamedTuple

import kombu.exceptions
import psycopg
import redis
from flask import Blueprint, jsonify, request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates
from psycopg.types.json import Jsonb
from werkzeug.datastructures import FileStorage
from werkzeug.utils import secure_filename

from api import idempotency
from api.audit import api_call_entry, describe_call, recorded_by_handler
from api.auth import account_id, key_prefix, require_account
from api.bodies import json_body, json_object, unsupported_media, validated
from api.errors import ApiError, NotFound, SopRefused, ValidationFailed, field_errors
from api.limits import LimitExceeded, query_value, within_quota
from api.pagination import decode_cursor, page, page_limit
from api.runtime import runtime
from shared import audit, batches, logs, metrics, quotas, retries, review
from shared import tasks as task_queries
from shared.celery import send_run_tasks
from shared.crypto import encrypt_json
from shared.db import Conn, outside_transaction, relax_commit, whole_number
from shared.inputs import DataLimitExceeded, InputError, parse_task_data
from shared.portals import send_credential_portals
from shared.sop import store as sop_store
from shared.sop.errors import StoredSopRefused
from shared.sop.expressions import fill_instructions
from shared.sop.task_types import TASK_TYPES
from shared.tasks import FINAL_STATUSES, NewTask, TaskStatus, task_json

log = logging.getLogger(__name__)

bp = Blueprint("tasks", __name__)
bp.before_request(require_account)


class TaskCreateSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # clients of the reference API may send fields of their own

    # A built-in type or one of the account's own: checked against the account in _new_task.
    type = fields.String(required=True, validate=validate.Length(min=1, max=200))
    data = fields.Raw(load_default=None, allow_none=True)

    @validates("data")
    def _data_is_text_or_object(self, value: Any, **_: Any) -> None:
        if value is not None and not isinstance(value, str | dict):
            raise ValidationError("data must be text of 'key: value' lines or a JSON object.")


_TASK_SCHEMA = TaskCreateSchema()  # loading is thread-safe: one instance serves every request


def _read_body() -> tuple[dict[str, Any], list[FileStorage]]:
    """The request as a mapping plus its files; 400 for malformed input, 415 for other media."""
    mimetype = request.mimetype
    if mimetype == "application/json":
        return json_object(), []
    if mimetype == "multipart/form-data":
        if "files" in request.form:  # sent as text: it would be dropped, and the task made bare
            raise ValidationFailed(
                "files must be file parts of the multipart body, not text.",
                [{"field": "files", "message": "send each file as a part with a filename"}],
            )
        form = {key: request.form[key] for key in request.form}
        return form, [f for f in request.files.getlist("files") if _named_file(f)]
    raise unsupported_media(
        "Send application/json, or multipart/form-data with type, data and files."
    )


def _named_file(part: FileStorage) -> bool:
    """Whether a file part is a file to keep. One with neither name nor content is a form's
    file input left empty (a browser sends it so); one with content but no name would be a
    file lost without a word, and is refused."""
    if part.filename:
        return True
    if part.stream.read(1):
        raise ValidationFailed(
            "A file part has content but no filename.",
            [{"field": "files", "message": "name each file part (curl: -F files=@letter.pdf)"}],
        )
    return False


def _read_files(uploads: list[FileStorage]) -> list[tuple[str, str, bytes]]:
    limit = runtime().settings.max_file_bytes
    files = []
    for upload in uploads:
        content = upload.read(limit + 1)
        if len(content) > limit:
            raise ApiError(
                413,
                "payload_too_large",
                f"Each file must be at most {limit} bytes (MAX_FILE_BYTES).",
                {"file": upload.filename, "limit": "MAX_FILE_BYTES", "max": limit},
            )
        name = secure_filename(upload.filename or "") or "upload"
        files.append((name, upload.mimetype or "application/octet-stream", content))
    return files


def _request_digests(body: dict[str, Any], files: list[tuple[str, str, bytes]]) -> list[str]:
    """A creation's digests (:func:`api.idempotency.request_digests`): its body and files."""
    parts = [json.dumps(body, sort_keys=True, default=str).encode()]
    for name, content_type, content in files:
        parts += [name.encode(), content_type.encode(), hashlib.sha256(content).digest()]
    return idempotency.request_digests(parts)


def _send_replay(conn: Conn, key: str) -> Callable[[], dict[str, Any] | None]:
    """Send the lookup of the answer stored for this key (once dropped past its TTL); the
    returned callable reads it."""
    idempotency.send_drop_expired(conn, key)
    cursor = conn.execute(
        "SELECT request_digest, response_status, response_body FROM idempotency_keys"
        " WHERE account_id = %s AND key = %s",
        (account_id(), key),
    )
    return cursor.fetchone


def _replay(row: dict[str, Any] | None, key: str, digests: list[str]):
    """The stored answer for this key, 409 if the key was used for another body, else None."""
    if row is None:
        return None
    if row["request_digest"] not in digests or "sealed" in row["response_body"]:
        raise idempotency.conflict(key)  # another body, or another call's key
    idempotency.mark_replayed(**_created_ids(row["response_body"]))
    return row["response_body"], row["response_status"]


def _created_ids(answer: dict[str, Any]) -> dict[str, Any]:
    """What the audit entry and the log line name: the created task, or a batch and its tasks."""
    if "id" in answer:
        return {"task_id": answer["id"]}
    return {"batch_id": answer["batch_id"], "task_ids": _task_ids(answer)}


def _task_ids(answer: dict[str, Any]) -> list[int]:
    """The tasks a creation's answer holds: one task, or a batch's ``{"data": [tasks]}``."""
    return [answer["id"]] if "id" in answer else [task["id"] for task in answer["data"]]


def _unknown_type(conn: Conn) -> ValidationFailed:
    usable = ", ".join((*TASK_TYPES, *sop_store.custom_types(conn, account_id())))
    return ValidationFailed(
        "The request is not a valid task.",
        {"type": [f"Unknown task type; use one of: {usable}."]},
    )


class Checked(NamedTuple):
    """What a creation is validated against, as read for one account and type."""

    sop: sop_store.StoredSop  # the active SOP
    custom_type: bool  # the type is one of the account's own


# The last Checked read for each (account, type), in this process. The next creation of the
# type is validated against it without reading anything, and its INSERT checks in the same
# statement that it still holds (shared.tasks.create_task): a creation then costs one round trip.
_LAST_CHECKED: dict[tuple[int, str], Checked] = {}
_LAST_CHECKED_MAX = 10_000  # (account, type) pairs; past that it starts again empty


def _read_checks(conn: Conn, task_types: Collection[str], key: str | None, digests: list[str]):
    """What to validate each type against, read in one round trip (the stored answer for an
    Idempotency-Key, whether each type is the account's own, its active SOP, the portals with
    logins): a :class:`Checked` per type, or the 422 that any task of the type gets (an unknown
    type, a portal without a login). For a key already used, the answer stored with it instead.

    The transaction begun here is left open for :func:`_store` to finish; a refusal is rolled
    back (a built-in SOP stored on its first use included).
    """
    account = account_id()
    with conn.pipeline():
        conn.execute("BEGIN")
        stored_answer = _send_replay(conn, key) if key else None
        sent = {
            task_type: (
                None if task_type in TASK_TYPES
                else sop_store.send_is_custom_type(conn, account, task_type),
                sop_store.send_active_sop(conn, account, task_type),
            )
            for task_type in task_types
        }  # fmt: skip
        logins = send_credential_portals(conn, account)
    if key and stored_answer and (replay := _replay(stored_answer(), key, digests)):
        return replay
    portals = logins()
    checks: dict[str, Checked | ApiError] = {}
    for task_type, (custom, active_sop) in sent.items():
        if custom is not None and not custom():
            checks[task_type] = _unknown_type(conn)
            continue
        try:
            stored = active_sop()
        except StoredSopRefused as refused:
            checks[task_type] = SopRefused(refused, "type", "send the task again")
            continue
        if stored.sop.portal not in portals:
            checks[task_type] = _credentials_missing(stored.sop.portal)
            continue
        checked = checks[task_type] = Checked(stored, custom is not None)
        if len(_LAST_CHECKED) >= _LAST_CHECKED_MAX:
            _LAST_CHECKED.clear()
        _LAST_CHECKED[account, task_type] = checked
    return checks


def _validated(checked: Checked, body: dict, files: list[tuple[str, str, bytes]]) -> NewTask:
    """What to store: the request validated against the SOP (422 if bad, 413 if too big)."""
    stored, task_type, raw = checked.sop, body["type"], body.get("data")
    settings = runtime().settings
    try:
        parsed = parse_task_data(
            raw, max_bytes=settings.max_data_bytes, max_depth=settings.max_data_depth
        )
    except DataLimitExceeded as err:
        raise LimitExceeded(413 if err.limit == "MAX_DATA_BYTES" else 422, err.limit, err.max,
                            f"The task data is too big: {err}.") from err  # fmt: skip
    except InputError as err:
        raise ValidationFailed("The data could not be read.", {"data": str(err)}) from err
    inputs, problems = stored.sop.validate_inputs(parsed)
    if problems:
        raise ValidationFailed(
            f"The data is missing or has malformed fields for {task_type}.", problems
        )
    # Sensitive inputs are kept only encrypted; `data` and `inputs` show them as ***.
    plain, secret = stored.sop.split_inputs(inputs)
    return NewTask(
        account_id=account_id(),
        task_type=task_type,
        title=stored.sop.title,
        instructions=fill_instructions(stored.instructions, plain),
        sop_id=stored.id,
        sop_version=stored.version,
        sop_builtin=stored.builtin,
        sop_digest=stored.digest,
        custom_type=checked.custom_type,
        portal=stored.sop.portal,
        data=task_queries.stored_data(raw, stored.sop.sensitive_keys(), list(secret.values())),
        inputs=plain,
        secret_inputs=encrypt_json(runtime().fernet, secret) if secret else None,
        files=files,
    )


def _from_last_checks(body: dict, files: list[tuple[str, str, bytes]]) -> NewTask | None:
    """The task validated against what the type's last creation read, or None: nothing was
    read yet, or the request fails against it (the SOP may have changed since: the refusal
    must come from what the database holds now)."""
    checked = _LAST_CHECKED.get((account_id(), body["type"]))
    if checked is None:
        return None
    try:
        return _validated(checked, body, files)
    except ApiError:
        return None


def _credentials_missing(portal: str) -> ApiError:
    """A task that could only fail later at sign-in: its portal has no login."""
    how = f"add them with PUT /credentials/{portal} (or `understudy credentials set {portal}`)"
    return ApiError(
        422,
        "credentials_missing",
        f"No credentials are stored for portal '{portal}': {how}.",
        [{"field": "type", "message": f"portal '{portal}' has no credentials: {how}"}],
    )


def _store(
    conn: Conn,
    news: list[NewTask],
    key: str | None,
    digest: str,
    *,
    began: bool,
    batch: bool = False,
    entry: dict[str, Any] | None = None,
    retry_of: int | None = None,
) -> dict[str, Any]:
    """The durable part of a creation, in one round trip (two with an Idempotency-Key); the
    answer: the created task, or for a ``batch`` ``{"batch_id": ..., "data": [the tasks]}``.

    Usually one statement, :func:`shared.tasks.create_task`: the task and its files, with the
    account's next task number, committed without waiting for the disk (the account row is
    locked only while the INSERT runs, never during a disk flush, so one account's concurrent
    creates do not queue behind each other's flushes), then the call's audit entry, committed
    durably: PostgreSQL flushes the WAL in order, so that commit makes the task durable too, and
    the client's 200 follows a durable commit of both.

    A batch, a retry (``retry_of``, linked in the same transaction), a creation with files
    (counted against the account's ``MAX_STORED_FILE_BYTES`` first), with an Idempotency-Key,
    or one for which :func:`_read_checks` began a transaction (``began``) runs the same INSERTs
    in a pipeline of our own: the idempotency record (the answer) commits with the tasks, then
    the audit entry commits durably. (A call
    the audit log does not record goes this way too; its tasks' commit is the durable one.)
    Either way the audit entry's detail names what was created (``task_id``, or ``batch_id``
    and ``task_ids``).

    An error in the tasks' transaction (an INSERT's own checks failing included,
    :data:`shared.tasks.CHECKS_CHANGED`, or its count of the account's unfinished tasks,
    :data:`shared.tasks.QUEUE_FULL`) stores nothing, the audit entry included.

    The audit entry is the API call's own, or ``entry`` (the console's "New tasks" page, whose
    requests are no API calls, passes one naming the person).
    """
    entry = entry or api_call_entry(200)
    if (
        not batch and key is None and not began and entry is not None and retry_of is None
        and not news[0].files
    ):  # fmt: skip
        answer = task_json(
            task_queries.create_task(conn, news[0], entry, runtime().settings.max_queued_tasks)
        )
    else:
        answer = _store_in_pipeline(
            conn, news, key, digest, began=began, entry=entry, batch=batch, retry_of=retry_of
        )
    if entry is not None:
        recorded_by_handler()
    for new in news:
        metrics.TASKS_CREATED.labels(metrics.type_label(new.task_type)).inc()
    # The request's own line (api.request_log) says it: POST /tasks 200 with these fields.
    logs.bind(**_created_ids(answer), task_type=None if batch else news[0].task_type)
    return answer


def _store_in_pipeline(
    conn: Conn,
    news: list[NewTask],
    key: str | None,
    digest: str,
    *,
    began: bool,
    entry: dict | None,
    batch: bool,
    retry_of: int | None,
) -> dict[str, Any]:
    """:func:`_store` for a batch, a retry, with an Idempotency-Key or inside the transaction
    the reads began.

    Two transactions sent on a connection outside psycopg's transaction handling: the tasks with
    their files, a batch's row and members (:mod:`shared.batches`) and the idempotency record
    (begun here unless ``began``), committed without waiting for the disk; then the audit
    entry, naming the tasks, committed durably (when the call records none, the tasks' commit
    is the durable one). The server ignores the rest of a pipeline after an error, so a failed
    first transaction skips the second.

    Tasks with files add their bytes to the account's stored files first, and hold that count's
    row until the commit (one round trip more): over ``MAX_STORED_FILE_BYTES``, the 409
    ``limit_exceeded`` is raised and nothing is stored.
    """
    file_bytes = sum(len(content) for new in news for _, _, content in new.files)
    with conn.pipeline():
        if not began:
            conn.execute("BEGIN")
            if key:
                idempotency.send_drop_expired(conn, key)  # a key past its TTL is free again
        if file_bytes:
            limit = runtime().settings.max_stored_file_bytes
            with within_quota():
                quotas.take_file_bytes(conn, news[0].account_id, file_bytes, limit)
        if entry is not None:
            relax_commit(conn)
        group = batches.send_new_batch(conn, news[0].account_id, len(news)) if batch else None
        rows = task_queries.insert_tasks(conn, news, runtime().settings.max_queued_tasks)
        # The created tasks, read here (a round trip) when the batch's members, the retry's
        # link, the key's stored answer or the audit entry need them.
        needed = key or entry is not None or group or retry_of is not None
        answer = _answer(rows, group) if needed else None
        if group is not None:
            assert answer is not None
            batches.send_members(conn, answer["batch_id"], _task_ids(answer))
        if retry_of is not None:
            assert answer is not None
            retries.send_link(conn, answer["id"], retry_of)
            answer["retry_of"] = retry_of
        if key:
            conn.execute(
                "INSERT INTO idempotency_keys"
                " (account_id, key, request_digest, response_status, response_body)"
                " VALUES (%s, %s, %s, 200, %s)",
                (news[0].account_id, key, digest, Jsonb(answer)),
            )
        conn.execute("COMMIT")
        if entry is not None:
            # Outside BEGIN and COMMIT: the server commits it at the pipeline's closing sync.
            assert answer is not None
            detail = {**(entry.get("detail") or {}), **_created_ids(answer)}
            audit.record(conn, **{**entry, "detail": detail})
    return answer or _answer(rows, group)


def _answer(
    rows: Callable[[], list[dict[str, Any]]], group: Callable[[], dict[str, Any]] | None
) -> dict[str, Any]:
    """The created task, or for a batch ``{"batch_id": ..., "data": [the created tasks]}``."""
    tasks = [task_json(row) for row in rows()]
    if group is None:
        return tasks[0]
    batch_id = group()["id"]
    return {"batch_id": batch_id, "data": [{**task, "batch_id": batch_id} for task in tasks]}


def enqueue(conn: Conn, task_ids: list[int]) -> None:
    """Send the created tasks' messages, best effort: the tasks are committed already.

    Run through :func:`after_commit`. If the queue is unreachable the tasks go back to
    ``pending`` for the scheduler's next tick; if anything else fails (that write included), the
    scheduler treats the messages as lost and sends them after ``PENDING_REQUEUE_AFTER_S``.
    """
    try:
        send_run_tasks(runtime().celery, task_ids)
    except (kombu.exceptions.OperationalError, redis.RedisError, OSError):
        log.warning("tasks %s stay pending: the queue is unreachable", task_ids)
        with conn.transaction():
            task_queries.undo_dispatch(conn, task_ids)


def after_commit(task_ids: list[int], action: Callable[[], None]) -> None:
    """Run what follows committed tasks, best effort: the tasks exist, so the client gets its
    200 whatever fails here (the queue, the database); the scheduler re-sends a task nobody
    claimed, so a failure costs a delay, never a task, and never a retry that duplicates one.
    """
    try:
        action()
    except Exception:  # any failure at all: answering 500 now would invite a duplicate
        log.warning(
            "tasks %s: after-commit work failed; the scheduler repairs it", task_ids, exc_info=True
        )


@bp.post("/tasks")
def create_task():
    """Validate, store durably, then send the message.

    Validated against what the type's last creation in this process read, the task is stored in
    one round trip to the database (two with an Idempotency-Key) and one LPUSH, after the API
    key's lookup; the INSERT checks that what it was validated against still holds. Else, or
    when that check fails, what to validate against is read first: one round trip more.
    """
    body, uploads = _read_body()
    body = {**body, **validated(_TASK_SCHEMA, body, "task")}
    files = _read_files(uploads)
    key = idempotency.request_key()
    digests = _request_digests(body, files)
    last_checked = _from_last_checks(body, files)

    def create(conn: Conn, attempt: int):
        new = last_checked if attempt == 0 else None
        if new is not None:
            return _store(conn, [new], key, digests[0], began=False)
        checks = _read_checks(conn, [body["type"]], key, digests)
        if not isinstance(checks, dict):
            return checks  # the answer stored with the Idempotency-Key
        new = _validated(_usable(checks[body["type"]]), body, files)
        return _store(conn, [new], key, digests[0], began=True)

    answer, status = _create(create, [body["type"]], key, digests)
    return jsonify(answer), status


class TaskBatchSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    # Each task is loaded on its own (batch_items), so that one malformed task is listed with
    # every other task's problems rather than hiding them.
    tasks = fields.List(fields.Raw(), required=True, validate=validate.Length(min=1))


class Malformed(NamedTuple):
    """A batch's task that does not have a task's shape: what was sent, and its problems
    (each naming the task, as a task's problems against its SOP do)."""

    sent: Any
    problems: list[dict[str, Any]]


_BATCH_SCHEMA = TaskBatchSchema()


@bp.post("/tasks/batch")
def create_tasks():
    """Create up to ``MAX_BATCH_TASKS`` tasks in one call, all or none.

    Every task is validated as ``POST /tasks`` validates one; if any fails, the 422 lists every
    problem of every task (``tasks.3.member_id``) and nothing is stored. Else the tasks are
    stored in one transaction, in the order sent (their task numbers follow it), with one audit
    entry naming them all, and their messages go out in one LPUSH. One round trip to the
    database reads what every type is validated against, one stores them all.
    """
    answer, status = create_batch(batch_items(json_body()), idempotency.request_key())
    return jsonify(answer), status


def create_batch(
    items: list[dict[str, Any]], key: str | None, entry: dict[str, Any] | None = None
) -> tuple[dict[str, Any], int]:
    """Create the caller's batch of tasks (:func:`batch_items`), all or none: the answer and
    its status, or the refusal raised.

    ``POST /tasks/batch`` and the console's "New tasks" page both create batches here; the
    console passes its own audit ``entry`` (the arguments of :func:`shared.audit.record`),
    which commits with the tasks as an API call's does.
    """
    sent = [item.sent if isinstance(item, Malformed) else item for item in items]
    digests = _request_digests({"tasks": sent}, [])
    types = list(dict.fromkeys(item["type"] for item in items if not isinstance(item, Malformed)))

    def create(conn: Conn, _attempt: int):
        checks = _read_checks(conn, types, key, digests)
        if not isinstance(checks, dict):
            return checks  # the answer stored with the Idempotency-Key
        news, problems = [], []
        for index, item in enumerate(items):
            if isinstance(item, Malformed):
                problems += item.problems
                continue
            try:
                news.append(_validated(_usable(checks[item["type"]]), item, []))
            except LimitExceeded as err:  # the status POST /tasks gives it, naming the task
                err.details = {**err.details, "task": index}
                raise
            except ApiError as err:  # a 422: listed with every other task's
                problems += [_in_batch(index, err.code, p) for p in field_errors(err.details)]
        if problems:
            bad = len({problem["task"] for problem in problems})
            raise ValidationFailed(
                f"{bad} of the {len(items)} tasks are not valid; none was created.", problems
            )
        return _store(conn, news, key, digests[0], began=True, batch=True, entry=entry)

    return _create(create, types, key, digests, len(items))


def batch_items(body: dict[str, Any]) -> list[dict[str, Any] | Malformed]:
    """The tasks of a batch ``{"tasks": [{"type", "data"}, ...]}``, each loaded as ``POST
    /tasks`` loads one: 413 for more than ``MAX_BATCH_TASKS`` (before any is read), 422 for
    a body without a list of tasks. A task that does not load is kept as :class:`Malformed`,
    so that :func:`create_batch` lists its problems (``tasks.3.data``) with every other task's.
    """
    limit = runtime().settings.max_batch_tasks
    if isinstance(body.get("tasks"), list) and len(body["tasks"]) > limit:
        raise LimitExceeded(
            413, "MAX_BATCH_TASKS", limit,
            f"At most {limit} tasks may be created in one batch (MAX_BATCH_TASKS).",
        )  # fmt: skip
    items: list[dict[str, Any] | Malformed] = []
    for index, task in enumerate(validated(_BATCH_SCHEMA, body, "batch of tasks")["tasks"]):
        try:
            if not isinstance(task, dict):
                raise ValidationError("must be a task: an object with its type and data")
            items.append(_TASK_SCHEMA.load(task))
        except ValidationError as err:
            problems = [_in_batch(index, "validation_failed", problem)
                        for problem in field_errors(err.messages)]  # fmt: skip
            items.append(Malformed(task, problems))
    return items


def _in_batch(index: int, code: str, problem: dict[str, Any]) -> dict[str, Any]:
    """A problem of the batch's task ``index``: its field as ``tasks.3.member_id``, and the
    error code the task alone would get (``validation_failed``, ``credentials_missing``)."""
    inner = problem.get("field")
    field = f"tasks.{index}.{inner}" if inner else f"tasks.{index}"
    return {**problem, "field": field, "task": index, "code": code}


@bp.get("/batches/<int:batch_id>")
def read_batch(batch_id: int):
    """A batch: its tasks in order, how many are in each status, and whether all have ended."""
    with runtime().pool.connection() as conn:
        found = batches.get_batch(conn, account_id(), batch_id)
    if found is None:
        raise NotFound("batch")
    return jsonify(found)


@bp.post("/tasks/<int:task_id>/retry")
def retry_task(task_id: int):
    """Send an ended task again as a new task; the new task (its ``retry_of`` names this one)."""
    answer, status = retry(task_id, idempotency.request_key())
    return jsonify(answer), status


def retry(
    task_id: int, key: str | None, entry: dict[str, Any] | None = None
) -> tuple[dict[str, Any], int]:
    """Create the task that sends the account's task ``task_id`` again (:mod:`shared.retries`):
    an ordinary creation, validated against today's SOP, linked to the task it retries. For the
    API's handler and the console's "Send again", which passes its own audit ``entry``."""
    with runtime().pool.connection() as conn:
        try:
            again = retries.retry_request(conn, runtime().fernet, task_id, account_id())
        except LookupError:
            raise NotFound("task") from None
        except retries.NotRetryable as err:
            raise ApiError(409, err.code, err.message, err.details) from err
    body = {"type": again.task_type, "data": again.data}
    digests = _request_digests({**body, "retry_of": task_id}, again.files)
    describe_call(retry_of=task_id)

    def create(conn: Conn, _attempt: int):
        checks = _read_checks(conn, [again.task_type], key, digests)
        if not isinstance(checks, dict):
            return checks  # the answer stored with the Idempotency-Key
        new = _validated(_usable(checks[again.task_type]), body, again.files)
        return _store(conn, [new], key, digests[0], began=True, entry=entry, retry_of=task_id)

    return _create(create, [again.task_type], key, digests)


def _usable(checked: Checked | ApiError) -> Checked:
    """What :func:`_read_checks` gave a type, or the refusal that every task of it gets."""
    if isinstance(checked, ApiError):
        raise checked
    return checked


def _create(
    create: Callable[[Conn, int], Any],
    types: list[str],
    key: str | None,
    digests: list[str],
    count: int = 1,
) -> tuple[dict[str, Any], int]:
    """Run ``create`` (given a connection and the attempt's number), send the messages of what
    it stores (``count`` tasks), and give the answer and its status.

    The connection runs outside psycopg's transaction handling (autocommit): the reads are one
    pipeline, and :func:`_store` sends its own BEGIN and COMMIT statements. A request with the
    same Idempotency-Key that committed first is answered as it was; a change to what the tasks
    were validated against, between the reads and the INSERT, sends them round again. Tasks
    that would put the account over ``MAX_QUEUED_TASKS`` are a 409 ``limit_exceeded``.
    """
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            with runtime().pool.connection() as conn, outside_transaction(conn):
                answer = create(conn, attempt)
                if not isinstance(answer, dict):
                    return answer  # the answer stored with the Idempotency-Key
                ids = _task_ids(answer)
                after_commit(ids, functools.partial(enqueue, conn, ids))
            return answer, 200
        except psycopg.errors.UniqueViolation:
            if not key:
                raise
            # A request with the same Idempotency-Key committed first; answer as it did.
            with runtime().pool.connection() as conn:
                return _replay(_send_replay(conn, key)(), key, digests)
        except psycopg.Error as err:
            if task_queries.queue_full(err):
                # A creation validated against what it read before stores without reading its
                # key's answer first: a key used already is answered as it was, full or not.
                if key:
                    with runtime().pool.connection() as conn:
                        if replay := _replay(_send_replay(conn, key)(), key, digests):
                            return replay
                raise _queue_full(count) from err
            if not task_queries.checks_changed(err):
                raise
            # An SOP, a type or a portal's login changed since it was read: read again.
            for task_type in types:
                _LAST_CHECKED.pop((account_id(), task_type), None)
    raise ApiError(
        409,
        "changed_meanwhile",
        "The task's SOP, type or portal login kept changing while it was created; send it again.",
    )


_CREATE_ATTEMPTS = 3  # a change between a creation's reads and its INSERT is already rare


def _queue_full(count: int) -> LimitExceeded:
    """The 409 of ``count`` tasks that would put the account over ``MAX_QUEUED_TASKS``."""
    limit = runtime().settings.max_queued_tasks
    these = "this task" if count == 1 else f"these {count} tasks"
    return LimitExceeded(
        409, "MAX_QUEUED_TASKS", limit,
        f"The account may have {limit} unfinished tasks (MAX_QUEUED_TASKS) and {these} would"
        " go over it; none was created: send again once some have ended.",
    )  # fmt: skip


@bp.get("/tasks/<int:task_id>")
def read_task(task_id: int):
    with runtime().pool.connection() as conn:
        row = task_queries.get_task(conn, task_id, account_id())
    if row is None:
        raise NotFound("task")
    return jsonify(task_json(row))


# A refused filter names at most this many of its unknown values, and lists the values it takes
# only when they are this few: the account's types, removed ones included, have no bound (a
# removed type does not count against MAX_CUSTOM_TYPES), and a detail per unknown value that
# listed every one of them made a 3 kB query answer tens of megabytes.
_UNKNOWN_SHOWN = 20
_ALLOWED_SHOWN = 50


def _filter(name: str, allowed: tuple[str, ...] | list[str]) -> list[str]:
    values = [v for raw in request.args.getlist(name) for v in raw.split(",") if v]
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        named = ", ".join(repr(v[:64]) for v in unknown[:_UNKNOWN_SHOWN])
        more = len(unknown) - _UNKNOWN_SHOWN
        if more > 0:
            named += f" and {more} more"
        if len(allowed) <= _ALLOWED_SHOWN:
            use = f"use one of: {', '.join(allowed)}"
        else:
            use = "use one of the account's task types (GET /task-types) or a removed one's name"
        raise ValidationFailed(
            f"Unknown {name} filter value.",
            [{"field": name, "message": f"unknown value {named}; {use}"}],
        )
    return values


@bp.get("/tasks")
def list_tasks():
    settings = runtime().settings
    limit = page_limit(settings.page_size_default, settings.page_size_max)
    with runtime().pool.connection() as conn:
        rows = task_queries.list_tasks(
            conn,
            account_id(),
            before_id=decode_cursor(query_value("cursor")),
            limit=limit + 1,
            statuses=_filter("status", [s.value for s in TaskStatus]),
            # Also the account's removed types: their tasks stay listed.
            types=_filter(
                "type", [*TASK_TYPES, *sop_store.custom_types(conn, account_id(), removed=True)]
            ),
            batch_id=_batch_filter(),
            created_since=_time_filter("created_since"),
            created_before=_time_filter("created_before"),
        )
    return jsonify(page([task_json(r) for r in rows], rows, limit))


def _time_filter(name: str) -> datetime | None:
    """``?created_since=`` (from that time on) or ``?created_before=`` (before it): an ISO 8601
    time with its offset (``2026-12-01T08:00:00Z``), or a date, read as its start in UTC."""
    raw = query_value(name)
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(raw.upper())  # RFC 3339 allows "t" and "z"
    except ValueError:
        when = None
    if when is not None and len(raw) == 10:  # a date alone: its first instant, in UTC
        when = when.replace(tzinfo=UTC)
    if when is None or when.tzinfo is None:
        raise ValidationFailed(
            f"Unknown {name} filter value.",
            [{"field": name, "message": f"{raw[:64]!r} is not a time with its offset"
              " (2026-12-01T08:00:00Z) or a date (2026-12-01)"}],
        )  # fmt: skip
    return when


def _batch_filter() -> int | None:
    """``?batch=7``: one batch's tasks (another account's batch lists none)."""
    raw = query_value("batch")
    if raw is None:
        return None
    batch = whole_number(raw)
    if batch is None:
        raise ValidationFailed(
            "Unknown batch filter value.",
            [{"field": "batch", "message": f"{raw!r} is not a batch id (a whole number)"}],
        )
    return batch


@bp.post("/tasks/<int:task_id>/cancel")
def cancel_task(task_id: int):
    """Cancel a task. A queued one ends at once; a running one stops at its next step."""

    def cancel(conn: Conn) -> idempotency.Carried:
        try:
            found = task_queries.cancel_task(conn, account_id=account_id(), task_id=task_id)
        except task_queries.AlreadyFinished as err:
            raise ApiError(409, "task_finished", str(err), {"status": err.status}) from err
        if not found:
            raise NotFound("task")
        task = _task_now(conn, task_id)
        return task, 202 if task["status"] not in FINAL_STATUSES else 200

    return idempotency.respond_once(cancel)


class InputSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    code = fields.String(required=True, validate=validate.Length(min=1, max=64))


@bp.post("/tasks/<int:task_id>/input")
def give_input(task_id: int):
    """Supply what a waiting task asked for (a one-time code); the agent resumes with it."""
    body, _files = _read_body()
    value = validated(InputSchema(), body, "input")

    def give(conn: Conn) -> idempotency.Carried:
        try:
            found = task_queries.give_input(
                conn, runtime().fernet, account_id=account_id(), task_id=task_id,
                code=value["code"],
            )  # fmt: skip
        except task_queries.NotWaiting as err:  # or a code sent before, not read yet
            raise ApiError(409, err.code, str(err), {"status": err.status}) from err
        if not found:
            raise NotFound("task")
        return _task_now(conn, task_id), 202

    return idempotency.respond_once(give)


def _task_now(conn: Conn, task_id: int) -> dict[str, Any]:
    """The task object as this request just left it (NotFound if it is gone since)."""
    row = task_queries.get_task(conn, task_id)
    if row is None:
        raise NotFound("task")
    return task_json(row)


class ReviewSchema(Schema):
    # Unknown fields are refused: a misspelt "decison" must not be read as a missing one.
    decision = fields.String(required=True, validate=validate.OneOf(["approve", "reject"]))
    note = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=review.MAX_NOTE_CHARS)
    )
    reviewer = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1, max=review.MAX_REVIEWER_CHARS - 40),
    )


def _reviewer(named: str | None) -> str:
    """Who decided: the API key's visible prefix, after the name the caller gives, if any."""
    key = f"API key {key_prefix() or 'unknown'}"
    return f"{named.strip()} ({key})" if named and named.strip() else key


@bp.post("/tasks/<int:task_id>/review")
def review_task(task_id: int):
    """Approve or reject a task that is ``pending_review``. Approved, it resumes and submits."""
    body = validated(ReviewSchema(), json_body(), "review")
    approved = body["decision"] == "approve"
    rt = runtime()

    def decide(conn: Conn) -> idempotency.Carried:
        try:
            row = review.decide(
                conn,
                account_id=account_id(),
                task_id=task_id,
                approved=approved,
                note=body["note"],
                reviewer=_reviewer(body["reviewer"]),
            )
        except review.TaskNotFound:
            raise NotFound("task") from None
        except review.NotReviewable as err:
            raise ApiError(
                409,
                "not_pending_review",
                f"The task is {err.status}, not pending review.",
                {"status": err.status},
            ) from None
        return task_json(row), 200

    # An approved task's message goes out after the commit (not again for a replay).
    send = functools.partial(task_queries.send_now, rt, task_id)
    return idempotency.respond_once(
        decide, after=functools.partial(after_commit, [task_id], send) if approved else None
    )
