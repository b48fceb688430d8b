"""Data retention (shared.retention, run by the scheduler): a task that ended more than its
account's ``retention_days`` ago is gone for its clients, with its files, screenshots, steps,
webhook messages and batch; what is still kept, or still running, is untouched.

Tasks are made through the API and ended with the workers' own query; their end is then moved
into the past, as the days would.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

from shared import metrics, retention, retries, users
from shared import tasks as task_queries
from shared.tasks import TaskStatus
from shared.trajectories import record_step
from tests.plans import rows_read_in

from .test_tick_cost import ELIGIBILITY

PNG = b"\x89PNG\r\n\x1a\n-a payer page"


def _task(client, account, **extra) -> int:
    response = client.post("/tasks", json={**ELIGIBILITY, **extra}, headers=account.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["id"]


def _with_file(client, account) -> int:
    response = client.post(
        "/tasks",
        data={"type": "submit_appeal", "files": (io.BytesIO(b"%PDF letter"), "letter.pdf"),
              "data": "claim_number: CLM-1\nmember_id: W1\nreason: necessary"},
        headers=account.headers,
        content_type="multipart/form-data",
    )  # fmt: skip
    assert response.status_code == 200, response.get_json()
    return response.get_json()["id"]


def _end(runtime, account, task_id: int, days_ago: float, status=TaskStatus.COMPLETED) -> None:
    """End the task with a screenshot in its trajectory, as if ``days_ago`` days ago."""
    with runtime.pool.connection() as conn:
        record_step(
            conn, task_id=task_id, account_id=account.id, attempt=1, seq=1, name="login",
            status="ok", message="", started_at=datetime.now(UTC), duration_ms=5, screenshot=PNG,
        )  # fmt: skip
        assert task_queries.finish_task(conn, task_id, status, "done")
        conn.execute(
            "UPDATE tasks SET completed_at = completed_at - make_interval(days => %(d)s),"
            " failed_at = failed_at - make_interval(days => %(d)s),"
            " canceled_at = canceled_at - make_interval(days => %(d)s) WHERE id = %(id)s",
            {"d": days_ago, "id": task_id},
        )


def _ended_long_ago(client, runtime, account, count: int, *, days: int) -> None:
    """One task made through the API (its SOP row), and ``count`` more that ended ``days`` ago,
    numbered from 1001."""
    _task(client, account)
    with runtime.pool.connection() as conn:
        conn.execute(
            """
            INSERT INTO tasks (account_id, task_number, type, status, title, instructions, sop_id,
                               data, completed_at)
            SELECT %(account)s, 1000 + g, 'check_eligibility', 'completed', 't', 'i',
                   (SELECT min(id) FROM sops), 'x', now() - make_interval(days => %(days)s)
              FROM generate_series(1, %(count)s) AS g
            """,
            {"account": account.id, "count": count, "days": days},
        )
        conn.execute("ANALYZE tasks")


def _count(runtime, sql: str, params=()) -> int:
    with runtime.pool.connection() as conn:
        return conn.execute(f"SELECT count(*) AS n FROM {sql}", params).fetchone()["n"]


def _gone(client, account, task_id: int) -> bool:
    return client.get(f"/tasks/{task_id}", headers=account.headers).status_code == 404


def test_a_task_past_its_accounts_retention_is_deleted_with_all_it_holds(
    client, runtime, make_account
):
    # given an account that keeps ended tasks 30 days, and one that keeps the default 90
    clinic, other = make_account(), make_account()
    put = client.put("/settings", json={"retention_days": 30}, headers=clinic.headers)
    assert put.status_code == 200
    # and, in the clinic: a task with a file and a screenshot that ended 40 days ago, one that
    # failed 31 days ago, one that ended 10 days ago, and one still waiting for a worker
    old, failed, recent, running = (
        _with_file(client, clinic), _task(client, clinic), _task(client, clinic),
        _task(client, clinic),
    )  # fmt: skip
    _end(runtime, clinic, old, 40)
    _end(runtime, clinic, failed, 31, TaskStatus.FAILED)
    _end(runtime, clinic, recent, 10)
    with runtime.pool.connection() as conn:  # (the waiting one was sent a year ago)
        conn.execute("UPDATE tasks SET created_at = now() - interval '1 year' WHERE id = %s",
                     (running,))  # fmt: skip
    # and, in the other account, a task that ended 40 days ago
    theirs = _task(client, other)
    _end(runtime, other, theirs, 40)
    trajectory = client.get(f"/tasks/{old}/trajectory", headers=clinic.headers).get_json()
    [shot] = [step["screenshot"]["url"] for step in trajectory["steps"]]
    assert client.get(shot, headers=clinic.headers).status_code == 200
    purged_before = metrics.TASKS_PURGED._value.get()

    # when the scheduler applies the retention
    report = retention.purge(runtime)

    # then the two past the clinic's 30 days are gone for the clinic, screenshot included
    assert report.tasks == 2
    assert _gone(client, clinic, old) and _gone(client, clinic, failed)
    assert client.get(f"/tasks/{old}/trajectory", headers=clinic.headers).status_code == 404
    assert client.get(shot, headers=clinic.headers).status_code == 404
    listed = client.get("/tasks", headers=clinic.headers).get_json()["data"]
    assert sorted(t["id"] for t in listed) == sorted([recent, running])
    # and nothing of theirs is left in any table
    doomed = [old, failed]
    for table in ("task_files", "artifacts", "trajectory_steps", "webhook_messages"):
        assert _count(runtime, f"{table} WHERE task_id = ANY(%s)", (doomed,)) == 0, table
    assert _count(runtime, "webhook_attempts") == 0
    # and the recent, the running and the other account's task (kept 90 days) are all there
    for account, task_id in ((clinic, recent), (clinic, running), (other, theirs)):
        assert not _gone(client, account, task_id)
    assert _count(runtime, "webhook_messages WHERE task_id = %s", (recent,)) == 1
    assert metrics.TASKS_PURGED._value.get() - purged_before == 2

    # and a second pass finds nothing more to do
    assert retention.purge(runtime) == retention.PurgeReport()


def test_the_purged_files_are_taken_off_their_accounts_stored_bytes(
    client, runtime, account, make_account
):
    # given two tasks with an 11-byte letter each, one past its retention, and another
    # account's task past its own
    other = make_account("Other clinic")
    _with_file(client, account)
    purged, theirs = _with_file(client, account), _with_file(client, other)
    _end(runtime, account, purged, 100)
    _end(runtime, other, theirs, 100)
    # when the retention runs, then each account's stored bytes are those of the files it keeps
    assert retention.purge(runtime).tasks == 2
    with runtime.pool.connection() as conn:
        stored = conn.execute(
            "SELECT account_id, file_bytes FROM account_storage ORDER BY account_id"
        ).fetchall()
    assert [(row["account_id"], row["file_bytes"]) for row in stored] == [
        (account.id, 11), (other.id, 0)
    ]  # fmt: skip


def test_a_batch_its_messages_stale_keys_and_sessions_go_too(client, runtime, account):
    # given a batch of two tasks that ended 100 days ago
    response = client.post(
        "/tasks/batch", json={"tasks": [ELIGIBILITY, ELIGIBILITY]}, headers=account.headers
    )
    assert response.status_code == 200, response.get_json()
    batch = response.get_json()
    for task in batch["data"]:
        _end(runtime, account, task["id"], 100)
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE task_batches SET finished_at = finished_at - interval '100 days' WHERE id = %s",
            (batch["batch_id"],),
        )
        # and a test message of no task, delivered 100 days ago
        conn.execute(
            "INSERT INTO webhook_messages (msg_id, account_id, event, payload, status,"
            " created_at) VALUES ('msg_ping', %s, 'ping', '{}', 'delivered',"
            " now() - interval '100 days')",
            (account.id,),
        )
        # and an idempotency key two days old, one from now, and a console session that expired
        conn.execute(
            "INSERT INTO idempotency_keys (account_id, key, request_digest, response_status,"
            " response_body, created_at) VALUES (%(a)s, 'old', 'd', 201, '{}', now() - interval"
            " '2 days'), (%(a)s, 'new', 'd', 201, '{}', now())",
            {"a": account.id},
        )
        token = users.invite_user(conn, account_id=account.id, email="op@clinic.test",
                                  role="operator", ttl_s=3600, limit=100)  # fmt: skip
        user = users.accept_invite(conn, token, "correct horse battery")
        users.start_session(conn, user.id, ttl_s=-1)
    assert _count(runtime, "webhook_messages WHERE task_id IS NULL") >= 1

    # when the scheduler applies the retention
    report = retention.purge(runtime)

    # then the batch is gone with its tasks, and the message; the fresh key stays
    assert (report.tasks, report.batches) == (2, 1)
    response = client.get(f"/batches/{batch['batch_id']}", headers=account.headers)
    assert response.status_code == 404
    assert _count(runtime, "webhook_messages") == 0
    with runtime.pool.connection() as conn:
        keys = conn.execute("SELECT key FROM idempotency_keys").fetchall()
    assert [k["key"] for k in keys] == ["new"]
    assert _count(runtime, "user_sessions") == 0
    # and the audit log still says who created the batch
    assert _count(runtime, "audit_log WHERE account_id = %s", (account.id,)) >= 1


def test_a_purge_with_nothing_due_reads_the_accounts_not_the_tasks_they_keep(
    client, runtime, account
):
    # given 20,000 tasks that ended yesterday (kept 90 days)
    _ended_long_ago(client, runtime, account, 20_000, days=1)

    # when the retention looks for tasks past their account's days
    found: list[int] = []
    read = rows_read_in(runtime, lambda conn: found.extend(
        row["id"] for row in conn.execute(retention._DUE_TASKS, {"limit": 500})
    ))  # fmt: skip

    # then there is none, and finding that out read none of the 20,000 (a scan of the table
    # reads 20,001; the bound leaves room for index entries the tests before left dead)
    assert found == []
    assert read <= 300, read


def test_a_lowered_retention_drains_over_transactions_of_a_bounded_size(client, runtime, account):
    # given 1,200 tasks that ended 10 days ago, and the account lowering its retention to 7 days
    _ended_long_ago(client, runtime, account, 1_200, days=10)
    put = client.put("/settings", json={"retention_days": 7}, headers=account.headers)
    assert put.status_code == 200

    # when the scheduler applies the retention while another transaction holds one of them
    with runtime.pool.connection() as held:
        held.execute("SELECT id FROM tasks WHERE task_number = 1001 FOR UPDATE")
        report = retention.purge(runtime)
        held.rollback()

    # then every other one is deleted, in three transactions, and the held one waits for the next
    assert report.tasks == 1199
    assert _count(runtime, "tasks WHERE account_id = %s", (account.id,)) == 2
    assert retention.purge(runtime).tasks == 1
    assert _count(runtime, "tasks WHERE status = 'completed'") == 0


def test_a_task_whose_webhook_is_being_delivered_waits_for_the_attempt(client, runtime, account):
    # given a task that ended 100 days ago whose task_finished message a dispatcher is sending
    task_id = _task(client, account)
    _end(runtime, account, task_id, 100)
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE webhook_messages SET locked_until = now() + interval '1 minute'"
            " WHERE task_id = %s",
            (task_id,),
        )

    # when the retention runs, the task stays until the attempt is over, then it goes
    assert retention.purge(runtime).tasks == 0
    assert not _gone(client, account, task_id)
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE webhook_messages SET locked_until = NULL WHERE task_id = %s", (task_id,)
        )
    assert retention.purge(runtime).tasks == 1
    assert _gone(client, account, task_id)


def _keeps_one_day_and_sends_to_a_receiver(client, account) -> None:
    settings = client.put("/settings", json={"retention_days": 1}, headers=account.headers)
    assert settings.status_code == 200, settings.get_json()
    put = client.put("/webhook-endpoint", json={"url": "http://127.0.0.1:9/down"},
                     headers=account.headers)  # fmt: skip
    assert put.status_code in (200, 201), put.get_json()


def test_a_task_whose_outcome_is_still_being_retried_waits_for_its_retries(
    client, runtime, account
):
    # given an endpoint that takes messages, down for hours: a task's outcome is still in its
    # retry schedule when the task passes the account's retention (1 day; the schedule runs
    # about 28 hours)
    _keeps_one_day_and_sends_to_a_receiver(client, account)
    task_id = _task(client, account)
    _end(runtime, account, task_id, 2)
    message = "webhook_messages WHERE task_id = %s AND status = 'pending'"
    assert _count(runtime, message, (task_id,)) == 1

    # when the retention runs, then the task and its message stay for the retries to come
    assert retention.purge(runtime).tasks == 0
    assert not _gone(client, account, task_id)
    [listed] = client.get("/webhooks/messages", headers=account.headers).get_json()["data"]
    assert (listed["status"], listed["held"]) == ("pending", False)

    # and once the schedule ended (given up) the task goes at the next pass
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE webhook_messages SET status = 'failed', failed_at = now() WHERE task_id = %s",
            (task_id,),
        )
    assert retention.purge(runtime).tasks == 1
    assert _gone(client, account, task_id)


def test_a_task_whose_outcome_the_account_holds_goes_at_its_retention(client, runtime, account):
    # given an endpoint the account disabled: its messages are held, not in a retry schedule
    _keeps_one_day_and_sends_to_a_receiver(client, account)
    assert client.put("/webhook-endpoint", json={"enabled": False},
                      headers=account.headers).status_code == 200  # fmt: skip
    task_id = _task(client, account)
    _end(runtime, account, task_id, 2)

    # when the retention runs (1 day), then the task goes with its held message
    assert retention.purge(runtime).tasks == 1
    assert _gone(client, account, task_id)
    assert _count(runtime, "webhook_messages WHERE task_id = %s", (task_id,)) == 0


def test_a_task_being_sent_again_keeps_its_files_until_the_retry_has_read_them(
    client, runtime, account
):
    # given a task with a file, past its retention, that a client sends again
    task_id = _with_file(client, account)
    _end(runtime, account, task_id, 100, TaskStatus.FAILED)
    with runtime.pool.connection() as conn:
        request = retries.retry_request(conn, runtime.fernet, task_id, account.id)

        # when the retention runs while the retry is still reading it, then it waits
        assert retention.purge(runtime).tasks == 0
        files = conn.execute("SELECT count(*) AS n FROM task_files WHERE task_id = %s",
                             (task_id,)).fetchone()["n"]  # fmt: skip
    # and the retry has the task's file, which was still there when it read it
    assert [name for name, _type, _content in request.files] == ["letter.pdf"] and files == 1
    assert retention.purge(runtime).tasks == 1


def _screenshots(conn, account_id: int, *, steps: int) -> None:
    """Give each of the account's tasks a screenshot, shown by ``steps`` trajectory steps."""
    conn.execute(
        "INSERT INTO artifacts (account_id, task_id, content_type, content)"
        " SELECT account_id, id, 'image/png', %s FROM tasks WHERE account_id = %s",
        (PNG, account_id),
    )
    conn.execute(
        """
        INSERT INTO trajectory_steps (task_id, attempt, seq, name, status, started_at,
                                      duration_ms, artifact_id)
        SELECT a.task_id, 1, g, 'step', 'ok', now(), 5, a.id
          FROM artifacts a CROSS JOIN generate_series(1, %s) AS g WHERE a.account_id = %s
        """,
        (steps, account_id),
    )


