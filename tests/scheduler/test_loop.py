"""The scheduler turns Postgres timestamps into messages: lost sends, expired leases, webhooks."""

from __future__ import annotations

import dataclasses
import time

import psycopg
import pytest
import redis

from scheduler.loop import OutageWatch, tick, tick_once
from shared import tasks as task_queries
from tests.conftest import analyzed_while_empty
from tests.scrape import parse, value

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


@pytest.fixture
def rt(runtime):
    return dataclasses.replace(
        runtime, settings=runtime.settings.replace(pending_requeue_after_s=0, task_max_attempts=2)
    )


def _queued_task_ids(rt) -> list[str]:
    return [m.decode() for m in redis.Redis.from_url(rt.settings.redis_url).lrange("agent", 0, -1)]


def _create(client, account) -> int:
    response = client.post(
        "/tasks", json={"type": "check_eligibility", "data": JANE}, headers=account.headers
    )
    return response.get_json()["id"]


def _status(rt, task_id: int) -> dict:
    with rt.pool.connection() as conn:
        return conn.execute(
            "SELECT status, notes, attempts FROM tasks WHERE id = %s", (task_id,)
        ).fetchone()


def test_each_tick_says_when_it_finished_on_metrics(rt, client):
    # given the time before a tick
    before = time.time()
    # when the scheduler ticks, then /metrics shows it finished a tick since
    tick(rt)
    shown = value(parse(client.get("/metrics").get_data(as_text=True)),
                  "understudy_scheduler_last_tick_seconds")  # fmt: skip
    assert before <= shown <= time.time()


def test_a_task_whose_message_redis_lost_is_sent_again(rt, client, account):
    # given a task whose message was lost (Redis flushed after the API sent it)
    task_id = _create(client, account)
    redis.Redis.from_url(rt.settings.redis_url).flushdb()
    # when the scheduler ticks
    report = tick(rt)
    # then the task is back on the agent queue, still waiting for a worker
    assert report.tasks_requeued == 1
    assert any(f"[{task_id}]" in message for message in _queued_task_ids(rt))
    assert _status(rt, task_id)["status"] == "dispatching"


def test_tasks_queued_behind_busy_workers_are_not_sent_twice(rt, client, account):
    # given two tasks whose messages still wait in the agent queue (no worker is running)
    first, second = _create(client, account), _create(client, account)
    # when the scheduler ticks past the requeue delay
    report = tick(rt)
    # then nothing is re-sent: the queue holds exactly the two original messages
    assert report.tasks_requeued == 0
    queued = _queued_task_ids(rt)
    assert len(queued) == 2
    assert sum(f"[{first}]" in m for m in queued) == 1
    assert sum(f"[{second}]" in m for m in queued) == 1


def _expire_lease(rt, task_id: int, attempts: int) -> None:
    with rt.pool.connection() as conn:
        conn.execute(
            "UPDATE tasks SET status = 'running', claimed_by = 'dead-worker', attempts = %s,"
            " lease_expires_at = now() - interval '1 second' WHERE id = %s",
            (attempts, task_id),
        )


def test_an_expired_lease_is_retried_while_attempts_remain(rt, client, account):
    task_id = _create(client, account)
    _expire_lease(rt, task_id, attempts=1)
    redis.Redis.from_url(rt.settings.redis_url).flushdb()
    report = tick(rt)
    assert report.leases_recovered == 1
    assert _status(rt, task_id)["status"] == "dispatching"
    assert any(f"[{task_id}]" in message for message in _queued_task_ids(rt))


def test_an_expired_lease_with_no_attempts_left_fails_with_a_note_and_a_webhook(
    rt, client, account
):
    task_id = _create(client, account)
    _expire_lease(rt, task_id, attempts=2)
    tick(rt)
    row = _status(rt, task_id)
    assert row["status"] == "failed"
    assert "stopped responding" in row["notes"]
    with rt.pool.connection() as conn:
        payload = conn.execute(
            "SELECT payload FROM webhook_messages WHERE task_id = %s", (task_id,)
        ).fetchone()["payload"]
    assert payload["status"] == "failed"


