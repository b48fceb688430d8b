"""Human review and waiting for input, end to end: the API, the worker with real Chromium on the
sandbox portal, the database, and webhook deliveries to real receivers.

The worker is ``runner.run_task`` called in the test (as the Celery task calls it); deliveries
are the scheduler's claim and the dispatcher's delivery, run in the test's thread.
"""

from __future__ import annotations

import json

import pytest

from cli.local import SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET, SANDBOX_USERNAME
from shared import totp
from shared.accounts import Credentials, put_credentials
from shared.sop.library import builtin_sop_text
from tests.dispatcher.support import drive, served_receiver
from tests.worker.support import sandbox_runtime, submissions
from tests.worker.test_runner import _run_in_background
from worker import runner

pytestmark = pytest.mark.browser

CLAIM = (
    "member_id: W100000001\npatient: Jane Doe\ndob: 1990-01-15\nprovider_npi: 1234567893\n"
    "line 1: 99213, J06.9, 125.00, 2025-03-20"
)
JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"
# The built-in claim SOP with a review point just before its irreversible submit.
REVIEWED_CLAIM_SOP = builtin_sop_text("submit_claim").replace(
    "  - name: Submit the claim\n",
    "  - name: Check the claim\n"
    '    review: "{{ service_lines | length }} line(s) for {{ patient }}"\n'
    "  - name: Submit the claim\n",
)
ALL_EVENTS = ["task_finished", "task.waiting_for_input", "task.pending_review"]


@pytest.fixture
def rt(runtime, sandbox_url):
    return sandbox_runtime(runtime, sandbox_url, input_timeout_s=30.0)


@pytest.fixture
def receivers():
    """Two webhook receivers: a reference client's and one that opts in to every event."""
    with served_receiver() as plain, served_receiver() as opted:
        yield plain, opted


def _opt_in(client, account) -> None:
    response = client.put(
        "/webhook-endpoint", json={"filter_types": ALL_EVENTS}, headers=account.headers
    )
    assert response.status_code == 200 and response.get_json()["filter_types"] == ALL_EVENTS


def _create(client, account, task_type: str, data: str) -> int:
    response = client.post(
        "/tasks", json={"type": task_type, "data": data}, headers=account.headers
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["id"]


def _task(client, account, task_id: int) -> dict:
    return client.get(f"/tasks/{task_id}", headers=account.headers).get_json()


def _steps(client, account, task_id: int) -> list[dict]:
    return client.get(f"/tasks/{task_id}/trajectory", headers=account.headers).get_json()["steps"]


def _events(receiver) -> list[tuple[str, str]]:
    """(event, data.status) of every message the receiver got, in order."""
    bodies = [json.loads(r.body) for r in receiver.received]
    return [(b["event"], b["data"].get("status")) for b in bodies]


def _deliver_all(rt) -> None:
    def settled() -> bool:
        with rt.pool.connection() as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM webhook_messages WHERE status = 'pending'"
            ).fetchone()
        return row["n"] == 0

    drive(rt, settled)


def test_a_review_step_pauses_with_a_screenshot_and_an_approval_submits_once(
    rt, client, make_account, browsers, sandbox_url, receivers
):
    # given an account whose claim SOP has a review step, and whose endpoint opts in to events
    plain, opted = receivers
    account = make_account(webhook_url=opted.url)
    _opt_in(client, account)
    response = client.put(
        "/sops/submit_claim",
        data=REVIEWED_CLAIM_SOP.encode(),
        headers={**account.headers, "Content-Type": "application/yaml"},
    )
    assert response.status_code in (200, 201), response.get_json()
    task_id = _create(client, account, "submit_claim", CLAIM)

    # when the worker runs it
    runner.run_task(rt, task_id, browsers=browsers)

    # then it is pending_review, released, with nothing submitted
    task = _task(client, account, task_id)
    assert task["status"] == "pending_review", task["notes"]
    assert task["review"]["step"] == "Check the claim" and task["review"]["decision"] is None
    assert f"POST /tasks/{task_id}/review" in task["notes"]
    assert submissions(sandbox_url)["claims"] == []
    with rt.pool.connection() as conn:
        held = conn.execute(
            "SELECT claimed_by, lease_expires_at FROM tasks WHERE id = %s", (task_id,)
        ).fetchone()
    assert held == {"claimed_by": None, "lease_expires_at": None}
    # and its trajectory ends with the review point and a screenshot of the filled form
    review_step = _steps(client, account, task_id)[-1]
    assert "Check the claim" in review_step["name"]
    assert "1 line(s) for Jane Doe" in review_step["message"]
    shot = client.get(review_step["screenshot"]["url"], headers=account.headers)
    assert shot.status_code == 200 and shot.data.startswith(b"\x89PNG")
    # and the opted-in endpoint was told
    _deliver_all(rt)
    assert _events(opted) == [("task.pending_review", "pending_review")]

    # when a person approves it and the worker takes it again
    response = client.post(
        f"/tasks/{task_id}/review",
        json={"decision": "approve", "note": "Codes checked", "reviewer": "Dana"},
        headers=account.headers,
    )
    assert response.status_code == 200 and response.get_json()["status"] == "pending"
    runner.run_task(rt, task_id, browsers=browsers)

    # then the claim was submitted exactly once and the task completed
    task = _task(client, account, task_id)
    assert task["status"] == "completed", task["notes"]
    [claim] = submissions(sandbox_url)["claims"]
    assert claim["reference"] in task["notes"]
    assert task["review"]["decision"] == "approved" and task["review"]["note"] == "Codes checked"
    # and the second attempt passed the review point, saying who approved it
    passed = [s for s in _steps(client, account, task_id) if "Check the claim" in s["name"]]
    assert [s["attempt"] for s in passed] == [1, 2]
    assert passed[1]["message"].startswith("Approved by Dana (API key ")
    _deliver_all(rt)
    assert _events(opted) == [
        ("task.pending_review", "pending_review"),
        ("task_finished", "completed"),
    ]
    assert plain.received == []


