"""The task aggregate: statuses, the wire format, and its named queries."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import kombu.exceptions
import psycopg
import redis
from cryptography.fernet import MultiFernet
from psycopg.types.json import Jsonb

from shared import metrics
from shared.celery import send_run_task
from shared.crypto import encrypt_json
from shared.db import Conn, MissingRow, fetch_one, hold_lock
from shared.inputs import mask_task_data
from shared.redaction import Redactor
from shared.sop.profile import BUILTIN_PORTALS

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = logging.getLogger(__name__)


class TaskStatus(StrEnum):
    PENDING = "pending"
    DISPATCHING = "dispatching"
    RUNNING = "running"
    WAITING_FOR_INPUT = "waiting_for_input"
    WAITING_FOR_SESSION = "waiting_for_session"
    WAITING_FOR_PORTAL = "waiting_for_portal"
    PENDING_REVIEW = "pending_review"
    COMPLETED = "completed"
    COMPLETED_WITH_ISSUES = "completed_with_issues"
    FAILED = "failed"
    CANCELED = "canceled"


# The notes of a task that ended as its client's cancel asked.
CANCELED_NOTE = "Canceled at the client's request."


FINAL_STATUSES = frozenset(
    {
        TaskStatus.COMPLETED,
        TaskStatus.COMPLETED_WITH_ISSUES,
        TaskStatus.FAILED,
        TaskStatus.CANCELED,
    }
)
CLAIMABLE_STATUSES = (TaskStatus.PENDING, TaskStatus.DISPATCHING)
# The statuses of the `tasks_unfinished` index, which /metrics counts.
UNFINISHED_STATUSES = (
    TaskStatus.PENDING,
    TaskStatus.DISPATCHING,
    TaskStatus.RUNNING,
    TaskStatus.WAITING_FOR_INPUT,
    TaskStatus.WAITING_FOR_SESSION,
    TaskStatus.WAITING_FOR_PORTAL,
)

TASK_FINISHED = "task_finished"
# Opt-in events (an endpoint receives them only if its filter_types names them): a task that
# waits for a person.
TASK_WAITING_FOR_INPUT = "task.waiting_for_input"
TASK_PENDING_REVIEW = "task.pending_review"
TASK_WAITING_FOR_PORTAL = "task.waiting_for_portal"
BATCH_FINISHED = "batch.finished"


class ReviewDecision(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"  # nobody decided before the deadline (shared.review.expire_due)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and a Z, as the reference API writes times."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


_TASK_COLUMNS = """
    t.id, t.account_id, t.task_number, t.type, t.status, t.handler, t.title, t.instructions,
    t.data, t.notes, t.result, t.trajectory_id, t.attempts, t.sop_id, s.version AS sop_version,
    s.account_id IS NULL AS sop_builtin, t.created_at, t.updated_at, t.started_at,
    t.completed_at, t.failed_at, t.canceled_at, t.input_requested_at, t.input_expires_at,
    t.review_step, t.review_requested_at, t.review_expires_at, t.review_decision, t.reviewed_by,
    t.reviewed_at, t.review_note, t.profile_portal, t.profile_version,
    (SELECT r.retry_of FROM task_retries r WHERE r.task_id = t.id) AS retry_of,
    ARRAY(SELECT r.task_id FROM task_retries r WHERE r.retry_of = t.id ORDER BY r.task_id)
      AS retried_as,
    (SELECT b.batch_id FROM batch_tasks b WHERE b.task_id = t.id) AS batch_id,
    COALESCE((SELECT json_agg(json_build_object('id', f.id, 'filename', f.filename,
                'content_type', f.content_type, 'size', f.size_bytes) ORDER BY f.id)
              FROM task_files f WHERE f.task_id = t.id), '[]'::json) AS files
"""


# Tasks as task_json takes them (``t`` the task, ``s`` its SOP): add the WHERE of your own.
SELECT_TASKS = f"SELECT {_TASK_COLUMNS} FROM tasks t JOIN sops s ON s.id = t.sop_id"


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
        "profile": _profile_json(row),
        "links": {
            "self": f"/tasks/{row['id']}",
            "trajectory": f"/tasks/{row['id']}/trajectory",
            "sop": f"/tasks/{row['id']}/sop",
        },
        "input_request": _input_request_json(row),
        "review": _review_json(row),
        # Sending again (shared.retries): the task this one sends again, and the tasks that
        # send this one again, oldest first.
        "retry_of": row["retry_of"],
        "retried_as": list(row["retried_as"]),
        # The batch that created it (POST /tasks/batch), so that its webhook names the batch.
        "batch_id": row["batch_id"],
    }


def _profile_json(row: dict[str, Any]) -> dict[str, Any] | None:
    """The portal profile the latest run signed in with; null before a run, or for a portal
    without one."""
    if row.get("profile_portal") is None:
        return None
    version = row["profile_version"]
    if version is None and row["profile_portal"] not in BUILTIN_PORTALS:
        # A portal without a profile whose outage the task waited for (shared.outages).
        return None
    return {"portal": row["profile_portal"], "version": version, "builtin": version is None}


def _input_request_json(row: dict[str, Any]) -> dict[str, Any] | None:
    """What a task waiting for input waits for, and until when; null otherwise."""
    if row["status"] != TaskStatus.WAITING_FOR_INPUT:
        return None
    return {
        "kind": "one_time_code",
        "requested_at": iso(row.get("input_requested_at")),
        "expires_at": iso(row.get("input_expires_at")),
        "submit": f"/tasks/{row['id']}/input",
    }


def _review_json(row: dict[str, Any]) -> dict[str, Any] | None:
    """The task's review point and the person's decision; null for a task never paused."""
    if row.get("review_requested_at") is None and row.get("review_decision") is None:
        return None
    return {
        "step": row.get("review_step"),
        "requested_at": iso(row.get("review_requested_at")),
        "expires_at": iso(row.get("review_expires_at")),
        "decision": row.get("review_decision"),
        "reviewer": row.get("reviewed_by"),
        "decided_at": iso(row.get("reviewed_at")),
        "note": row.get("review_note"),
    }


def stored_data(
    raw: str | Mapping[str, Any] | None, hidden_keys: Collection[str], secrets: Collection[str]
) -> str | None:
    """The task's `data` as stored and shown: sensitive inputs as ***, wherever they appear."""
    text = mask_task_data(raw, hidden_keys)
    # The value may also be repeated under another key or inside a note.
    return Redactor(secrets).text(text) if text and secrets else text


