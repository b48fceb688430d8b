"""The retention purge runs beside the scheduler's ticks, not in them: a purge that waits (on a
row lock live work holds, or on a big backlog) delays no lost message and no expired lease.

The loop runs in a thread of the test, against the real Postgres and Redis; a row lock is taken
from a connection of the test's own, as a dispatcher writing an attempt would hold it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import redis

from scheduler import loop
from scheduler.loop import run
from shared import retention

from .test_loop import _create, _queued_task_ids
from .test_retention import _end, _gone, _task

# How long a test waits for what must happen before calling it a failure (never a measure).
PATIENCE_S = 30.0


def _until(what: str, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


@contextmanager
def _holding_messages_of(rt, task_id: int) -> Iterator[psycopg.Connection]:
    """A transaction of another connection holding the row locks of the task's messages."""
    with psycopg.connect(rt.database_url) as holder:
        rows = holder.execute(
            "SELECT id FROM webhook_messages WHERE task_id = %s FOR UPDATE", (task_id,)
        ).fetchall()
        assert rows, "the task has a message to lock"
        try:
            yield holder
        finally:
            holder.rollback()


def _waiting_on(rt, holder: psycopg.Connection) -> int:
    """How many sessions wait for a lock the holder has."""
    with rt.pool.connection() as conn:
        return conn.execute(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
            (holder.info.backend_pid,),
        ).fetchone()["n"]


@contextmanager
def _scheduler(rt) -> Iterator[threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(rt, stop), name="test-scheduler", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()


def _due_task(client, rt, account) -> int:
    """A task that ended 100 days ago (kept 90), with its task_finished message."""
    task_id = _task(client, account)
    _end(rt, account, task_id, 100)
    return task_id


def test_a_purge_waiting_on_a_row_lock_holds_up_no_tick(client, runtime, account):
    # given a scheduler that ticks often, and purges once at its start and then hourly, whose
    # purge would wait a minute for a lock
    rt = dataclasses.replace(
        runtime,
        settings=runtime.settings.replace(
            scheduler_interval_s=0.02,
            pending_requeue_after_s=0,
            retention_interval_s=3600,
            retention_lock_timeout_s=60,
        ),
    )
    # and a task past its retention whose message another transaction holds locked
    due = _due_task(client, rt, account)
    # when the scheduler starts, and its purge waits for that lock
    with _holding_messages_of(rt, due) as holder, _scheduler(rt) as scheduler:
        _until("the purge waits for the held lock", lambda: _waiting_on(rt, holder) == 1)
        # and meanwhile a task's message is lost (Redis flushed after the API sent it)
        lost = _create(client, account)
        redis.Redis.from_url(rt.settings.redis_url).flushdb()

        # then a tick sends it again while the purge still waits
        _until(
            "the lost task is sent again",
            lambda: any(f"[{lost}]" in m for m in _queued_task_ids(rt)),
        )
        assert _waiting_on(rt, holder) == 1
        assert scheduler.is_alive()
        # and once the lock is let go, the purge deletes the task
        holder.rollback()
        _until("the purge deletes the task", lambda: _gone(client, account, due))
    scheduler.join(PATIENCE_S)
    assert not scheduler.is_alive()


def test_a_purge_waits_for_a_row_lock_no_longer_than_its_lock_timeout(client, runtime, account):
    # given a purge that waits at most 0.2 s for a lock
    rt = dataclasses.replace(
        runtime, settings=runtime.settings.replace(retention_lock_timeout_s=0.2)
    )
    # and a task past its retention whose message another transaction holds locked
    due = _due_task(client, rt, account)
    outcome: list[BaseException | retention.PurgeReport] = []

    def purge() -> None:
        try:
            outcome.append(retention.purge(rt))
        except Exception as exc:  # the outcome the test looks at
            outcome.append(exc)

    with _holding_messages_of(rt, due):
        # when the retention runs
        thread = threading.Thread(target=purge, daemon=True)
        thread.start()
        _until("the purge ends", lambda: not thread.is_alive())
        # then it gave up on the lock while the lock was still held, and deleted nothing
        [error] = outcome
        assert isinstance(error, psycopg.errors.LockNotAvailable), error
        assert not _gone(client, account, due)
    # and the next pass, the lock let go, deletes the task
    assert retention.purge(rt).tasks == 1
    assert _gone(client, account, due)


def test_a_failed_purge_is_logged_and_retried_with_the_scheduler_still_running(
    client, runtime, account, caplog
):
    # given a scheduler purging often, whose purge waits at most 0.1 s for a lock
    rt = dataclasses.replace(
        runtime,
        settings=runtime.settings.replace(
            scheduler_interval_s=0.02, retention_interval_s=0.05, retention_lock_timeout_s=0.1
        ),
    )
    due = _due_task(client, rt, account)
    caplog.set_level(logging.WARNING, logger="scheduler.loop")

    def purge_failed() -> bool:
        return any("retention" in r.getMessage() for r in caplog.records)

    # when its purge fails on a lock another transaction holds
    with _holding_messages_of(rt, due) as holder, _scheduler(rt) as scheduler:
        _until("a failed purge is logged", purge_failed)
        assert "LockNotAvailable" in caplog.text
        assert scheduler.is_alive()
        # then once the lock is let go, a later purge deletes the task
        holder.rollback()
        _until("a later purge deletes the task", lambda: _gone(client, account, due))
        assert scheduler.is_alive()
    scheduler.join(PATIENCE_S)
    assert not scheduler.is_alive()


def test_a_stopping_scheduler_waits_a_bounded_time_for_a_purge_inside_a_transaction(
    client, runtime, account, caplog, monkeypatch
):
    # given a scheduler whose purge would wait a minute for a lock, and that waits at most
    # 0.5 s for the purge when it stops
    monkeypatch.setattr(loop, "PURGE_STOP_WAIT_S", 0.5)
    rt = dataclasses.replace(
        runtime,
        settings=runtime.settings.replace(retention_interval_s=3600, retention_lock_timeout_s=60),
    )
    due = _due_task(client, rt, account)
    caplog.set_level(logging.WARNING, logger="scheduler.loop")
    earlier = set(threading.enumerate())
    with _holding_messages_of(rt, due) as holder:
        with _scheduler(rt) as scheduler:
            _until("the purge waits for the held lock", lambda: _waiting_on(rt, holder) == 1)
        # when it is told to stop, the purge still waiting for the lock
        # then it stops while the lock is still held, and says what it left behind
        _until("the scheduler stops", lambda: not scheduler.is_alive())
        assert _waiting_on(rt, holder) == 1
        assert "retention purge still in a transaction" in caplog.text
        assert not _gone(client, account, due)
        # (found while it still waits: once the lock is let go it may end at any moment)
        [purger] = [t for t in threading.enumerate() if t.name == "retention" and t not in earlier]
    # and the purge left behind ends its pass once the lock is let go
    purger.join(PATIENCE_S)
    assert not purger.is_alive()
