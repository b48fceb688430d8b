"""A task paused for review waits until its deadline (the account's ``review_timeout_hours``
after it paused); undecided by then, the scheduler ends it as a rejection does, and the client
hears of it by the usual webhook."""

from __future__ import annotations

from scheduler.loop import tick
from shared import review
from tests.api.test_review_api import _messages, _paused_task
from tests.plans import rows_read_in


def _move_back(runtime, task_id: int, hours: float) -> None:
    """As if the task had paused ``hours`` earlier than it did."""
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE tasks SET review_requested_at ="
            " review_requested_at - make_interval(hours => %(h)s),"
            " review_expires_at = review_expires_at - make_interval(hours => %(h)s)"
            " WHERE id = %(id)s",
            {"h": hours, "id": task_id},
        )


def _finished_messages(runtime, task_id: int) -> list[dict]:
    return [m for m in _messages(runtime, task_id) if m["event"] == "task_finished"]


def test_a_review_nobody_decides_ends_at_its_deadline_with_nothing_submitted(
    runtime, client, account
):
    # given an account that gives a review 2 hours, and two claims paused for review: one 3
    # hours ago, one 1 hour ago
    put = client.put("/settings", json={"review_timeout_hours": 2}, headers=account.headers)
    assert put.status_code == 200 and put.get_json()["review_timeout_hours"] == 2
    late, waiting = _paused_task(runtime, client, account), _paused_task(runtime, client, account)
    _move_back(runtime, late, 3)
    _move_back(runtime, waiting, 1)

    # when the scheduler ticks
    report = tick(runtime)

    # then the late one ended as nobody's rejection, saying why and what to do, with its webhook
    assert report.reviews_expired == 1
    task = client.get(f"/tasks/{late}", headers=account.headers).get_json()
    assert task["status"] == "completed_with_issues" and task["completedAt"]
    assert task["notes"].startswith("Not reviewed within 2 hours")
    assert "nothing was submitted" in task["notes"] and f"POST /tasks/{late}/retry" in task["notes"]
    assert (task["review"]["decision"], task["review"]["reviewer"]) == ("expired", None)
    [message] = _finished_messages(runtime, late)
    assert message["payload"]["review"]["decision"] == "expired"
    # and the other one still waits, until the deadline it shows
    other = client.get(f"/tasks/{waiting}", headers=account.headers).get_json()
    assert other["status"] == "pending_review" and other["review"]["expires_at"]
    assert _finished_messages(runtime, waiting) == []
    # and a decision on the late one comes too late, while sending it again fills it anew
    decide = client.post(f"/tasks/{late}/review", json={"decision": "approve"},
                         headers=account.headers)  # fmt: skip
    assert decide.status_code == 409
    again = client.post(f"/tasks/{late}/retry", headers=account.headers)
    assert again.status_code == 200 and again.get_json()["retry_of"] == late


def test_a_paused_task_shows_its_deadline_from_the_accounts_setting(runtime, client, account):
    # given the default setting, then 12 hours
    assert (
        client.get("/settings", headers=account.headers).get_json()["review_timeout_hours"] == 168
    )
    week = _paused_task(runtime, client, account)
    client.put("/settings", json={"review_timeout_hours": 12}, headers=account.headers)
    half_day = _paused_task(runtime, client, account)

    # when the paused tasks are read
    shown = {
        task_id: client.get(f"/tasks/{task_id}", headers=account.headers).get_json()["review"]
        for task_id in (week, half_day)
    }

    # then each deadline is its pause plus the hours set when it paused
    with runtime.pool.connection() as conn:
        hours = {
            row["id"]: row["hours"]
            for row in conn.execute(
                "SELECT id, EXTRACT(EPOCH FROM review_expires_at - review_requested_at) / 3600"
                " AS hours FROM tasks WHERE id = ANY(%s)",
                ([week, half_day],),
            )
        }
    assert hours == {week: 168, half_day: 12}
    assert all(review["expires_at"] > review["requested_at"] for review in shown.values())


def test_finding_the_reviews_past_their_deadline_reads_only_those(runtime, client, account):
    # given 3,000 tasks paused for review within their deadline, and one past it
    late = _paused_task(runtime, client, account)
    _move_back(runtime, late, 200)
    with runtime.pool.connection() as conn:
        conn.execute(
            """
            INSERT INTO tasks (account_id, task_number, type, status, title, instructions, sop_id,
                               data, review_step, review_requested_at, review_expires_at)
            SELECT %s, 1000 + g, 'submit_claim', 'pending_review', 't', 'i',
                   (SELECT min(id) FROM sops), 'x', 'Submit', now(), now() + interval '1 day'
              FROM generate_series(1, 3000) AS g
            """,
            (account.id,),
        )
        conn.execute("ANALYZE tasks")

    # when the scheduler ends the reviews past their deadline
    ended: list[int] = []
    read = rows_read_in(runtime, lambda conn: ended.append(review.expire_due(conn)))

    # then it ended the one, and read a few rows for it, not the 3,000 waiting
    assert ended == [1]
    assert read <= 50, read


def test_a_review_paused_by_a_worker_of_the_previous_release_gets_its_deadline(
    runtime, client, account
):
    # given, during a rolling upgrade (the migrations ran, a worker of the previous release
    # still runs), two claims that worker paused for review: it knows no deadline, so it
    # wrote none. One paused 200 hours ago, one just now
    late, recent = _paused_task(runtime, client, account), _paused_task(runtime, client, account)
    _move_back(runtime, late, 200)
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE tasks SET review_expires_at = NULL WHERE id = ANY(%s)", ([late, recent],)
        )

    # when the scheduler ticks
    report = tick(runtime)

    # then each has the account's deadline from when it paused (168 hours by default): the
    # one past it ended as any undecided review does, the other waits and shows its deadline
    assert report.reviews_expired == 1
    ended = client.get(f"/tasks/{late}", headers=account.headers).get_json()
    assert ended["status"] == "completed_with_issues"
    assert ended["notes"].startswith("Not reviewed within 168 hours")
    assert [m["payload"]["status"] for m in _finished_messages(runtime, late)] == [
        "completed_with_issues"
    ]
    waiting = client.get(f"/tasks/{recent}", headers=account.headers).get_json()
    assert waiting["status"] == "pending_review" and waiting["review"]["expires_at"]