@dataclass(frozen=True)
class NewTask:
    """What a creation stores: the validated request and the SOP version it will run."""

    account_id: int
    task_type: str
    title: str
    instructions: str
    sop_id: int
    sop_version: int
    sop_builtin: bool
    sop_digest: str
    custom_type: bool  # one of the account's own task types
    portal: str  # the SOP's portal, which must have a login
    data: str | None
    inputs: dict[str, Any]
    secret_inputs: bytes | None  # the sensitive inputs, encrypted
    files: list[tuple[str, str, bytes]]  # (filename, content type, content)


# The SQLSTATE of the INSERT's checks (migration 0012): what the task was validated against
# changed before it was stored.
CHECKS_CHANGED = "UQ001"


def checks_changed(err: psycopg.Error) -> bool:
    """Whether a creation failed because what it was validated against changed meanwhile."""
    return err.sqlstate == CHECKS_CHANGED


# The SQLSTATE of the INSERT's count (migration 0037): the account has ``MAX_QUEUED_TASKS``
# unfinished tasks, or would have more with this one.
QUEUE_FULL = "UQ002"


def queue_full(err: psycopg.Error) -> bool:
    """Whether a creation failed because the account has as many unfinished tasks as it may."""
    return err.sqlstate == QUEUE_FULL


_INSERT_PARAMETERS = (
    "%(account_id)s, %(type)s, %(title)s, %(instructions)s, %(sop_id)s, %(sop_digest)s,"
    " %(own_sop_id)s, %(custom_type)s, %(portal)s, %(data)s, %(inputs)s, %(secret_inputs)s,"
    " %(names)s, %(types)s, %(contents)s, %(max_unfinished)s"
)


def _insert_arguments(new: NewTask, max_unfinished: int) -> dict[str, Any]:
    """The arguments of the database's ``insert_task`` (migrations 0015, 0037) for this task,
    refused if the account would have more than ``max_unfinished`` unfinished tasks."""
    return {
        "account_id": new.account_id,
        "type": new.task_type,
        "title": new.title,
        "instructions": new.instructions,
        "sop_id": new.sop_id,
        "sop_digest": new.sop_digest,
        "own_sop_id": None if new.sop_builtin else new.sop_id,
        "custom_type": new.custom_type,
        "portal": new.portal,
        "data": new.data,
        "inputs": Jsonb(new.inputs),
        "secret_inputs": new.secret_inputs,
        "names": [name for name, _, _ in new.files],
        "types": [content_type for _, content_type, _ in new.files],
        "contents": [content for _, _, content in new.files],
        "max_unfinished": max_unfinished,
    }


def _created_row(inserted: dict[str, Any] | None, new: NewTask) -> dict[str, Any]:
    """The row :func:`task_json` takes, from what the INSERT returned and what was sent."""
    if inserted is None or inserted["id"] is None:
        raise MissingRow(f"account {new.account_id}")
    return {
        **inserted,
        "status": TaskStatus.PENDING.value,
        "account_id": new.account_id,
        "type": new.task_type,
        "title": new.title,
        "instructions": new.instructions,
        "data": new.data,
        "sop_id": new.sop_id,
        "sop_version": new.sop_version,
        "sop_builtin": new.sop_builtin,
        # A new task sends nothing again yet (a retry's link is written after its INSERT).
        "retry_of": None,
        "retried_as": [],
        "batch_id": None,  # a batch's tasks are given theirs once the batch's row is read
    }


def insert_tasks(
    conn: Conn, news: list[NewTask], max_unfinished: int
) -> Callable[[], list[dict[str, Any]]]:
    """Send the INSERTs of tasks and their files, in order, as one ``executemany`` (the
    statement is prepared once, and each task only sends its arguments), each counting the
    account's next task number; the returned callable reads the rows :func:`task_json` takes.

    Call it in a pipeline inside the caller's transaction: the rows are read after the round trip
    that the caller's next read or sync makes. The account row stays locked until that
    transaction ends: the caller commits it at once. (:func:`create_task` commits it itself.)

    The statement is the database's ``insert_task`` (migration 0015). The task is stored as
    ``dispatching`` because its message is sent as soon as this commits: that saves a second
    write per task. If the send fails, :func:`undo_dispatch` puts it back to ``pending`` for
    the scheduler's next tick; if the process dies in between, the scheduler treats it as a lost
    message (re-sent after ``PENDING_REQUEUE_AFTER_S``). The row returned says ``pending``, the
    status every task is created in and the one the client is answered.

    The statement checks again what the task was validated against (``new.sop_id`` is the
    account's active SOP for the type, the type is defined, the portal has a login) and fails
    with :data:`CHECKS_CHANGED` when any of it changed: the API may validate against what it
    read for an earlier task, and the database has the last word.

    It counts the account's unfinished tasks too (migration 0037: the tasks it created less
    those that ended, kept as the tasks change, never counted row by row) and fails with
    :data:`QUEUE_FULL` if this one would make more than ``max_unfinished`` (``MAX_QUEUED_TASKS``):
    the first task of ``news`` over it fails the caller's transaction, so a batch that does not
    fit stores none. Concurrent creations take the account row in turn, each counting what the
    one before left, so the last place is taken once.
    """
    cursor = conn.cursor()
    cursor.executemany(
        f"SELECT * FROM insert_task({_INSERT_PARAMETERS})",
        [_insert_arguments(new, max_unfinished) for new in news],
        returning=True,
    )

    def rows() -> list[dict[str, Any]]:
        found = []
        for new in news:
            found.append(_created_row(cursor.fetchone(), new))
            cursor.nextset()
        return found

    return rows


