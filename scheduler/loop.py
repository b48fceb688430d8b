"""Every second or so: send due webhooks, re-send lost task messages, recover expired leases,
send tasks waiting for a portal session that nobody is left to wake, probe failing portals,
fail the tasks that waited too long for one, and end the reviews past their deadline. Every
``RETENTION_INTERVAL_S``, in a thread of its own: delete the tasks accounts no longer keep
(:mod:`shared.retention`), so a slow purge (a backlog, a row lock it waits on) delays no tick.

Every "later" in Understudy is a timestamp in Postgres, so this loop is the only thing that
turns time into work. Its queries claim rows with ``FOR UPDATE SKIP LOCKED``, so a second
scheduler started by mistake duplicates nothing.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass

import kombu.exceptions
import psycopg
import redis

from shared import metrics, outages, retention, review, webhooks
from shared import tasks as task_queries
from shared.celery import queue_lengths, send_run_task
from shared.logs import configure_logging
from shared.runtime import Runtime, build_runtime
from shared.settings import Settings
from shared.tasks import CANCELED_NOTE, TaskStatus

log = logging.getLogger(__name__)

# Errors of the services around us: logged and retried on the next tick, never a crash loop.
TRANSIENT_ERRORS = (psycopg.OperationalError, kombu.exceptions.OperationalError, redis.RedisError)


@dataclass
class TickReport:
    webhooks_sent: int = 0
    tasks_requeued: int = 0
    leases_recovered: int = 0
    leases_forgiven: int = 0  # of leases_recovered: their attempt not counted (OutageWatch)
    tasks_failed: int = 0
    reviews_expired: int = 0


def _lease_expired_note(attempts: int, irreversible: bool) -> tuple[TaskStatus, str]:
    if irreversible:
        return (
            TaskStatus.COMPLETED_WITH_ISSUES,
            f"The agent stopped responding after a submit step ({attempts} attempts). The "
            "submission may have reached the payer: check the portal before resubmitting.",
        )
    return (
        TaskStatus.FAILED,
        f"The agent stopped responding {attempts} times (worker lost or hung); giving up.",
    )


# A statement the server cut short or refused: the database was there.
_STATEMENT_REFUSED = (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable)


class OutageWatch:
    """Whether a lease that runs out now may have run out for a database outage of ours.

    A worker cut off from Postgres for longer than ``DB_RETRY_S`` gives its claim up without a
    status, and its lease runs out: the scheduler cannot tell that from a worker that died. The
    outage is ours, so it must not cost the task an attempt, nor fail one on its last. The
    scheduler sees the same outage (its ticks cannot reach Postgres); until ``TASK_LEASE_S``
    after its last such tick, an expired lease is handed out again with its attempt given back.
    Later, every lease a worker gave up has run out, and any that runs out is a worker's own.
    """

    def __init__(self, lease_s: float) -> None:
        self.lease_s = lease_s
        self._until = 0.0

    def saw(self, exc: BaseException) -> None:
        """Note a tick's error: an unreachable database (not a statement of ours refused)."""
        if isinstance(exc, psycopg.OperationalError) and not isinstance(exc, _STATEMENT_REFUSED):
            self._until = time.monotonic() + self.lease_s

    def forgiving(self) -> bool:
        return time.monotonic() < self._until


def _recover_leases(rt: Runtime, report: TickReport, forgive: bool) -> list[int]:
    retry: list[int] = []
    with rt.pool.connection() as conn:
        for row in task_queries.expired_leases(conn):
            if row["cancel_requested_at"] is not None:
                if row["irreversible_at"] is not None:
                    # Its worker passed a submit step before it stopped: "canceled" would say
                    # nothing was done, and the payer may have the submission.
                    status, notes = _lease_expired_note(row["attempts"], irreversible=True)
                    task_queries.finish_task(conn, row["id"], status, f"{CANCELED_NOTE} {notes}")
                    continue
                task_queries.finish_task(conn, row["id"], TaskStatus.CANCELED, CANCELED_NOTE)
                continue
            if forgive:
                task_queries.release_for_retry(conn, row["id"], give_attempt_back=True)
                log.info(
                    "task %s: its lease ran out during a database outage; handed out again,"
                    " the attempt not counted",
                    row["id"],
                )
                retry.append(row["id"])
                report.leases_forgiven += 1
                continue
            if row["attempts"] < rt.settings.task_max_attempts:
                task_queries.release_for_retry(conn, row["id"])
                retry.append(row["id"])
                continue
            status, notes = _lease_expired_note(row["attempts"], row["irreversible_at"] is not None)
            task_queries.finish_task(conn, row["id"], status, notes)
            report.tasks_failed += 1
    report.leases_recovered += len(retry)
    return retry


def _send_tasks(rt: Runtime, task_ids: list[int]) -> None:
    for task_id in task_ids:
        send_run_task(rt.celery, task_id)
    if task_ids:
        with rt.pool.connection() as conn:
            for task_id in task_ids:
                task_queries.mark_dispatched(conn, task_id)


