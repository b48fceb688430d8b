"""Data retention: a task that ended more than its account's ``retention_days`` ago is deleted,
with everything it holds.

A task holds a patient's data (its ``data``, inputs, result and notes), the files sent with it,
the screenshots of the payer's pages the agent saw, and the webhook messages that carried it.
None of it is kept longer than the account chose (``PUT /settings``, 90 days unless set), except
while its webhook is still in its retry schedule (about 28 hours at most). The
scheduler calls :func:`purge` every ``RETENTION_INTERVAL_S``, in a thread of its own beside its
ticks; each call deletes in transactions of at most ``PURGE_BATCH`` tasks (or batches, or
messages of no task), up to ``MAX_BATCHES_PER_CALL`` of each kind, so no lock is held long and a
backlog (a lowered setting, a scheduler that was down) drains over a few calls. A
statement waits at most ``RETENTION_LOCK_TIMEOUT_S`` for a row lock that live work holds (a
dispatcher writing an attempt, a batch's count of unfinished tasks); past it the call ends with
``LockNotAvailable`` and the next call tries again.

Deleted with a task: its row, files (their bytes taken off the account's stored files, which
``MAX_STORED_FILE_BYTES`` bounds), trajectory steps and screenshots, webhook messages and
their delivery attempts, and its place in a batch. Deleted besides, per account: batches that
finished before the cutoff, webhook messages of no task (pings, ``batch.finished``) delivered,
given up or aborted by their receiver before it (never one still pending); and for every
account, idempotency keys past their 24 hours (their stored answer: a task's JSON, or another
call's answer, encrypted) and expired console sessions.

Kept: the account, its SOP versions, portals, credentials, users and webhook endpoint, and the
audit log: who did what, naming a task by its id (a reviewer's note stays with the decision).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from shared import metrics
from shared.db import Conn
from shared.runtime import Runtime
from shared.webhooks import FINAL_MESSAGE_STATUSES

log = logging.getLogger(__name__)

MAX_RETENTION_DAYS = 3650
PURGE_BATCH = 500
# Transactions of each kind (tasks, batches, account messages) per call, so one call stays
# short; the rest waits for the next call.
MAX_BATCHES_PER_CALL = 40
# How long an Idempotency-Key is remembered (api.tasks replays within it).
IDEMPOTENCY_TTL = "24 hours"

# The tasks of an account that ended before its cutoff: one range of the ``tasks_ended`` index
# per account, so a call costs the accounts plus what it deletes, however many tasks are kept.
# (Ordered by the index's own key, or the planner may choose a scan of the whole table.)
# A task whose outcome is still in its retry schedule to an endpoint that takes messages waits
# for it: a receiver down for hours loses nothing (the schedule ends within about 28 hours).
# One held by the account's endpoint (disabled, or no URL) does not: the account stopped its
# deliveries, and its retention is its choice too.
_DUE_TASKS = """
    SELECT t.id FROM accounts a
    LEFT JOIN webhook_endpoints e ON e.account_id = a.id AND e.enabled AND e.url IS NOT NULL
    CROSS JOIN LATERAL (
        SELECT id FROM tasks
         WHERE account_id = a.id
           AND status IN ('completed', 'completed_with_issues', 'failed', 'canceled')
           AND COALESCE(completed_at, failed_at, canceled_at)
               < now() - make_interval(days => a.retention_days)
           AND (e.account_id IS NULL OR NOT EXISTS (
                SELECT FROM webhook_messages m WHERE m.task_id = tasks.id AND m.status = 'pending'))
         ORDER BY COALESCE(completed_at, failed_at, canceled_at)
         LIMIT %(limit)s
         FOR UPDATE SKIP LOCKED
    ) t
    LIMIT %(limit)s
"""

# What refers to a task, deleted before the task itself (a batch's row cascades).
_TASK_PARTS = (
    "DELETE FROM webhook_attempts WHERE message_id IN"
    " (SELECT id FROM webhook_messages WHERE task_id = ANY(%(ids)s))",
    "DELETE FROM webhook_messages WHERE task_id = ANY(%(ids)s)",
    "DELETE FROM trajectory_steps WHERE task_id = ANY(%(ids)s)",
    "DELETE FROM artifacts WHERE task_id = ANY(%(ids)s)",
    # The files, taken off their accounts' stored bytes (MAX_STORED_FILE_BYTES, shared.quotas).
    """
    WITH gone AS (
        DELETE FROM task_files f USING tasks t
         WHERE f.task_id = ANY(%(ids)s) AND t.id = f.task_id
        RETURNING t.account_id, f.size_bytes)
    UPDATE account_storage s SET file_bytes = s.file_bytes - g.bytes
      FROM (SELECT account_id, sum(size_bytes) AS bytes FROM gone GROUP BY account_id) g
     WHERE s.account_id = g.account_id
    """,
    "DELETE FROM tasks WHERE id = ANY(%(ids)s)",
)

# An account's batches that finished before its cutoff: one range of the
# ``task_batches_finished`` index per account, as for tasks, so the batches it keeps (unfinished,
# or recent) are never read and never stand in the way.
_DUE_BATCHES = """
    DELETE FROM task_batches WHERE id IN (
        SELECT w.id FROM accounts a
        CROSS JOIN LATERAL (
            SELECT id FROM task_batches
             WHERE account_id = a.id AND finished_at IS NOT NULL
               AND finished_at < now() - make_interval(days => a.retention_days)
             ORDER BY finished_at
             LIMIT %(limit)s
        ) w
        LIMIT %(limit)s)