def create_task(
    conn: Conn, new: NewTask, audit: Mapping[str, Any], max_unfinished: int
) -> dict[str, Any]:
    """Store a task as :func:`insert_tasks` does, then the call's audit entry (``audit``: the
    arguments of :func:`shared.audit.record`, in the task's account), in one statement
    (``CALL create_task_within``, migrations 0015 and 0037): one round trip; the row
    :func:`task_json` takes.

    Run it outside a transaction (autocommit): the procedure commits the task without waiting
    for the disk, so the account row is never locked during a flush, then commits the audit
    entry durably, which makes the task durable too. Fails, storing nothing, as
    :func:`insert_tasks` does.
    """
    detail = audit.get("detail")
    cursor = conn.execute(
        f"CALL create_task_within({_INSERT_PARAMETERS}, %(actor)s, %(action)s, %(target)s,"
        " %(detail)s)",
        {
            **_insert_arguments(new, max_unfinished),
            "actor": audit["actor"],
            "action": audit["action"],
            "target": audit["target"],
            "detail": Jsonb(detail) if detail is not None else None,
        },
    )
    return _created_row(cursor.fetchone(), new)


def get_task(conn: Conn, task_id: int, account_id: int | None = None) -> dict | None:
    """One task; with ``account_id``, only if it belongs to that account."""
    sql = f"{SELECT_TASKS} WHERE t.id = %s"
    params: list[Any] = [task_id]
    if account_id is not None:
        sql += " AND t.account_id = %s"
        params.append(account_id)
    return conn.execute(sql, params).fetchone()


def list_tasks_query(
    account_id: int,
    *,
    before_id: int | None,
    limit: int,
    statuses: list[str],
    types: list[str],
    created_since: datetime | None = None,
    created_before: datetime | None = None,
    batch_id: int | None = None,
) -> tuple[str, list[Any]]:
    """The SQL and parameters of :func:`list_tasks` (``bench/api.py`` shows their plans).

    With a status filter, each status is its own newest-first range of the index on
    (account_id, status, id), read for at most ``limit`` rows, and the ranges are merged: the
    cost stays that of one page however many tasks the account has, and however rare the
    status. (One ``status = ANY(...)`` would leave the planner a sort or a walk through the
    account's whole history.) A type filter alone does the same with the index on
    (account_id, type, id); with both, the types filter the status ranges.

    Each range is written so that only its index can serve it: ``status >= s AND status <= s``
    ordered by ``status, id DESC``, the index's own order. With ``status = s ORDER BY id DESC``
    the planner may walk the primary key backwards and drop the rows of other statuses, which
    it expects to be few for a common status; but the newest tasks are the ones still running,
    so listing ``completed`` behind a batch of 2,000 newer tasks read and dropped all 2,000.
    """
    if batch_id is not None:
        return _batch_list_query(
            account_id, batch_id, before_id=before_id, limit=limit, statuses=statuses,
            types=types, created_since=created_since, created_before=created_before,
        )  # fmt: skip
    where = ["account_id = %s"]
    params: list[Any] = [account_id]
    if before_id is not None:
        where.append("id < %s")
        params.append(before_id)
    if types and statuses:
        where.append("type = ANY(%s)")
        params.append(types)
    if created_since is not None:
        where.append("created_at >= %s")
        params.append(created_since)
    if created_before is not None:
        where.append("created_at < %s")
        params.append(created_before)
    conditions = " AND ".join(where)
    column, values = ("status", statuses) if statuses else ("type", types)
    if not values:
        sql = f"{SELECT_TASKS} WHERE t.{conditions.replace(' AND ', ' AND t.')}"
        return f"{sql} ORDER BY t.id DESC LIMIT %s", [*params, limit]
    ranges, range_params = [], []
    for value in dict.fromkeys(values):
        ranges.append(
            f"(SELECT id FROM tasks WHERE {conditions} AND {column} >= %s AND {column} <= %s"
            f" ORDER BY {column}, id DESC LIMIT %s)"
        )
        range_params += [*params, value, value, limit]
    ids = f"SELECT id FROM ({' UNION ALL '.join(ranges)}) AS r ORDER BY id DESC LIMIT %s"
    return f"{SELECT_TASKS} WHERE t.id IN ({ids}) ORDER BY t.id DESC", [*range_params, limit]


def _batch_list_query(
    account_id: int,
    batch_id: int,
    *,
    before_id: int | None,
    limit: int,
    statuses: list[str],
    types: list[str],
    created_since: datetime | None,
    created_before: datetime | None,
) -> tuple[str, list[Any]]:
    """:func:`list_tasks_query` within one batch: its members are read by the batch's index
    and filtered, at most ``MAX_BATCH_TASKS`` rows whatever the account's history."""
    where: list[str] = ["m.batch_id = %s", "t.account_id = %s"]
    params: list[Any] = [batch_id, account_id]
    conditions: tuple[tuple[str, Any], ...] = (
        ("t.id < %s", before_id),
        ("t.status = ANY(%s)", statuses or None),
        ("t.type = ANY(%s)", types or None),
        ("t.created_at >= %s", created_since),
        ("t.created_at < %s", created_before),
    )
    for condition, value in conditions:
        if value is not None:
            where.append(condition)
            params.append(value)
    sql = f"{SELECT_TASKS} JOIN batch_tasks m ON m.task_id = t.id WHERE {' AND '.join(where)}"
    return f"{sql} ORDER BY t.id DESC LIMIT %s", [*params, limit]


def list_tasks(
    conn: Conn,
    account_id: int,
    *,
    before_id: int | None,
    limit: int,
    statuses: list[str],
    types: list[str],
    created_since: datetime | None = None,
    created_before: datetime | None = None,
    batch_id: int | None = None,
) -> list[dict]:
    """Newest first, keyset-paginated on id; with ``batch_id``, that batch's tasks only."""
    sql, params = list_tasks_query(
        account_id,
        before_id=before_id,
        limit=limit,
        statuses=statuses,
        types=types,
        created_since=created_since,
        created_before=created_before,
        batch_id=batch_id,
    )
    return conn.execute(sql, params).fetchall()