def test_a_lease_that_ran_out_in_a_database_outage_costs_no_attempt_even_the_last(
    rt, client, account
):
    # given a task on its last attempt whose worker gave its claim up when Postgres went away
    task_id = _create(client, account)
    _expire_lease(rt, task_id, attempts=2)
    # and a scheduler whose own tick could not reach Postgres a moment ago
    watch = OutageWatch(rt.settings.task_lease_s)
    down = dataclasses.replace(rt, pool=_unreachable_pool())
    try:
        assert tick_once(down, watch) is None
    finally:
        down.pool.close()
    # when it ticks with Postgres back
    report = tick_once(rt, watch)
    # then the task is handed out again with its attempt given back, not failed
    assert report is not None and (report.leases_recovered, report.leases_forgiven) == (1, 1)
    row = _status(rt, task_id)
    assert (row["status"], row["attempts"], row["notes"]) == ("dispatching", 1, None)
    assert any(f"[{task_id}]" in message for message in _queued_task_ids(rt))


def test_a_statement_refused_is_no_outage_and_forgives_nothing(rt, client, account):
    watch = OutageWatch(60)
    watch.saw(psycopg.errors.QueryCanceled("canceling statement due to statement timeout"))
    watch.saw(redis.ConnectionError("Redis is down"))
    assert not watch.forgiving()
    watch.saw(psycopg.OperationalError("connection refused"))
    assert watch.forgiving()
    assert not OutageWatch(0).forgiving()


def _unreachable_pool():
    """A pool whose server is gone: a port nothing listens on, given up on at once."""
    from psycopg_pool import ConnectionPool

    return ConnectionPool(
        "postgresql://nobody@127.0.0.1:9/none?connect_timeout=1", min_size=0, max_size=1,
        timeout=0.5,
        open=True,
    )  # fmt: skip


def _died_after_submit(rt, task_id: int, *, attempts: int, canceled: bool = False) -> None:
    """The task's worker passed its submit step while its lease was live (a cancel asked too,
    if ``canceled``), then died: its lease is over."""
    _expire_lease(rt, task_id, attempts=attempts)
    with rt.pool.connection() as conn:
        conn.execute(
            "UPDATE tasks SET lease_expires_at = now() + interval '1 minute' WHERE id = %s",
            (task_id,),
        )
        assert task_queries.record_irreversible(conn, task_id, "Submit claim", worker="dead-worker")
        if canceled:
            task_queries.request_cancel(conn, task_id)
    _expire_lease(rt, task_id, attempts=attempts)


def test_a_lease_that_expired_after_a_submit_is_never_failed_blindly(rt, client, account):
    task_id = _create(client, account)
    # the dead worker passed its submit checkpoint while its lease was live
    _died_after_submit(rt, task_id, attempts=2)
    tick(rt)
    row = _status(rt, task_id)
    assert row["status"] == "completed_with_issues"
    assert "may have reached the payer" in row["notes"]


def test_a_canceled_task_whose_worker_died_after_a_submit_does_not_say_canceled(
    rt, client, account
):
    """Found by a concurrency audit: a cancel asked of a task whose worker then died after its
    submit step ended it ``canceled``, saying nothing of what the payer may have."""
    task_id = _create(client, account)
    _died_after_submit(rt, task_id, attempts=1, canceled=True)
    tick(rt)
    row = _status(rt, task_id)
    assert row["status"] == "completed_with_issues"
    assert "may have reached the payer" in row["notes"]


def test_two_ticks_at_once_send_one_webhook_each(rt, client, make_account):
    # given one finished task with its outbox message due to an endpoint with a URL
    account = make_account(webhook_url="http://127.0.0.1:9/hook")
    task_id = _create(client, account)
    with rt.pool.connection() as conn:
        task_queries.finish_task(conn, task_id, task_queries.TaskStatus.COMPLETED, "done")
    # when two scheduler ticks run back to back, then the message is sent once
    first, second = tick(rt), tick(rt)
    assert first.webhooks_sent + second.webhooks_sent == 1


def test_a_requeue_pass_sends_at_most_its_limit_whatever_the_statistics(rt, client, account):
    # given statistics from a quiet spell, then 5 tasks whose messages Redis lost
    analyzed_while_empty(rt.settings.database_url, "tasks")
    created = [_create(client, account) for _ in range(5)]
    redis.Redis.from_url(rt.settings.redis_url).flushdb()
    # when one pass may send 2
    with rt.pool.connection() as conn:
        sent = task_queries.due_for_requeue(conn, older_than_s=0, limit=2)
    # then it sends the 2 oldest and leaves the rest for the next pass
    assert sent == created[:2]