def test_deleting_tasks_reads_their_own_steps_not_the_whole_table(client, runtime, account):
    # given 500 tasks that ended 200 days ago and 500 that ended today, each with a screenshot
    # that 8 trajectory steps show
    _ended_long_ago(client, runtime, account, 1_000, days=200)
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE tasks SET completed_at = now() WHERE account_id = %s AND task_number > 1500",
            (account.id,),
        )
        _screenshots(conn, account.id, steps=8)

    # when one transaction of the purge deletes the 500 due
    deleted: list[int] = []
    read = rows_read_in(
        runtime, lambda conn: deleted.append(retention._purge_tasks(conn)), "trajectory_steps"
    )

    # then it read the 4,000 steps it deleted a few times each (the DELETE, and by index the
    # checks of the screenshots' and the tasks' foreign keys: 12,004), not the table's steps
    # once per screenshot (that check without an index: 500 scans, 2,012,000 rows)
    assert deleted == [500]
    assert read <= 5 * 4_000, read


def _account_messages(runtime, account, count: int, *, status: str, days: float) -> None:
    """``count`` webhook messages of no task (pings, ``batch.finished``), created ``days`` ago
    and, unless pending, ended then too; a pending one is due again in an hour."""
    with runtime.pool.connection() as conn:
        conn.execute(
            """
            INSERT INTO webhook_messages (msg_id, account_id, event, payload, status,
                                          created_at, delivered_at, failed_at, next_attempt_at)
            SELECT 'msg_' || md5(random()::text), %(account)s, 'ping', '{}', %(status)s,
                   now() - make_interval(days => %(days)s),
                   CASE WHEN %(status)s = 'delivered'
                        THEN now() - make_interval(days => %(days)s) END,
                   CASE WHEN %(status)s IN ('failed', 'aborted')
                        THEN now() - make_interval(days => %(days)s) END,
                   CASE WHEN %(status)s = 'pending' THEN now() + interval '1 hour' END
              FROM generate_series(1, %(count)s)
            """,
            {"account": account.id, "count": count, "status": status, "days": days},
        )
        conn.execute("ANALYZE webhook_messages")


