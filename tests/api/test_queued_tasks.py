"""An account has at most MAX_QUEUED_TASKS tasks that have not ended: one more, by POST /tasks, a
batch or a retry, is a 409 ``limit_exceeded`` naming the setting and nothing is stored; a task
that ends (or is canceled) makes room. Against the real database, through the API."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from api import create_app
from api.openapi import TASK_EXAMPLES
from shared import tasks as task_queries
from shared.tasks import TaskStatus
from tests.api.test_quotas import _count, limited

TASK = {"type": "check_eligibility", "data": TASK_EXAMPLES["check_eligibility"]}


def _refused(answer, limit: int) -> None:
    assert answer.status_code == 409, answer.json
    assert answer.json["error"]["code"] == "limit_exceeded"
    assert answer.json["error"]["details"] == {"limit": "MAX_QUEUED_TASKS", "max": limit}
    assert "send again once some have ended" in answer.json["error"]["message"]


def _end(runtime, task_id: int, status: TaskStatus) -> None:
    with runtime.pool.connection() as conn:
        assert task_queries.finish_task(conn, task_id, status, "Portal error: timed out")


def test_tasks_stop_at_the_limit_however_they_are_created(runtime, account, make_account):
    with limited(runtime, max_queued_tasks=2) as client:
        headers = account.headers

        def create(**more):
            return client.post("/tasks", json=TASK, headers={**headers, **more})

        def batch(size: int, **more):
            body = {"tasks": [TASK] * size}
            return client.post("/tasks/batch", json=body, headers={**headers, **more})

        first = create(**{"Idempotency-Key": "first"})
        assert first.status_code == 200
        # a batch that would go over is refused whole, and one that fits is stored
        _refused(batch(2), 2)
        assert _count(runtime, "tasks") == 1
        assert batch(1).status_code == 200
        # when the account has as many unfinished tasks as it may, one more is refused
        # (without and with an Idempotency-Key), and nothing of it is stored
        _refused(create(), 2)
        _refused(create(**{"Idempotency-Key": "later"}), 2)
        _refused(batch(1), 2)
        assert _count(runtime, "tasks") == 2
        assert _count(runtime, "task_batches") == 1
        assert _count(runtime, "idempotency_keys WHERE key = 'later'") == 0
        # a key's stored answer is still replayed
        again = create(**{"Idempotency-Key": "first"})
        assert again.status_code == 200
        assert again.json["id"] == first.json["id"]
        # another account counts its own
        assert client.post("/tasks", json=TASK, headers=make_account("Other").headers)\
            .status_code == 200  # fmt: skip

        # once a task ends, one more fits
        _end(runtime, first.json["id"], TaskStatus.FAILED)
        third = create()
        assert third.status_code == 200
        # sending the failed task again is a creation like any other
        _refused(client.post(f"/tasks/{first.json['id']}/retry", headers=headers), 2)
        assert _count(runtime, "tasks WHERE account_id = %s", account.id) == 3
        # and a cancel makes room for it, and for the key refused before
        canceled = client.post(f"/tasks/{third.json['id']}/cancel", headers=headers)
        assert canceled.status_code == 200, canceled.json
        retried = client.post(f"/tasks/{first.json['id']}/retry", headers=headers)
        assert retried.status_code == 200, retried.json
        assert retried.json["retry_of"] == first.json["id"]
        _refused(create(**{"Idempotency-Key": "later"}), 2)
        _end(runtime, retried.json["id"], TaskStatus.COMPLETED)
        assert create(**{"Idempotency-Key": "later"}).status_code == 200


def test_creations_at_once_at_the_last_place_store_only_one(runtime, account):
    with limited(runtime, max_queued_tasks=2) as client:
        # (one task first: the others are then validated against what it read, and stored
        # with the one statement of the hot path)
        assert client.post("/tasks", json=TASK, headers=account.headers).status_code == 200
        app = create_app(runtime=runtime)

        def create(_: int) -> int:
            return app.test_client().post("/tasks", json=TASK, headers=account.headers)\
                .status_code  # fmt: skip

        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(create, range(8)))
    assert sorted(codes) == [200] + [409] * 7
    assert _count(runtime, "tasks WHERE account_id = %s", account.id) == 2


def test_the_console_says_the_limit_when_it_sends_a_task_again(runtime, account):
    from tests.api.test_console import PASSWORD, make_user, page_token, sign_in

    with limited(runtime, max_queued_tasks=1) as browser:
        created = browser.post("/tasks", json=TASK, headers=account.headers).json
        _end(runtime, created["id"], TaskStatus.FAILED)
        assert browser.post("/tasks", json=TASK, headers=account.headers).status_code == 200
        make_user(runtime, account.id, "ops@c.test", "operator")
        sign_in(browser, "ops@c.test", PASSWORD)
        token = page_token(browser, f"/console/tasks/{created['id']}")
        refused = browser.post(f"/console/tasks/{created['id']}/retry",
                               data={"retries": "0", "csrf_token": token})  # fmt: skip
        assert refused.status_code == 409
        assert "MAX_QUEUED_TASKS" in refused.text
    assert _count(runtime, "task_retries") == 0


def test_a_task_ending_does_not_hold_back_the_accounts_creations(runtime, account):
    # given a task whose end is written but not committed yet (a worker's transaction)
    with limited(runtime, max_queued_tasks=2) as client:
        created = client.post("/tasks", json=TASK, headers=account.headers).json
        # (the pool last: a creation left waiting is let go when the transaction ends)
        with ThreadPoolExecutor(1) as pool, runtime.pool.connection() as ending:
            assert task_queries.finish_task(ending, created["id"], TaskStatus.FAILED, "Done")
            read = client.get(f"/tasks/{created['id']}", headers=account.headers).json
            assert read["status"] != "failed"  # not committed yet
            # when the account creates a task meanwhile
            answer = pool.submit(
                lambda: client.post("/tasks", json=TASK, headers=account.headers).status_code
            )
            # then it is stored without waiting for that commit (the end counted as it was)
            assert answer.result(timeout=10) == 200
            _refused(client.post("/tasks", json=TASK, headers=account.headers), 2)
        # and once committed, the end makes room
        assert client.post("/tasks", json=TASK, headers=account.headers).status_code == 200


def _unfinished(runtime, account_id: int) -> tuple[int, int]:
    """The account's unfinished tasks as the limit counts them (created less ended), and as
    its rows are."""
    with runtime.pool.connection() as conn:
        kept = conn.execute(
            "SELECT a.task_seq - COALESCE(e.ended, 0) AS n FROM accounts a"
            " LEFT JOIN account_tasks_ended e ON e.account_id = a.id WHERE a.id = %s",
            (account_id,),
        ).fetchone()["n"]
        rows = conn.execute(
            "SELECT count(*) AS n FROM tasks WHERE account_id = %s"
            " AND status NOT IN ('completed', 'completed_with_issues', 'failed', 'canceled')",
            (account_id,),
        ).fetchone()["n"]
    return kept, rows


def test_the_count_of_unfinished_tasks_follows_every_way_a_task_ends_or_starts_again(
    runtime, account
):
    import dataclasses

    from scheduler.loop import tick
    from shared import outages, retention, review

    rt = dataclasses.replace(
        runtime, settings=runtime.settings.replace(pending_requeue_after_s=0, task_max_attempts=2)
    )
    with limited(runtime, max_queued_tasks=1000) as client:
        headers = account.headers

        def create() -> int:
            answer = client.post("/tasks", json=TASK, headers=headers)
            assert answer.status_code == 200, answer.json
            return answer.json["id"]

        def claim(task_id: int, worker: str = "worker-a") -> None:
            with runtime.pool.connection() as conn:
                claimed = task_queries.claim_task(conn, task_id, worker, 30.0)
                assert claimed is not None and claimed["id"] == task_id

        def finish(task_id: int, status: TaskStatus, worker: str = "worker-a") -> None:
            with runtime.pool.connection() as conn:
                assert task_queries.finish_task(conn, task_id, status, "Done", worker=worker)

        def expire_lease(task_id: int) -> None:
            with runtime.pool.connection() as conn:
                conn.execute(
                    "UPDATE tasks SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
                    (task_id,),
                )

        def pause(task_id: int) -> None:
            claim(task_id)
            with runtime.pool.connection() as conn:
                assert task_queries.await_review(
                    conn, task_id, "worker-a", step="Submit", note="Waiting for review."
                )

        def check() -> None:
            kept, rows = _unfinished(runtime, account.id)
            assert kept == rows

        # a worker runs one to its end
        done = create()
        claim(done)
        finish(done, TaskStatus.COMPLETED)
        check()
        # a queued one is canceled; a running one stops at its next step
        queued, running = create(), create()
        assert client.post(f"/tasks/{queued}/cancel", headers=headers).status_code == 200
        claim(running)
        assert client.post(f"/tasks/{running}/cancel", headers=headers).status_code in (200, 202)
        finish(running, TaskStatus.CANCELED)
        check()
        # one fails and is sent again, and the retry runs
        failed = create()
        claim(failed)
        finish(failed, TaskStatus.FAILED)
        retried = client.post(f"/tasks/{failed}/retry", headers=headers)
        assert retried.status_code == 200, retried.json
        check()
        # a batch, one of whose tasks ends
        batch = client.post("/tasks/batch", json={"tasks": [TASK] * 3}, headers=headers)
        assert batch.status_code == 200, batch.json
        first_of_batch = batch.json["data"][0]["id"]
        claim(first_of_batch)
        finish(first_of_batch, TaskStatus.COMPLETED_WITH_ISSUES)
        check()
        # reviews: approved (and run again), rejected, expired
        approved, rejected, expired = create(), create(), create()
        for task_id in (approved, rejected, expired):
            pause(task_id)
        for task_id, decision in ((approved, "approve"), (rejected, "reject")):
            answer = client.post(
                f"/tasks/{task_id}/review", json={"decision": decision}, headers=headers
            )
            assert answer.status_code == 200, answer.json
        claim(approved)
        finish(approved, TaskStatus.COMPLETED)
        with runtime.pool.connection() as conn:
            conn.execute(
                "UPDATE tasks SET review_expires_at = now() - interval '1 second' WHERE id = %s",
                (expired,),
            )
            assert review.expire_due(conn) == 1
        check()
        # a portal outage: one task waits and is given up on, another waits and runs again
        given_up, woken = create(), create()
        for task_id in (given_up, woken):
            claim(task_id)
            with runtime.pool.connection() as conn:
                assert outages.portal_failed(
                    conn, task_id, account.id, "sandbox", "HTTP 503", worker="worker-a",
                    wait_s=3600, probe_after_s=30,
                )  # fmt: skip
        with runtime.pool.connection() as conn:
            conn.execute(
                "UPDATE tasks SET portal_down_since = now() - interval '2 hours' WHERE id = %s",
                (given_up,),
            )
            assert outages.give_up_waiting(conn, 3600) == 1
            assert outages.portal_answered(conn, account.id, "sandbox") == [woken]
        claim(woken)
        finish(woken, TaskStatus.COMPLETED)
        check()
        # a worker killed: its lease runs out, the task is handed out again, then given up on
        lost = create()
        claim(lost, "dead-worker")
        expire_lease(lost)
        assert tick(rt).leases_recovered == 1
        check()
        claim(lost, "dead-worker")
        expire_lease(lost)
        tick(rt)
        assert client.get(f"/tasks/{lost}", headers=headers).json["status"] == "failed"
        check()
        # the retention purge deletes the tasks that ended long ago
        with runtime.pool.connection() as conn:
            conn.execute(
                "UPDATE tasks SET completed_at = completed_at - interval '100 days',"
                " failed_at = failed_at - interval '100 days',"
                " canceled_at = canceled_at - interval '100 days' WHERE account_id = %s",
                (account.id,),
            )
        assert retention.purge(runtime).tasks > 0
        check()
        kept, _ = _unfinished(runtime, account.id)
        assert kept == 3  # the retry and the batch's other two, and none else