def send_now(runtime: Runtime, task_id: int) -> None:
    """Send a ``pending`` task's message now, best effort, after the transaction that made it
    pending committed (an approval, a turn given to another account's task).

    If the queue is unreachable the task stays ``pending`` and the scheduler sends it on its
    next tick, so a failure here costs a delay, never the task.
    """
    try:
        send_run_task(runtime.celery, task_id)
    except (kombu.exceptions.OperationalError, redis.RedisError, OSError):
        log.warning("task %s stays pending: the queue is unreachable", task_id)
        return
    try:
        with runtime.pool.connection() as conn:
            mark_dispatched(conn, task_id)
    except psycopg.Error:  # the message is sent; the worker's claim does not need this mark
        log.warning("task %s: could not mark its message sent", task_id, exc_info=True)


def undo_dispatch(conn: Conn, task_ids: list[int]) -> None:
    """Created tasks' messages could not be sent: leave them to the scheduler's next tick."""
    conn.execute(
        "UPDATE tasks SET status = 'pending', enqueued_at = NULL, updated_at = now()"
        " WHERE id = ANY(%s) AND status = 'dispatching'",
        (task_ids,),
    )


def mark_dispatched(conn: Conn, task_id: int) -> None:
    """Record that a message was sent; a task already claimed is left alone."""
    conn.execute(
        "UPDATE tasks SET status = 'dispatching', enqueued_at = now(), updated_at = now()"
        " WHERE id = %s AND status IN ('pending', 'dispatching')",
        (task_id,),
    )


def claim_task(conn: Conn, task_id: int, worker: str, lease_s: float) -> dict | None:
    """Take a pending task for this worker with a lease. None if someone else has it or it ended.

    A second delivery of the same Celery message finds the task running (or final) and gets
    None: that is what makes a duplicate message a no-op.

    Fair share: when the task's account is busier than another account that has one waiting,
    the message is spent on that account's oldest waiting task instead (the least busy
    account's first), and the named task goes back to ``pending`` with no message
    (``yielded``: the caller sends it again, to the back of the queue). So a clinic that sends
    hundreds of checks takes the workers only while nobody else waits, and another clinic's
    task starts at the next free worker instead of after the whole batch. The returned row's
    ``id`` is the task claimed; ``yielded`` is the named task's id when it gave its turn away.

    How busy an account is: its tasks running over its ``share`` (1 unless the operator gave it
    more), so with both waiting an account of share 2 runs two tasks for each one an account of
    share 1 runs. With every share 1 that is the count of tasks running.
    """
    sql, params = claim_task_query(task_id, worker, lease_s)
    return conn.execute(sql, params).fetchone()


def claim_task_query(task_id: int, worker: str, lease_s: float) -> tuple[str, list[Any]]:
    """The SQL and parameters of :func:`claim_task` (a test reads their plan)."""
    sql = """
        WITH RECURSIVE named AS (
            SELECT id, account_id FROM tasks
             WHERE id = %s AND status IN ('pending', 'dispatching')
               AND cancel_requested_at IS NULL
             FOR UPDATE
        ), running AS (
            SELECT account_id, count(*) AS n FROM tasks WHERE status = 'running'
             GROUP BY account_id
        ), mine AS (
            SELECT coalesce((SELECT r.n FROM running r JOIN named USING (account_id)), 0) AS n,
                   coalesce((SELECT a.share FROM accounts a JOIN named ON a.id = named.account_id),
                            1) AS share
        ), waiting (account_id) AS (
            -- The accounts with a task waiting, one probe of tasks_waiting each however long
            -- their backlogs (a skip scan); none looked for unless the named task's account
            -- has a task running, since no account can be less busy than none running.
            (SELECT account_id FROM tasks
              WHERE status IN ('pending', 'dispatching') AND (SELECT n FROM mine) > 0
              ORDER BY account_id LIMIT 1)
            UNION ALL
            SELECT (SELECT t.account_id FROM tasks t
                     WHERE t.status IN ('pending', 'dispatching') AND t.account_id > w.account_id
                     ORDER BY t.account_id LIMIT 1)
              FROM waiting w WHERE w.account_id IS NOT NULL
        ), candidates AS (
            -- Each less busy account's oldest waiting task. Written so that only
            -- tasks_waiting can serve it (shared.tasks.list_tasks_query says why): with
            -- `account_id = ...` the planner walked the primary key through the other accounts'
            -- tasks, a second for 20,000 of them. Less busy: fewer running for its share,
            -- compared as running * the other's share, in integers and so exactly.
            SELECT coalesce(r.n, 0)::float8 / a.share AS busy,
                   (SELECT t.id FROM tasks t
                     WHERE t.account_id >= w.account_id AND t.account_id <= w.account_id
                       AND t.status IN ('pending', 'dispatching')
                       AND t.cancel_requested_at IS NULL
                     ORDER BY t.account_id, t.id LIMIT 1) AS id
              FROM waiting w JOIN accounts a ON a.id = w.account_id
              LEFT JOIN running r ON r.account_id = w.account_id
             WHERE coalesce(r.n, 0) * (SELECT share FROM mine) < (SELECT n FROM mine) * a.share
        ), other AS (
            -- The least busy account's, the oldest first (a division of small integers in
            -- float8 is rounded alike for equal fractions, so equally busy accounts tie and the
            -- older task goes first); if another worker is claiming it right now, the named
            -- task is claimed after all.
            SELECT t.id FROM tasks t
             WHERE t.id = (SELECT id FROM candidates WHERE id IS NOT NULL
                            ORDER BY busy, id LIMIT 1)
               AND t.status IN ('pending', 'dispatching') AND t.cancel_requested_at IS NULL
             FOR UPDATE SKIP LOCKED
        ), yielded AS (
            UPDATE tasks SET status = 'pending', enqueued_at = NULL, updated_at = now()
             WHERE id = (SELECT id FROM named) AND EXISTS (SELECT 1 FROM other)
            RETURNING id
        )
        UPDATE tasks
           SET status = 'running', attempts = attempts + 1, claimed_by = %s,
               lease_expires_at = now() + make_interval(secs => %s),
               started_at = COALESCE(started_at, now()), updated_at = now()
         WHERE id = coalesce((SELECT id FROM other), (SELECT id FROM named))
        RETURNING id, account_id, type, sop_id, inputs, secret_inputs, attempts,
                  irreversible_step, irreversible_at, trajectory_id, review_decision,
                  reviewed_by, review_note,
                  (SELECT tasks.type = ANY(a.review_required_types)
                     FROM accounts a WHERE a.id = tasks.account_id) AS review_required,
                  EXTRACT(EPOCH FROM now() - created_at)::float AS waited_s,
                  (SELECT id FROM yielded) AS yielded
        """
    return sql, [task_id, worker, lease_s]