def _statuses(runtime, account) -> list[tuple[str, int]]:
    """The account's messages of no task: (status, whole days since created), oldest first."""
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            "SELECT status, extract(day FROM now() - created_at)::int AS days"
            " FROM webhook_messages WHERE account_id = %s AND task_id IS NULL ORDER BY id",
            (account.id,),
        ).fetchall()
    return [(row["status"], row["days"]) for row in rows]


def test_account_messages_that_ended_in_any_way_are_purged_and_pending_ones_never(runtime, account):
    # given messages of no task that ended 100 days ago, delivered, failed and aborted by
    # their receiver, one still pending after 100 days, and one aborted yesterday
    for status in ("delivered", "failed", "aborted", "pending"):
        _account_messages(runtime, account, 1, status=status, days=100)
    _account_messages(runtime, account, 1, status="aborted", days=1)

    # when the scheduler applies the retention (90 days)
    report = retention.purge(runtime)

    # then every one that ended before the cutoff is gone, whatever its end; the pending one and
    # the recent one stay
    assert report.messages == 3
    assert _statuses(runtime, account) == [("pending", 100), ("aborted", 1)]


def test_the_message_purge_gets_past_old_messages_it_must_keep_in_bounded_batches(runtime, account):
    # given 600 messages still pending after 100 days (an endpoint disabled since), then 700
    # that were aborted 100 days ago
    _account_messages(runtime, account, 600, status="pending", days=100)
    _account_messages(runtime, account, 700, status="aborted", days=100)

    # when the scheduler applies the retention, twice
    first, second = retention.purge(runtime), retention.purge(runtime)

    # then the aborted ones go in the first pass, a transaction of 500 at a time, and the
    # pending ones stay
    assert (first.messages, second.messages) == (700, 0)
    assert _statuses(runtime, account) == [("pending", 100)] * 600


