"""POST /tasks/{id}/review, GET/PUT /settings, and the endpoint's event filter, on the API alone.

A task is put in ``pending_review`` with the worker's own queries (claim, then pause at a review
point), so these tests need no browser; tests/worker/test_review.py runs the whole thing with
Chromium on the sandbox portal.
"""

from __future__ import annotations

import pytest

from shared import tasks as task_queries

CLAIM = (
    "member_id: W100000001\npatient: Jane Doe\ndob: 1990-01-15\nprovider_npi: 1234567893\n"
    "line 1: 99213, J06.9, 125.00, 2025-03-20"
)


def _create(client, account) -> int:
    response = client.post(
        "/tasks", json={"type": "submit_claim", "data": CLAIM}, headers=account.headers
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["id"]


def _pause_for_review(runtime, task_id: int) -> None:
    """What the worker does when the SOP reaches a review point."""
    with runtime.pool.connection() as conn:
        assert task_queries.claim_task(conn, task_id, "test-worker", 30.0) is not None
        assert task_queries.await_review(
            conn, task_id, "test-worker", step="Submit the claim", note="Waiting for review."
        )


def _paused_task(runtime, client, account) -> int:
    task_id = _create(client, account)
    _pause_for_review(runtime, task_id)
    return task_id


def _messages(runtime, task_id: int) -> list[dict]:
    with runtime.pool.connection() as conn:
        return conn.execute(
            "SELECT event, payload FROM webhook_messages WHERE task_id = %s ORDER BY id",
            (task_id,),
        ).fetchall()


def test_a_paused_task_shows_pending_review_and_its_review_point(runtime, client, account):
    # given a task paused at its review point
    task_id = _paused_task(runtime, client, account)

    # when it is read
    task = client.get(f"/tasks/{task_id}", headers=account.headers).get_json()

    # then it is pending_review, released by its worker, with what it waits for
    assert task["status"] == "pending_review"
    assert task["review"]["step"] == "Submit the claim"
    assert task["review"]["requested_at"] and task["review"]["decision"] is None
    with runtime.pool.connection() as conn:
        row = conn.execute(
            "SELECT claimed_by, lease_expires_at FROM tasks WHERE id = %s", (task_id,)
        ).fetchone()
    assert row == {"claimed_by": None, "lease_expires_at": None}


def test_approve_records_who_and_when_and_puts_the_task_back_in_line(runtime, client, account):
    # given a paused task
    task_id = _paused_task(runtime, client, account)

    # when it is approved with a note
    response = client.post(
        f"/tasks/{task_id}/review",
        json={"decision": "approve", "note": "Codes checked", "reviewer": "Dana"},
        headers=account.headers,
    )

    # then the answer is the task, queued again, with the decision on it
    assert response.status_code == 200, response.get_json()
    task = response.get_json()
    assert task["status"] == "pending"
    review = task["review"]
    assert review["decision"] == "approved" and review["note"] == "Codes checked"
    assert review["reviewer"] == f"Dana (API key {account.api_key[:15]})"
    assert review["decided_at"] is not None
    # and its message was sent to the workers after the commit
    stored = client.get(f"/tasks/{task_id}", headers=account.headers).get_json()
    assert stored["status"] == "dispatching" and stored["review"] == review
    # and nothing was sent to the client's endpoint: the task has not finished
    assert _messages(runtime, task_id) == []


def test_reject_ends_the_task_with_the_note_and_fires_task_finished(runtime, client, account):
    # given a paused task
    task_id = _paused_task(runtime, client, account)

    # when it is rejected
    response = client.post(
        f"/tasks/{task_id}/review",
        json={"decision": "reject", "note": "Wrong CPT code on line 1"},
        headers=account.headers,
    )

    # then it ended completed_with_issues, the notes carrying the reviewer's note
    assert response.status_code == 200
    task = response.get_json()
    assert task["status"] == "completed_with_issues" and task["completedAt"]
    assert "Wrong CPT code on line 1" in task["notes"] and "Rejected in review" in task["notes"]
    assert task["review"]["decision"] == "rejected"
    # and task_finished was written, as for any final status, carrying the same task
    [message] = _messages(runtime, task_id)
    assert message["event"] == "task_finished"
    assert message["payload"]["status"] == "completed_with_issues"
    assert message["payload"]["notes"] == task["notes"]


def test_review_of_a_task_that_is_not_pending_review_is_409(runtime, client, account):
    # given a queued task, and a paused one that was already decided
    queued = _create(client, account)
    decided = _paused_task(runtime, client, account)
    body = {"decision": "reject"}
    response = client.post(f"/tasks/{decided}/review", json=body, headers=account.headers)
    assert response.status_code == 200

    for task_id, status in ((queued, "dispatching"), (decided, "completed_with_issues")):
        # when someone reviews it
        response = client.post(
            f"/tasks/{task_id}/review", json={"decision": "approve"}, headers=account.headers
        )
        # then it is a 409 in the one error shape, naming the status; nothing changed
        assert response.status_code == 409
        assert response.get_json()["error"] == {
            "code": "not_pending_review",
            "message": f"The task is {status}, not pending review.",
            "details": {"status": status},
        }
    assert client.get(f"/tasks/{queued}", headers=account.headers).get_json()["review"] is None


def test_another_accounts_task_is_a_404(runtime, client, account, make_account):
    task_id = _paused_task(runtime, client, account)
    other = make_account("Other Clinic")
    response = client.post(
        f"/tasks/{task_id}/review", json={"decision": "approve"}, headers=other.headers
    )
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    task = client.get(f"/tasks/{task_id}", headers=account.headers).get_json()
    assert task["status"] == "pending_review"


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "decision"),
        ({"decision": "maybe"}, "decision"),
        ({"decision": "approve", "note": "x" * 2001}, "note"),
        ({"decision": "approve", "decison": "reject"}, "decison"),
    ],
)
def test_a_malformed_decision_is_a_422_naming_the_field(runtime, client, account, body, field):
    task_id = _paused_task(runtime, client, account)
    response = client.post(f"/tasks/{task_id}/review", json=body, headers=account.headers)
    assert response.status_code == 422
    assert field in {d["field"] for d in response.get_json()["error"]["details"]}
    task = client.get(f"/tasks/{task_id}", headers=account.headers).get_json()
    assert task["status"] == "pending_review"