def _agent_queue_depth(rt: Runtime) -> int:
    """Messages waiting in the agent queue (Celery's Redis list of that name)."""
    return queue_lengths(rt.celery, ("agent",))["agent"]


def tick(rt: Runtime, *, forgive: bool = False) -> TickReport:
    """One pass of every duty. Safe to run concurrently with another scheduler. ``forgive``:
    expired leases are handed out again with their attempt given back (:class:`OutageWatch`).
    """
    report = TickReport()
    report.webhooks_sent += webhooks.dispatch_due_messages(
        rt, lock_s=rt.settings.webhook_timeout_s + 30
    )
    _send_tasks(rt, _recover_leases(rt, report, forgive))
    with rt.pool.connection() as conn:
        stranded = task_queries.stranded_sessions(conn)
        # Giving up comes first: a task whose wait has run out fails, and is not sent as a probe.
        report.tasks_failed += outages.give_up_waiting(conn, rt.settings.portal_outage_wait_s)
        probes = outages.due_probes(conn)
        report.reviews_expired += review.expire_due(conn)
    _send_tasks(rt, stranded + probes)
    report.tasks_requeued += len(stranded) + len(probes)
    # A task still waiting while messages wait too is queued behind busy workers, not lost:
    # re-sending it would pile duplicates into the queue that KEDA scales workers on.
    if _agent_queue_depth(rt) == 0:
        with rt.pool.connection() as conn:
            lost = task_queries.due_for_requeue(conn, rt.settings.pending_requeue_after_s)
        _send_tasks(rt, lost)
        report.tasks_requeued += len(lost)
    metrics.SCHEDULER_LAST_TICK.set_to_current_time()
    return report


def run_forever(settings: Settings) -> None:
    configure_logging(settings, "scheduler")
    metrics.serve_metrics_port(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # One connection for the ticks (each holds one at a time), one for the purge's thread, and
    # one to spare so that neither waits for the other's.
    rt = build_runtime(settings, pool_size=3)
    try:
        run(rt, stop)
    finally:
        rt.close()


# How long a stopping scheduler waits for the purge's thread. A purge stops between its
# transactions; one still inside a transaction after this (a slow DELETE, a lock waited on) is
# left behind: the process ends without it, the server rolls that transaction back when its
# connection closes, and the next start deletes the same rows.
PURGE_STOP_WAIT_S = 5.0


def run(rt: Runtime, stop: threading.Event) -> None:
    """Tick every ``SCHEDULER_INTERVAL_S`` until ``stop`` is set, with the retention purge in a
    thread beside the ticks; it stops with them, waited for at most ``PURGE_STOP_WAIT_S``."""
    settings = rt.settings
    log.info("scheduler started, every %.1fs", settings.scheduler_interval_s)
    purger = threading.Thread(target=_purge_every, args=(rt, stop), name="retention", daemon=True)
    purger.start()
    watch = OutageWatch(settings.task_lease_s)
    try:
        while not stop.is_set():
            tick_once(rt, watch)
            stop.wait(settings.scheduler_interval_s)
    finally:
        stop.set()
        purger.join(PURGE_STOP_WAIT_S)
        if purger.is_alive():
            log.warning(
                "scheduler stopped with the retention purge still in a transaction: the"
                " database rolls it back, and the next start deletes those rows"
            )


def tick_once(rt: Runtime, watch: OutageWatch) -> TickReport | None:
    """A tick of :func:`run`: its report, or None when a service around it failed (logged, and
    noted by ``watch``); the next tick tries again."""
    try:
        report = tick(rt, forgive=watch.forgiving())
    except TRANSIENT_ERRORS as exc:
        watch.saw(exc)
        # One line per tick: an outage of minutes must not bury the log in tracebacks.
        log.warning(
            "scheduler tick failed (%s: %s); retrying next tick",
            type(exc).__name__,
            _first_line(exc),
        )
        return None
    if report != TickReport():
        log.info("tick: %s", report)
    return report


def _purge_every(rt: Runtime, stop: threading.Event) -> None:
    """Purge now, then every ``RETENTION_INTERVAL_S`` until ``stop`` is set. A purge's error is
    logged and the next interval tries again: it never ends this thread or the scheduler."""
    while not stop.is_set():
        try:
            retention.purge(rt, stop)
        except TRANSIENT_ERRORS as exc:  # (a lock waited on too long is one)
            log.warning(
                "retention purge failed (%s: %s); retrying in %.0fs",
                type(exc).__name__,
                _first_line(exc),
                rt.settings.retention_interval_s,
            )
        except Exception:
            log.exception(
                "retention purge failed; retrying in %.0fs", rt.settings.retention_interval_s
            )
        stop.wait(rt.settings.retention_interval_s)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