def test_finding_no_message_due_is_served_by_the_ended_messages_index(runtime, account):
    # given an account keeping 3,000 messages: 2,000 delivered yesterday, 1,000 pending for 100
    # days
    _account_messages(runtime, account, 1_000, status="pending", days=100)
    _account_messages(runtime, account, 2_000, status="delivered", days=1)

    # when the retention plans its look for messages past their account's days, a scan of the
    # whole table ruled out (on a table of a few thousand rows the planner's costs for it and
    # for the index are close, and one full run took the scan; a table many clinics share is
    # not so close)
    with runtime.pool.connection() as conn, conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        [row] = conn.execute(
            "EXPLAIN (FORMAT JSON) " + retention._DUE_MESSAGES, {"limit": 500}
        ).fetchall()
    scans = _scans(row["QUERY PLAN"][0]["Plan"])

    # then an index serves it, and it is the index of ended messages alone, one range per
    # account past its cutoff: never the messages kept, which the old window of an account's
    # 500 oldest read through the account's index
    assert scans == [("Index Scan", "webhook_messages_ended")], scans


def _scans(plan: dict) -> list[tuple[str, str | None]]:
    """The plan's scans of webhook_messages: (node type, index name)."""
    found = []
    if plan.get("Relation Name") == "webhook_messages":
        found.append((plan["Node Type"], plan.get("Index Name")))
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