def test_required_review_pauses_the_builtin_sop_and_a_rejection_submits_nothing(
    rt, client, make_account, browsers, sandbox_url, receivers
):
    # given a reference client's account (default filter) that requires review for claims
    plain, _ = receivers
    account = make_account(webhook_url=plain.url)
    response = client.put(
        "/settings", json={"review_required_types": ["submit_claim"]}, headers=account.headers
    )
    assert response.status_code == 200
    task_id = _create(client, account, "submit_claim", CLAIM)

    # when the worker runs it with the built-in SOP (which has no review step)
    runner.run_task(rt, task_id, browsers=browsers)

    # then it paused before the irreversible submit, with a screenshot of the last wizard page
    task = _task(client, account, task_id)
    assert task["status"] == "pending_review"
    assert task["review"]["step"] == "Submit the claim"
    last = _steps(client, account, task_id)[-1]
    assert "Review before: Submit the claim" in last["name"] and last["screenshot"]
    assert submissions(sandbox_url)["claims"] == []

    # when a person rejects it
    response = client.post(
        f"/tasks/{task_id}/review",
        json={"decision": "reject", "note": "Wrong diagnosis code"},
        headers=account.headers,
    )

    # then it ended completed_with_issues with the note, and nothing reached the payer
    assert response.status_code == 200
    task = _task(client, account, task_id)
    assert task["status"] == "completed_with_issues"
    assert "Wrong diagnosis code" in task["notes"]
    assert submissions(sandbox_url)["claims"] == []
    # and a worker that gets a late message for it does nothing
    runner.run_task(rt, task_id, browsers=browsers)
    assert submissions(sandbox_url)["claims"] == []
    # and the reference client got exactly what it always gets: one task_finished
    _deliver_all(rt)
    assert _events(plain) == [("task_finished", "completed_with_issues")]
    body = json.loads(plain.received[0].body)
    assert body["data"]["notes"] == task["notes"]


def test_waiting_for_input_says_what_it_waits_for_and_raises_the_opt_in_event(
    rt, client, make_account, browsers, receivers
):
    # given an account without a TOTP secret, whose endpoint opts in to every event
    _, opted = receivers
    account = make_account(webhook_url=opted.url, sandbox=False)
    with rt.pool.connection() as conn:
        creds = Credentials(SANDBOX_USERNAME, SANDBOX_PASSWORD, None)
        put_credentials(conn, rt.fernet, account.id, "sandbox", creds)
    _opt_in(client, account)
    task_id = _create(client, account, "check_eligibility", JANE)

    # when the portal asks for a one-time code
    worker = _run_in_background(rt, task_id, browsers, until="waiting_for_input")
    try:
        # then the task says what it waits for and until when
        task = _task(client, account, task_id)
        assert task["status"] == "waiting_for_input"
        request = task["input_request"]
        assert request["kind"] == "one_time_code" and request["submit"].endswith("/input")
        assert request["expires_at"] > request["requested_at"]
        assert "one-time code" in task["notes"] and request["expires_at"] in task["notes"]
        # and a step in its trajectory says so too
        assert any(
            "Waiting for a one-time code" in s["name"] for s in _steps(client, account, task_id)
        )
        # and the opted-in endpoint received the event, carrying the task
        _deliver_all(rt)
        [(event, status)] = _events(opted)
        assert (event, status) == ("task.waiting_for_input", "waiting_for_input")
    finally:
        code = totp.code(SANDBOX_TOTP_SECRET)
        client.post(f"/tasks/{task_id}/input", json={"code": code}, headers=account.headers)
        worker.join(timeout=60)

    # when the code came, the task went on and its notes are its outcome again
    task = _task(client, account, task_id)
    assert task["status"] == "completed" and "Sandbox Gold PPO" in task["notes"]
    assert task["input_request"] is None
