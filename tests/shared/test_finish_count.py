"""understudy_tasks_finished_total counts each task once, even when the transaction that
finished it lost its connection before the commit and was run again."""

from __future__ import annotations

import psycopg
from prometheus_client import REGISTRY, generate_latest

from shared import tasks as task_queries
from shared.db import in_transaction
from shared.tasks import TaskStatus
from tests.scrape import delta, parse

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


def test_a_finish_run_again_after_its_connection_died_is_counted_once(
    client, account, runtime, services
):
    # given a task
    created = client.post(
        "/tasks", json={"type": "check_eligibility", "data": JANE}, headers=account.headers
    )
    task_id = created.get_json()["id"]
    before = parse(generate_latest(REGISTRY).decode())
    attempts: list[bool] = []

    # when the transaction that finishes it loses its connection before the commit, the first
    # time, and is run again
    def finish(conn) -> bool:
        finished = task_queries.finish_task(conn, task_id, TaskStatus.FAILED, "gave up")
        attempts.append(finished)
        if len(attempts) == 1:
            pid = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
            with psycopg.connect(services["database_url"], autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
        return finished

    assert in_transaction(runtime.pool, finish, retry_s=30)

    # then it was finished twice, committed once, and counted once
    assert attempts == [True, True]
    with runtime.pool.connection() as conn:
        [row] = conn.execute("SELECT status FROM tasks WHERE id = %s", (task_id,)).fetchall()
    assert row["status"] == "failed"
    after = parse(generate_latest(REGISTRY).decode())
    finished = "understudy_tasks_finished_total"
    assert delta(before, after, finished, type="check_eligibility", status="failed") == 1