def test_the_batch_purge_gets_past_old_batches_it_must_keep(runtime, account):
    # given 600 batches made 100 days ago and never finished (a task of each still waits for a
    # person), then 50 that finished 100 days ago
    with runtime.pool.connection() as conn:
        conn.execute(
            "INSERT INTO task_batches (account_id, size, unfinished, created_at, finished_at)"
            " SELECT %(a)s, 1, 1, now() - interval '100 days', NULL FROM generate_series(1, 600)"
            " UNION ALL SELECT %(a)s, 1, 0, now() - interval '100 days',"
            " now() - interval '100 days' FROM generate_series(1, 50)",
            {"a": account.id},
        )

    # when the scheduler applies the retention
    report = retention.purge(runtime)

    # then the finished ones go, and the unfinished ones stay (the purge used to look at the
    # account's 500 oldest batches only, all unfinished, and delete nothing, ever)
    assert report.batches == 50
    kept = _count(runtime, "task_batches WHERE account_id = %s", (account.id,))
    assert kept == 600


def _finished_batches(runtime, account, count: int, *, days: int) -> None:
    with runtime.pool.connection() as conn:
        conn.execute(
            "INSERT INTO task_batches (account_id, size, unfinished, created_at, finished_at)"
            " SELECT %(a)s, 1, 0, now() - make_interval(days => %(d)s),"
            " now() - make_interval(days => %(d)s) FROM generate_series(1, %(n)s)",
            {"a": account.id, "d": days, "n": count},
        )