def extend_lease(conn: Conn, task_id: int, worker: str, lease_s: float) -> dict | None:
    """Heartbeat. None when this worker no longer holds the task (it expired and moved on)."""
    return conn.execute(
        """
        UPDATE tasks SET lease_expires_at = now() + make_interval(secs => %s)
         WHERE id = %s AND claimed_by = %s AND status IN ('running', 'waiting_for_input')
        RETURNING cancel_requested_at
        """,
        (lease_s, task_id, worker),
    ).fetchone()


def cancel_state(conn: Conn, task_id: int, worker: str) -> dict | None:
    """Whether a cancel was asked (``cancel_requested_at``) of a task this worker holds.

    None when it no longer holds it. A read only: the engine asks before every step.
    """
    return conn.execute(
        """
        SELECT cancel_requested_at FROM tasks
         WHERE id = %s AND claimed_by = %s AND status IN ('running', 'waiting_for_input')
        """,
        (task_id, worker),
    ).fetchone()


def await_input(conn: Conn, task_id: int, worker: str, *, expires_at: datetime, note: str) -> bool:
    """The task now waits for a person's input: say so in its notes, with the deadline, and
    write the opt-in ``task.waiting_for_input`` event. False when this worker no longer holds it.
    """
    row = conn.execute(
        """
        UPDATE tasks
           SET status = 'waiting_for_input', notes = %s, input_requested_at = now(),
               input_expires_at = %s, updated_at = now()
         WHERE id = %s AND claimed_by = %s AND status IN ('running', 'waiting_for_input')
        RETURNING account_id
        """,
        (note, expires_at, task_id, worker),
    ).fetchone()
    if row is None:
        return False
    enqueue_event(conn, task_id, row["account_id"], TASK_WAITING_FOR_INPUT)
    return True


def input_received(conn: Conn, task_id: int, worker: str) -> None:
    """Back to running once the input came; the wait's note and deadline are cleared."""
    conn.execute(
        """
        UPDATE tasks
           SET status = 'running', notes = NULL, input_expires_at = NULL, updated_at = now()
         WHERE id = %s AND claimed_by = %s AND status IN ('running', 'waiting_for_input')
        """,
        (task_id, worker),
    )


def await_review(conn: Conn, task_id: int, worker: str, *, step: str, note: str) -> bool:
    """Pause the task at a review point: ``pending_review``, its claim and lease released,
    until a deadline the account's ``review_timeout_hours`` away.

    No worker holds it while it waits, so no lease expires and no browser stays open; the
    person's decision (:func:`record_review`) puts it back in line or ends it, and the
    scheduler ends it at the deadline (:func:`shared.review.expire_due`). Writes the opt-in
    ``task.pending_review`` event. False when this worker no longer holds the task, or when a
    cancel was asked since its last step began: a task the client was told would end canceled
    must not wait for a review (approved, it would be queued with its cancel still asked, and no
    worker would ever take it); the caller ends it canceled instead.
    """
    row = conn.execute(
        """
        UPDATE tasks t
           SET status = 'pending_review', claimed_by = NULL, lease_expires_at = NULL,
               enqueued_at = NULL, review_step = %s, review_requested_at = now(),
               review_expires_at = now() + make_interval(hours => a.review_timeout_hours),
               notes = %s, updated_at = now()
          FROM accounts a
         WHERE t.id = %s AND t.claimed_by = %s AND t.status = 'running' AND a.id = t.account_id
           AND t.cancel_requested_at IS NULL
        RETURNING t.account_id
        """,
        (step, note, task_id, worker),
    ).fetchone()
    if row is None:
        return False
    enqueue_event(conn, task_id, row["account_id"], TASK_PENDING_REVIEW)
    return True


def record_review(
    conn: Conn,
    task_id: int,
    account_id: int,
    decision: ReviewDecision,
    *,
    reviewer: str | None,
    note: str | None,
) -> bool:
    """Record a person's decision on a ``pending_review`` task (or, with no ``reviewer``, that
    its deadline passed). Approved, the task is put back to ``pending`` (sent again by the
    caller after commit, or by the scheduler's next tick); the caller finishes a rejected or
    expired one. False when the task is not pending review.
    """
    row = conn.execute(
        """
        UPDATE tasks
           SET review_decision = %(decision)s, reviewed_by = %(reviewer)s, reviewed_at = now(),
               review_note = %(note)s, updated_at = now(),
               status = CASE WHEN %(decision)s = 'approved' THEN 'pending' ELSE status END,
               notes = CASE WHEN %(decision)s = 'approved' THEN NULL ELSE notes END
         WHERE id = %(id)s AND account_id = %(account_id)s AND status = 'pending_review'
        RETURNING id
        """,
        {
            "decision": str(decision),
            "reviewer": reviewer,
            "note": note,
            "id": task_id,
            "account_id": account_id,
        },
    ).fetchone()
    return row is not None


def enqueue_event(conn: Conn, task_id: int, account_id: int, event: str) -> None:
    """Write an opt-in event about the task (shared.webhooks: only endpoints whose
    ``filter_types`` name it receive it), carrying the task as it is now."""
    from shared.webhooks import enqueue_task_event

    payload = task_json(fetch_one(conn, f"{SELECT_TASKS} WHERE t.id = %s", (task_id,)))
    enqueue_task_event(conn, account_id=account_id, task_id=task_id, event=event, payload=payload)


def record_profile(
    conn: Conn, task_id: int, portal: str, version: int | None, *, worker: str
) -> bool:
    """Note the portal profile this run signs in with (``version`` None: the built-in one), for
    the worker holding the task; False when it no longer does. The row stays locked until the
    transaction ends (:func:`hold_session` relies on it)."""
    row = conn.execute(
        "UPDATE tasks SET profile_portal = %s, profile_version = %s"
        " WHERE id = %s AND claimed_by = %s RETURNING id",
        (portal, version, task_id, worker),
    ).fetchone()
    return row is not None


