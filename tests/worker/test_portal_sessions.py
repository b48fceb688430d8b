"""A portal's sessions per user (``max_sessions`` in its profile): an account's tasks beyond
the limit wait for a session instead of signing each other out (real Postgres; the whole path
with workers and browsers is in tests/e2e/test_portal_sessions.py)."""

from __future__ import annotations

import dataclasses

import pytest

from scheduler.loop import tick
from shared import tasks as task_queries
from shared.sop.profile import builtin_profile_text
from shared.tasks import TaskStatus

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


@pytest.fixture
def rt(runtime):
    # no re-sending of ordinary queued messages in these ticks: only the stranded waiters
    return dataclasses.replace(
        runtime, settings=runtime.settings.replace(pending_requeue_after_s=3600)
    )


def _post(client, account) -> int:
    response = client.post(
        "/tasks", json={"type": "check_eligibility", "data": JANE}, headers=account.headers
    )
    assert response.status_code == 200
    return response.get_json()["id"]


def _start(rt, task_id: int, worker: str, limit: int | None = 1) -> str | None:
    """What the worker does when it takes the task's message: claim, record the portal, and
    take a session (None: it runs; else the note of its wait)."""
    with rt.pool.connection() as conn:
        claimed = task_queries.claim_task(conn, task_id, worker, 30)
        assert claimed is not None and claimed["id"] == task_id
        task_queries.record_profile(conn, task_id, "sandbox", None, worker=worker)
        return task_queries.hold_session(conn, claimed, "sandbox", limit, worker=worker)


def _finish(rt, task_id: int, worker: str) -> None:
    with rt.pool.connection() as conn:
        assert task_queries.finish_task(conn, task_id, TaskStatus.COMPLETED, "done", worker=worker)


def _wake(rt, account, limit: int | None = 1) -> list[int]:
    with rt.pool.connection() as conn:
        return task_queries.wake_session_waiters(conn, account.id, "sandbox", limit)


def _row(rt, task_id: int) -> dict:
    with rt.pool.connection() as conn:
        return conn.execute(
            "SELECT status, enqueued_at, claimed_by, attempts, started_at FROM tasks WHERE id = %s",
            (task_id,),
        ).fetchone()


def test_a_task_past_the_limit_waits_for_a_session_and_says_so(rt, client, account):
    # given a portal with one session per user, and one of the account's tasks running on it
    first, second = _post(client, account), _post(client, account)
    assert _start(rt, first, "worker-a") is None
    # when a worker takes the account's next task
    held = _start(rt, second, "worker-b")
    # then it does not run: it waits for the session, unclaimed, with no message queued
    assert held is not None and "this account's tasks there hold 1" in held
    row = _row(rt, second)
    assert (row["status"], row["enqueued_at"], row["claimed_by"]) == (
        "waiting_for_session",
        None,
        None,
    )
    # and the client sees why, with the claim undone (no attempt, not started)
    task = client.get(f"/tasks/{second}", headers=account.headers).get_json()
    assert task["status"] == "waiting_for_session"
    assert "Waiting for a session on portal 'sandbox'" in task["notes"]
    assert "allows 1 per user" in task["notes"]
    assert (task["attempts"], task["startedAt"]) == (0, None)
    listed = client.get("/tasks?status=waiting_for_session", headers=account.headers).get_json()
    assert [t["id"] for t in listed["data"]] == [second]
    # and the worker, were its transaction run again after a lost answer, finds it not its own
    with rt.pool.connection() as conn:
        assert not task_queries.record_profile(conn, second, "sandbox", None, worker="worker-b")


def test_the_session_freed_goes_to_the_oldest_waiting_task(rt, client, account):
    # given one running task and two waiting for its session
    running, *waiting = [_post(client, account) for _ in range(3)]
    assert _start(rt, running, "worker-a") is None
    assert all(_start(rt, t, "worker-b") for t in waiting)
    # when nothing has ended, a wake sends nothing
    assert _wake(rt, account) == []
    # when the running task ends and lets its session go
    _finish(rt, running, "worker-a")
    # then the oldest waiting task is sent, its note cleared; the other keeps waiting
    assert _wake(rt, account) == [waiting[0]]
    task = client.get(f"/tasks/{waiting[0]}", headers=account.headers).get_json()
    assert (task["status"], task["notes"]) == ("pending", None)
    assert _row(rt, waiting[1])["status"] == "waiting_for_session"
    # and once it runs it takes the session like any other
    assert _start(rt, waiting[0], "worker-c") is None