def test_a_backlog_of_batches_and_account_messages_drains_in_one_pass(runtime, account):
    # given 1,100 batches that finished and 1,100 messages of no task that were delivered, all
    # 100 days ago (more than two transactions' worth of each)
    _finished_batches(runtime, account, 1_100, days=100)
    _account_messages(runtime, account, 1_100, status="delivered", days=100)

    # when the scheduler applies the retention once
    report = retention.purge(runtime)

    # then all of them go in that pass, as tasks do, not 500 of each (the rest an interval
    # later, ten minutes each)
    assert (report.batches, report.messages) == (1_100, 1_100)
    assert _count(runtime, "task_batches WHERE account_id = %s", (account.id,)) == 0
    assert _statuses(runtime, account) == []


def test_a_pass_deletes_batches_and_account_messages_within_its_budget(
    runtime, account, monkeypatch
):
    # given 1,100 finished batches and 1,100 delivered messages of no task, 100 days old, and a
    # pass allowed two transactions of each kind
    _finished_batches(runtime, account, 1_100, days=100)
    _account_messages(runtime, account, 1_100, status="delivered", days=100)
    monkeypatch.setattr(retention, "MAX_BATCHES_PER_CALL", 2)

    # when the scheduler applies the retention, twice
    first, second = retention.purge(runtime), retention.purge(runtime)

    # then the first pass stops at its budget of each, and the next one deletes the rest
    assert (first.batches, first.messages) == (1_000, 1_000)
    assert (second.batches, second.messages) == (100, 100)
    assert _count(runtime, "task_batches WHERE account_id = %s", (account.id,)) == 0