def lock_portal(conn: Conn, account_id: int, portal: str) -> None:
    """Serialize what decides whether an account's tasks may run on one portal (its sessions,
    its outage: shared.outages) until the transaction ends."""
    hold_lock(conn, "portal", account_id, portal)


def hold_session(
    conn: Conn, claimed: dict, portal: str, max_sessions: int | None, *, worker: str
) -> str | None:
    """Take one of the account's sessions on the portal for the claimed task, recorded (and
    locked) by :func:`record_profile` in the same transaction.

    With ``max_sessions`` None there is no limit. Otherwise the account's tasks on the portal
    that hold a session are counted under :func:`lock_portal`, so two workers never both take
    the last one. Returns None when the task may run (it counts from now on, by its
    ``profile_portal``). When none is left, the task waits (``waiting_for_session``) as it was
    before the claim (its attempt and start undone), with no message, and this returns its
    note: :func:`wake_session_waiters` sends it when a session frees, and the scheduler when
    none of the account's tasks on the portal runs any more (:func:`stranded_sessions`).
    """
    if max_sessions is None:
        return None
    lock_portal(conn, claimed["account_id"], portal)
    running = fetch_one(
        conn,
        """
        SELECT count(*) AS n FROM tasks
         WHERE account_id = %s AND profile_portal = %s AND id <> %s
           AND status IN ('running', 'waiting_for_input')
        """,
        (claimed["account_id"], portal, claimed["id"]),
    )["n"]
    if running < max_sessions:
        return None
    note = (
        f"Waiting for a session on portal '{portal}': its profile allows {max_sessions} per user"
        f" at once (max_sessions), and this account's tasks there hold {running}. It starts when"
        " one of them ends."
    )
    return note if park(conn, claimed["id"], TaskStatus.WAITING_FOR_SESSION, note, worker) else None


def park(conn: Conn, task_id: int, status: TaskStatus, note: str, worker: str) -> bool:
    """Put a task this worker just claimed back to wait in ``status``, with no message, as it
    was before the claim: its attempt and its start undone, the note saying why. False when it
    was canceled since the claim: it runs then, and the run ends it before its first step."""
    row = conn.execute(
        """
        UPDATE tasks
           SET status = %s, claimed_by = NULL, lease_expires_at = NULL, enqueued_at = NULL,
               attempts = attempts - 1, started_at = CASE WHEN attempts > 1 THEN started_at END,
               notes = %s, updated_at = now()
         WHERE id = %s AND claimed_by = %s AND status = 'running'
           AND cancel_requested_at IS NULL
        RETURNING id
        """,
        (str(status), note, task_id, worker),
    ).fetchone()
    return row is not None


def unpark(
    conn: Conn, account_id: int, portal: str, status: TaskStatus, limit: int | None
) -> list[int]:
    """The account's oldest tasks waiting in ``status`` on the portal (at most ``limit``; None:
    all) back in line as ``pending``, their wait's note cleared: :func:`park` undone. The caller
    sends them (:func:`send_now`) after the commit."""
    rows = conn.execute(
        """
        UPDATE tasks t SET status = 'pending', notes = NULL, updated_at = now()
          FROM (SELECT id FROM tasks
                 WHERE account_id = %s AND profile_portal = %s AND status = %s
                 ORDER BY id LIMIT %s) AS waiting
         WHERE t.id = waiting.id
        RETURNING t.id
        """,
        (account_id, portal, str(status), limit),
    ).fetchall()
    return sorted(r["id"] for r in rows)


def wake_session_waiters(
    conn: Conn, account_id: int, portal: str, max_sessions: int | None
) -> list[int]:
    """The account's tasks waiting for a session on the portal that may have one now, oldest
    first, back in line (:func:`unpark`).

    Called when a task that held a session lets it go. With no limit (a profile that dropped
    ``max_sessions``), every waiting task goes.
    """
    lock_portal(conn, account_id, portal)
    free = None
    if max_sessions is not None:
        held = fetch_one(
            conn,
            """
            SELECT count(*) AS n FROM tasks
             WHERE account_id = %s AND profile_portal = %s
               AND status IN ('running', 'waiting_for_input')
            """,
            (account_id, portal),
        )["n"]
        free = max(max_sessions - held, 0)
    return unpark(conn, account_id, portal, TaskStatus.WAITING_FOR_SESSION, free)


def record_irreversible(conn: Conn, task_id: int, step: str, *, worker: str) -> bool:
    """Remember, before acting, that a step changing the payer's records is about to run.

    Only for the worker holding a live lease; False (act on nothing) when it no longer does.
    """
    row = conn.execute(
        """
        UPDATE tasks SET irreversible_step = %s, irreversible_at = now(), updated_at = now()
         WHERE id = %s AND claimed_by = %s AND status IN ('running', 'waiting_for_input')
           AND lease_expires_at > now()
        RETURNING id
        """,
        (step, task_id, worker),
    ).fetchone()
    return row is not None


def finish_task(
    conn: Conn,
    task_id: int,
    status: TaskStatus,
    notes: str,
    *,
    result: dict[str, Any] | None = None,
    worker: str | None = None,
) -> bool:
    """Set a final status and write the ``task_finished`` webhook in the same transaction.

    With ``worker``, only the worker holding the task may finish it, so a worker whose lease
    expired cannot overwrite what its successor did. False when nothing was changed. A task in
    a batch is counted down in it here too (:func:`shared.batches.task_ended`).
    """
    from shared.batches import task_ended
    from shared.webhooks import enqueue_task_finished

    if status not in FINAL_STATUSES:
        raise ValueError(f"{status} is not a final status")
    guard = "claimed_by = %(worker)s AND status IN ('running', 'waiting_for_input')"
    if worker is None:
        guard = "status NOT IN ('completed', 'completed_with_issues', 'failed', 'canceled')"
    row = conn.execute(
        f"""
        UPDATE tasks
           SET status = %(status)s, notes = %(notes)s, result = %(result)s,
               lease_expires_at = NULL, updated_at = now(),
               completed_at = CASE WHEN %(status)s IN ('completed', 'completed_with_issues')
                                   THEN now() END,
               failed_at = CASE WHEN %(status)s = 'failed' THEN now() END,
               canceled_at = CASE WHEN %(status)s = 'canceled' THEN now() END
         WHERE id = %(id)s AND {guard}
        RETURNING id, account_id, type, created_at
        """,
        {
            "status": str(status),
            "notes": notes,
            "result": Jsonb(result) if result is not None else None,
            "id": task_id,
            "worker": worker,
        },
    ).fetchone()
    if row is None:
        return False
    payload = task_json(fetch_one(conn, f"{SELECT_TASKS} WHERE t.id = %s", (task_id,)))
    enqueue_task_finished(conn, account_id=row["account_id"], task_id=task_id, payload=payload)
    task_ended(conn, task_id)
    # Counted here, where every final status is set (worker, scheduler, API), once per task in
    # this process: a transaction whose commit failed after this point is run again from the
    # start (shared.db.in_transaction), and finishes the same task again.
    if _first_finish_here((task_id, row["created_at"])):
        metrics.TASKS_FINISHED.labels(metrics.type_label(row["type"]), str(status)).inc()
    return True