def test_cancel_of_a_paused_task_ends_it_at_once(runtime, client, account):
    task_id = _paused_task(runtime, client, account)
    response = client.post(f"/tasks/{task_id}/cancel", headers=account.headers)
    assert response.status_code == 200 and response.get_json()["status"] == "canceled"


def test_the_pending_review_event_goes_only_to_an_endpoint_that_asked_for_it(
    runtime, client, make_account
):
    # given two accounts: one whose endpoint kept the default filter, one that opted in
    default = make_account("Reference Client", webhook_url="http://127.0.0.1:9/hook")
    opted = make_account("Careful Billing", webhook_url="http://127.0.0.1:9/hook")
    answer = client.get("/webhook-endpoint", headers=default.headers).get_json()
    assert answer["filter_types"] == ["task_finished"]
    response = client.put(
        "/webhook-endpoint",
        json={"filter_types": ["task_finished", "task.pending_review"]},
        headers=opted.headers,
    )
    assert response.status_code == 200
    assert response.get_json()["filter_types"] == ["task_finished", "task.pending_review"]

    # when a task of each pauses for review
    plain_task = _paused_task(runtime, client, default)
    opted_task = _paused_task(runtime, client, opted)

    # then only the opted-in endpoint has a task.pending_review message, carrying the task
    assert _messages(runtime, plain_task) == []
    [message] = _messages(runtime, opted_task)
    assert message["event"] == "task.pending_review"
    assert message["payload"]["status"] == "pending_review"
    assert message["payload"]["review"]["step"] == "Submit the claim"