"""
# An account's messages of no task that ended (delivered, given up, or aborted by the receiver)
# before its cutoff: one range of the ``webhook_messages_ended`` index per account, as for tasks,
# so the messages it keeps (pending, or recent) are never read and never stand in the way. The
# end falls back to the creation for a row without one, so that none is kept for ever. (The
# statuses are the index's, in its order.)
_ENDED = ", ".join(f"'{status}'" for status in sorted(FINAL_MESSAGE_STATUSES))
_DUE_MESSAGES = f"""
    SELECT w.id FROM accounts a
    CROSS JOIN LATERAL (
        SELECT id FROM webhook_messages
         WHERE account_id = a.id AND task_id IS NULL
           AND status IN ({_ENDED})
           AND COALESCE(delivered_at, failed_at, created_at)
               < now() - make_interval(days => a.retention_days)
         ORDER BY COALESCE(delivered_at, failed_at, created_at)
         LIMIT %(limit)s
         FOR UPDATE SKIP LOCKED
    ) w
    LIMIT %(limit)s
"""


@dataclass
class PurgeReport:
    tasks: int = 0
    messages: int = 0
    batches: int = 0
    idempotency_keys: int = 0
    sessions: int = 0


@contextmanager
def _transaction(rt: Runtime) -> Iterator[Conn]:
    """A pooled connection's transaction whose waits for a lock are bounded."""
    with rt.pool.connection() as conn:
        conn.execute(
            "SELECT set_config('lock_timeout', %s, true)",
            (f"{max(1, round(rt.settings.retention_lock_timeout_s * 1000))}ms",),
        )
        yield conn


def purge(rt: Runtime, stop: threading.Event | None = None) -> PurgeReport:
    """Delete what the accounts no longer keep (see the module's text). Safe beside another
    scheduler: a task another call holds is skipped, and deleting twice deletes nothing. Once
    ``stop`` is set, the call ends after its current transaction."""
    report = PurgeReport()
    # (a batch with a task kept back ends the call's loop of tasks too)
    report.tasks = _repeat(rt, stop, _purge_tasks)
    report.batches = _repeat(rt, stop, _purge_batches)
    report.messages = _repeat(rt, stop, _purge_messages)
    if stop is not None and stop.is_set():
        return _reported(report)
    with _transaction(rt) as conn:
        report.idempotency_keys = conn.execute(
            f"DELETE FROM idempotency_keys WHERE created_at < now() - interval '{IDEMPOTENCY_TTL}'"
        ).rowcount
        report.sessions = conn.execute(
            "DELETE FROM user_sessions WHERE expires_at < now()"
        ).rowcount
    return _reported(report)


def _reported(report: PurgeReport) -> PurgeReport:
    metrics.TASKS_PURGED.inc(report.tasks)
    if report != PurgeReport():
        log.info("retention: deleted %s", report)
    return report


def _repeat(rt: Runtime, stop: threading.Event | None, purge_one: Callable[[Conn], int]) -> int:
    """``purge_one`` in transactions of their own until one deletes less than a whole
    ``PURGE_BATCH`` (nothing more is due), ``MAX_BATCHES_PER_CALL`` of them ran (the rest waits
    for the next call), or ``stop`` is set; how many rows it deleted in all."""
    deleted = 0
    for _ in range(MAX_BATCHES_PER_CALL):
        if stop is not None and stop.is_set():
            break
        with _transaction(rt) as conn:
            count = purge_one(conn)
        deleted += count
        if count < PURGE_BATCH:
            break
    return deleted


def _purge_batches(conn: Conn) -> int:
    return conn.execute(_DUE_BATCHES, {"limit": PURGE_BATCH}).rowcount


def _purge_tasks(conn: Conn) -> int:
    """Delete one batch of due tasks; how many it deleted."""
    due = [row["id"] for row in conn.execute(_DUE_TASKS, {"limit": PURGE_BATCH}).fetchall()]
    if not due:
        return 0
    # A message a dispatcher is sending now keeps its task until the attempt is written (it
    # refers to the message). Locking the messages first means none is claimed meanwhile.
    busy = {
        row["task_id"]
        for row in conn.execute(
            "SELECT task_id, locked_until > now() AS sending FROM webhook_messages"
            " WHERE task_id = ANY(%s) FOR UPDATE",
            (due,),
        ).fetchall()
        if row["sending"]
    }
    ids = [task_id for task_id in due if task_id not in busy]
    for statement in _TASK_PARTS:
        conn.execute(statement, {"ids": ids})
    return len(ids)


def _purge_messages(conn: Conn) -> int:
    ids = [row["id"] for row in conn.execute(_DUE_MESSAGES, {"limit": PURGE_BATCH}).fetchall()]
    if not ids:
        return 0
    conn.execute("DELETE FROM webhook_attempts WHERE message_id = ANY(%s)", (ids,))
    return conn.execute("DELETE FROM webhook_messages WHERE id = ANY(%s)", (ids,)).rowcount