# The tasks this process finished lately, oldest first, by id and creation time (an id alone
# comes back in a database emptied and started again, as the tests do).
_FINISHED_HERE: dict[tuple[int, datetime], None] = {}
_FINISHED_HERE_MAX = 10_000
_FINISHED_HERE_LOCK = threading.Lock()


def _first_finish_here(task: tuple[int, datetime]) -> bool:
    """Whether this process finishes the task for the first time (a task ends only once)."""
    with _FINISHED_HERE_LOCK:
        if task in _FINISHED_HERE:
            return False
        if len(_FINISHED_HERE) >= _FINISHED_HERE_MAX:
            del _FINISHED_HERE[next(iter(_FINISHED_HERE))]
        _FINISHED_HERE[task] = None
        return True


def due_for_requeue(conn: Conn, older_than_s: float, limit: int = 100) -> list[int]:
    """Tasks whose message may be lost: not claimed within ``older_than_s`` of being sent."""
    # MATERIALIZED, so the pick runs once and the limit holds whatever plan the statistics lead
    # to (shared.webhooks claims messages the same way, and says why).
    rows = conn.execute(
        """
        WITH picked AS MATERIALIZED (
            SELECT id FROM tasks
             WHERE status IN ('pending', 'dispatching') AND cancel_requested_at IS NULL
               AND (enqueued_at IS NULL
                    OR enqueued_at < now() - make_interval(secs => %s))
             ORDER BY id LIMIT %s
             FOR UPDATE SKIP LOCKED
        ), sent AS (
            UPDATE tasks t SET status = 'dispatching', enqueued_at = now(), updated_at = now()
              FROM picked WHERE t.id = picked.id
            RETURNING t.id
        )
        SELECT id FROM sent ORDER BY id
        """,
        (older_than_s, limit),
    ).fetchall()
    return [r["id"] for r in rows]


def stranded_sessions(conn: Conn, limit: int = 100) -> list[int]:
    """Tasks waiting for a session that nobody will send: none of their account's tasks on the
    portal runs or is queued any more (the worker that should have woken them died, or the
    scheduler ended the last one). The oldest of each such account and portal goes back in
    line; when it ends, it wakes as many more as the portal allows
    (:func:`wake_session_waiters`)."""
    # The oldest waiter of each account and portal, one index probe each (a skip scan of
    # tasks_session_waiters), however many wait: DISTINCT ON read every waiter each tick.
    rows = conn.execute(
        """
        WITH RECURSIVE oldest AS (
            (SELECT id, account_id, profile_portal FROM tasks
              WHERE status = 'waiting_for_session'
              ORDER BY account_id, profile_portal, id LIMIT 1)
            UNION ALL
            SELECT n.id, n.account_id, n.profile_portal FROM oldest o
             CROSS JOIN LATERAL (
                   SELECT id, account_id, profile_portal FROM tasks
                    WHERE status = 'waiting_for_session'
                      AND (account_id, profile_portal) > (o.account_id, o.profile_portal)
                    ORDER BY account_id, profile_portal, id LIMIT 1) n
        ), stranded AS (
            -- None of the account's tasks on the portal runs, nor was woken and still queued:
            -- subqueries of their own per group (not joins, which the planner may hash over
            -- every queued task), read from the account's status ranges, the running first.
            SELECT o.id FROM oldest o
             WHERE NOT (SELECT EXISTS (
                   SELECT FROM tasks r
                    WHERE r.account_id = o.account_id
                      AND r.status IN ('running', 'waiting_for_input')
                      AND r.profile_portal = o.profile_portal))
               AND NOT (SELECT EXISTS (
                   SELECT FROM tasks q
                    WHERE q.account_id = o.account_id AND q.status IN ('pending', 'dispatching')
                      AND q.profile_portal = o.profile_portal))
             ORDER BY o.id LIMIT %s
        )
        UPDATE tasks t SET status = 'pending', notes = NULL, updated_at = now()
          FROM stranded WHERE t.id = stranded.id AND t.status = 'waiting_for_session'
        RETURNING t.id
        """,
        (limit,),
    ).fetchall()
    return sorted(r["id"] for r in rows)


def expired_leases(conn: Conn, limit: int = 100) -> list[dict]:
    """Running tasks whose worker stopped heartbeating (killed, hung or partitioned)."""
    return conn.execute(
        """
        SELECT id, attempts, irreversible_at, cancel_requested_at FROM tasks
         WHERE status IN ('running', 'waiting_for_input') AND lease_expires_at < now()
         ORDER BY id LIMIT %s
         FOR UPDATE SKIP LOCKED
        """,
        (limit,),
    ).fetchall()