@pytest.mark.parametrize(
    "filter_types", [[], ["task.finished"], ["ping"], "task_finished", ["task_finished"] * 9]
)
def test_an_unknown_or_empty_event_filter_is_a_422(client, account, filter_types):
    response = client.put(
        "/webhook-endpoint", json={"filter_types": filter_types}, headers=account.headers
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_failed"


def test_settings_require_review_for_chosen_types(client, account):
    # given a new account: nothing requires review (a paused task would wait 7 days), and
    # ended tasks are kept 90 days
    assert client.get("/settings", headers=account.headers).get_json() == {
        "review_required_types": [],
        "review_timeout_hours": 168,
        "retention_days": 90,
    }

    # when claims are made to require review
    response = client.put(
        "/settings", json={"review_required_types": ["submit_claim"]}, headers=account.headers
    )

    # then the setting is stored
    assert response.status_code == 200
    assert response.get_json() == {
        "review_required_types": ["submit_claim"], "review_timeout_hours": 168, "retention_days": 90
    }  # fmt: skip
    assert client.get("/settings", headers=account.headers).get_json() == {
        "review_required_types": ["submit_claim"],
        "review_timeout_hours": 168,
        "retention_days": 90,
    }

    # and setting the retention alone leaves the review types as they were
    response = client.put("/settings", json={"retention_days": 30}, headers=account.headers)
    assert response.status_code == 200
    assert response.get_json() == {
        "review_required_types": ["submit_claim"], "review_timeout_hours": 168, "retention_days": 30
    }  # fmt: skip


@pytest.mark.parametrize(
    "body, field, message",
    [
        ({}, None, "name at least one setting"),
        ({"retention_days": 0}, "retention_days", "days from 1 to 3650"),
        ({"retention_days": 3651}, "retention_days", "days from 1 to 3650"),
        ({"retention_days": "30"}, "retention_days", "Not a valid integer"),
        ({"retention_days": None}, "retention_days", "Field may not be null"),
        ({"retention_day": 30}, "retention_day", "Unknown field"),
        ({"review_timeout_hours": 0}, "review_timeout_hours", "hours from 1 to 2160"),
        ({"review_timeout_hours": 2161}, "review_timeout_hours", "hours from 1 to 2160"),
        ({"review_timeout_hours": True}, "review_timeout_hours", "Not a valid integer"),
    ],
)
def test_settings_refuse_a_number_out_of_range(client, account, body, field, message):
    response = client.put("/settings", json=body, headers=account.headers)
    assert response.status_code == 422
    [detail] = response.get_json()["error"]["details"]
    assert detail["field"] == field and message in detail["message"], detail
    stored = client.get("/settings", headers=account.headers).get_json()
    assert (stored["retention_days"], stored["review_timeout_hours"]) == (90, 168)


@pytest.mark.parametrize(
    "types, message",
    [
        (["teleport"], "unknown task type"),
        (["check_eligibility"], "nothing would be held for review"),
    ],
)
def test_settings_refuse_a_type_with_nothing_to_review(client, account, types, message):
    response = client.put(
        "/settings", json={"review_required_types": types}, headers=account.headers
    )
    assert response.status_code == 422
    [detail] = response.get_json()["error"]["details"]
    assert detail["field"] == "review_required_types.0" and message in detail["message"]
    assert (
        client.get("/settings", headers=account.headers).get_json()["review_required_types"] == []
    )


def test_a_cancel_that_lands_just_before_the_review_pause_ends_the_task_canceled(
    runtime, client, account
):
    """Found by a concurrency audit: a cancel sent after the engine's last check before a review
    point, and before the worker released the task, answered 202, yet the task paused in
    pending_review; approved, it was queued with its cancel still asked, so no worker ever took
    it and it stayed ``dispatching`` with no webhook."""
    from worker.runner import _pause_for_review as worker_pauses

    # given a running task (the worker is recording its review point's screenshot)
    task_id = _create(client, account)
    with runtime.pool.connection() as conn:
        assert task_queries.claim_task(conn, task_id, "test-worker", 30.0) is not None
    # when the client cancels it then
    response = client.post(f"/tasks/{task_id}/cancel", headers=account.headers)
    assert response.status_code == 202
    # and the worker goes on to pause it for review
    worker_pauses(runtime, task_id, "test-worker", "Submit the claim")
    # then it did not pause: it ended canceled, as the 202 said, with its webhook
    task = client.get(f"/tasks/{task_id}", headers=account.headers).get_json()
    assert task["status"] == "canceled"
    assert [m["event"] for m in _messages(runtime, task_id)] == ["task_finished"]
    # and there is nothing left to approve
    response = client.post(
        f"/tasks/{task_id}/review", json={"decision": "approve"}, headers=account.headers
    )
    assert response.status_code == 409


def test_a_task_given_back_for_a_shortage_after_a_cancel_is_not_left_pending(
    runtime, client, account
):
    """Found by a concurrency audit (by reading): a worker short of name lookup threads gave its
    task back to ``pending`` even when a cancel had been asked meanwhile; no worker takes such a
    task and the scheduler never sends it again, so it would have stayed pending for good."""
    task_id = _create(client, account)
    with runtime.pool.connection() as conn:
        assert task_queries.claim_task(conn, task_id, "test-worker", 30.0) is not None
    assert client.post(f"/tasks/{task_id}/cancel", headers=account.headers).status_code == 202
    with runtime.pool.connection() as conn:
        assert not task_queries.give_back(conn, task_id, "test-worker")
        status = conn.execute("SELECT status FROM tasks WHERE id = %s", (task_id,)).fetchone()
    assert status["status"] == "running"  # still the worker's, to end as canceled