def test_a_limit_of_two_runs_two_at_once(rt, client, account):
    tasks = [_post(client, account) for _ in range(3)]
    started = [_start(rt, t, f"worker-{i}", limit=2) for i, t in enumerate(tasks)]
    assert started[:2] == [None, None] and "hold 2" in started[2]
    # a profile that dropped its limit lets every waiting task go
    assert _wake(rt, account, limit=None) == [tasks[2]]


def test_other_accounts_and_portals_do_not_count(rt, client, make_account):
    mine, theirs = make_account("Mine"), make_account("Theirs")
    first, other_account = _post(client, mine), _post(client, theirs)
    assert _start(rt, first, "worker-a") is None
    assert _start(rt, other_account, "worker-b") is None
    # the same account on another portal is another user's session
    second = _post(client, mine)
    with rt.pool.connection() as conn:
        claimed = task_queries.claim_task(conn, second, "worker-c", 30)
        task_queries.record_profile(conn, second, "care_hub", None, worker="worker-c")
        assert task_queries.hold_session(conn, claimed, "care_hub", 1, worker="worker-c") is None


def test_a_task_waiting_for_a_session_can_be_canceled(rt, client, account):
    running, waiting = _post(client, account), _post(client, account)
    _start(rt, running, "worker-a")
    _start(rt, waiting, "worker-b")
    response = client.post(f"/tasks/{waiting}/cancel", headers=account.headers)
    assert response.status_code == 200
    assert response.get_json()["status"] == "canceled"
    _finish(rt, running, "worker-a")
    assert _wake(rt, account) == []


def test_a_task_canceled_before_it_took_a_session_runs_into_its_cancel(rt, client, account):
    # given a running task, and a second one claimed but canceled before it took a session
    running, second = _post(client, account), _post(client, account)
    _start(rt, running, "worker-a")
    with rt.pool.connection() as conn:
        claimed = task_queries.claim_task(conn, second, "worker-b", 30)
    assert client.post(f"/tasks/{second}/cancel", headers=account.headers).status_code == 202
    # when it asks for a session, then it does not wait: the run ends it as canceled
    with rt.pool.connection() as conn:
        task_queries.record_profile(conn, second, "sandbox", None, worker="worker-b")
        assert task_queries.hold_session(conn, claimed, "sandbox", 1, worker="worker-b") is None
    assert _row(rt, second)["status"] == "running"


def test_the_scheduler_sends_a_waiting_task_nobody_is_left_to_wake(rt, client, account):
    # given a task waiting for the session of a running task
    running, *waiting = [_post(client, account) for _ in range(3)]
    _start(rt, running, "worker-a")
    for task_id in waiting:
        _start(rt, task_id, "worker-b")
    # while that task runs, the scheduler leaves the waiting ones alone
    tick(rt)
    assert {_row(rt, t)["status"] for t in waiting} == {"waiting_for_session"}
    # when it ends without waking anyone (its worker died after the commit)
    _finish(rt, running, "worker-a")
    tick(rt)
    # then the scheduler sends the oldest waiting task, and only that one
    assert _row(rt, waiting[0])["status"] == "dispatching"
    assert _row(rt, waiting[1])["status"] == "waiting_for_session"
    # and while that one is queued it sends no other
    tick(rt)
    assert _row(rt, waiting[1])["status"] == "waiting_for_session"


def test_a_profile_with_more_sessions_sends_the_waiting_tasks_it_has_room_for(rt, client, account):
    # given one running task on a portal of one session per user, and two waiting for it
    running, *waiting = [_post(client, account) for _ in range(3)]
    assert _start(rt, running, "worker-a") is None
    assert all(_start(rt, t, "worker-b") for t in waiting)

    # when the account stores a profile that allows two sessions
    profile = builtin_profile_text("sandbox") + "max_sessions: 2\n"
    stored = client.put("/portals/sandbox/profile", json={"profile": profile},
                        headers=account.headers)  # fmt: skip
    assert stored.status_code == 201, stored.get_json()

    # then the oldest waiting task goes at once, not when the running one ends
    assert [_row(rt, t)["status"] for t in waiting] == ["dispatching", "waiting_for_session"]

    # and going back to the built-in profile (no limit) sends the other
    reverted = client.delete("/portals/sandbox/profile", headers=account.headers)
    assert reverted.status_code == 200, reverted.get_json()
    assert _row(rt, waiting[1])["status"] == "dispatching"