def give_back(conn: Conn, task_id: int, worker: str) -> bool:
    """A task this worker claimed but could not start for a shortage of its own (every name
    lookup thread taken): back in line, its attempt not counted, sent again by the scheduler
    after ``PENDING_REQUEUE_AFTER_S``. False if the worker no longer holds it, or if a cancel
    was asked meanwhile: back in line with its cancel asked, no worker would take it nor the
    scheduler send it again, and it would stay ``pending`` for good (the caller ends it)."""
    return (
        conn.execute(
            "UPDATE tasks SET status = 'pending', claimed_by = NULL, lease_expires_at = NULL,"
            " attempts = attempts - 1,"
            " started_at = CASE WHEN attempts = 1 THEN NULL ELSE started_at END,"
            " enqueued_at = now(), updated_at = now()"
            " WHERE id = %s AND claimed_by = %s AND status = 'running'"
            " AND cancel_requested_at IS NULL",
            (task_id, worker),
        ).rowcount
        == 1
    )


def release_for_retry(conn: Conn, task_id: int, *, give_attempt_back: bool = False) -> None:
    """Put a task whose lease expired back in line; the next claim counts a new attempt.
    ``give_attempt_back``: the lost one is not counted (it ran out for an outage of ours)."""
    conn.execute(
        "UPDATE tasks SET status = 'pending', claimed_by = NULL, lease_expires_at = NULL,"
        " attempts = CASE WHEN %s THEN greatest(attempts - 1, 0) ELSE attempts END,"
        " enqueued_at = NULL, updated_at = now() WHERE id = %s",
        (give_attempt_back, task_id),
    )


def lock_task(conn: Conn, task_id: int, account_id: int) -> dict | None:
    """The account's task (id, status, and whether a code sent to it is still unread),
    locked for the rest of the transaction."""
    return conn.execute(
        "SELECT id, status, input_token IS NOT NULL AS input_unread FROM tasks"
        " WHERE id = %s AND account_id = %s FOR UPDATE",
        (task_id, account_id),
    ).fetchone()


def request_cancel(conn: Conn, task_id: int) -> None:
    """Ask the worker running the task to stop; it sees this before its next step."""
    conn.execute(
        "UPDATE tasks SET cancel_requested_at = now(), updated_at = now() WHERE id = %s",
        (task_id,),
    )


class AlreadyFinished(Exception):
    """The task already has a final status (``status``)."""

    def __init__(self, status: str) -> None:
        super().__init__(f"The task already ended as {status}.")
        self.status = status


def cancel_task(conn: Conn, *, account_id: int, task_id: int) -> bool:
    """Cancel a task: a queued one ends at once; a running one stops before its next step.

    False if the account has no such task; :class:`AlreadyFinished` if it ended already. Used
    by ``POST /tasks/{id}/cancel`` and by the console.
    """
    row = lock_task(conn, task_id, account_id)
    if row is None:
        return False
    if row["status"] in FINAL_STATUSES:
        raise AlreadyFinished(row["status"])
    request_cancel(conn, task_id)
    # No worker holds a task that is queued, waiting for its portal or paused for review: it
    # ends now.
    if row["status"] in (
        *CLAIMABLE_STATUSES,
        TaskStatus.WAITING_FOR_SESSION,
        TaskStatus.WAITING_FOR_PORTAL,
        TaskStatus.PENDING_REVIEW,
    ):
        finish_task(conn, task_id, TaskStatus.CANCELED, CANCELED_NOTE)
    return True


class NotWaiting(Exception):
    """The task is not waiting for input (``status`` says what it is)."""

    code = "not_waiting"

    def __init__(self, status: str, message: str | None = None) -> None:
        super().__init__(message or f"The task is {status}, not waiting for input.")
        self.status = status


class InputPending(NotWaiting):
    """A code sent to the task is not read yet: a second one would replace it unseen."""

    code = "input_pending"

    def __init__(self, status: str) -> None:
        super().__init__(
            status,
            "A code sent to this task has not been read yet; if the portal refuses it, the task"
            " asks again.",
        )


def give_input(
    conn: Conn, fernet: MultiFernet, *, account_id: int, task_id: int, code: str
) -> bool:
    """Hand a waiting task the one-time code it asked for; the agent resumes with it.

    False if the account has no such task; :class:`NotWaiting` if it is not waiting, and
    :class:`InputPending` if the code sent before is not read yet (two people sending one at
    once: the second would replace the first unseen, and both be told it was taken). Used by
    ``POST /tasks/{id}/input`` and by the console.
    """
    row = lock_task(conn, task_id, account_id)
    if row is None:
        return False
    if row["status"] != TaskStatus.WAITING_FOR_INPUT:
        raise NotWaiting(row["status"])
    if row["input_unread"]:
        raise InputPending(row["status"])
    post_input(conn, task_id, encrypt_json(fernet, {"code": code}))
    return True


def post_input(conn: Conn, task_id: int, token: bytes) -> None:
    """Leave an encrypted input (an MFA code) for the waiting worker to take."""
    conn.execute(
        "UPDATE tasks SET input_token = %s, updated_at = now() WHERE id = %s", (token, task_id)
    )


def take_input(conn: Conn, task_id: int) -> bytes | None:
    """The encrypted input a person posted for a waiting task, removed as it is read."""
    row = conn.execute(
        """
        WITH posted AS (
            SELECT id, input_token FROM tasks
             WHERE id = %s AND input_token IS NOT NULL FOR UPDATE)
        UPDATE tasks SET input_token = NULL FROM posted
         WHERE tasks.id = posted.id
        RETURNING posted.input_token
        """,
        (task_id,),
    ).fetchone()
    return None if row is None else bytes(row["input_token"])


def queue_state(conn: Conn) -> tuple[dict[str, int], float]:
    """For /metrics: the unfinished tasks by status, and the age in seconds of the oldest one
    waiting for a worker (0 when none is). Both read the ``tasks_unfinished`` index."""
    rows = conn.execute(
        """
        SELECT status, count(*) AS n,
               COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)
                                FILTER (WHERE status IN ('pending', 'dispatching'))), 0)
                   AS oldest_s
          FROM tasks
         WHERE status IN ('pending', 'dispatching', 'running', 'waiting_for_input',
                          'waiting_for_session', 'waiting_for_portal')
         GROUP BY status
        """
    ).fetchall()
    counts = {str(status): 0 for status in UNFINISHED_STATUSES}
    counts.update({row["status"]: int(row["n"]) for row in rows})
    return counts, max((float(row["oldest_s"]) for row in rows), default=0.0)
