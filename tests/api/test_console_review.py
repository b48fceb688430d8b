"""The console's review form calls shared.review.decide: approve, reject, 404 and 409."""

from __future__ import annotations

from tests.api.test_console import audit_rows, make_user, page_token, sign_in
from tests.api.test_review_api import _paused_task


def test_an_operator_approves_one_task_and_rejects_another(runtime, app, client, account):
    # given two tasks paused for review, and an operator signed in to the console
    make_user(runtime, account.id, "o@c.test", "operator")
    operator = app.test_client()
    sign_in(operator, "o@c.test")
    approved, rejected = (_paused_task(runtime, client, account) for _ in range(2))

    # when the operator approves one and rejects the other with a note
    for task_id, form in (
        (approved, {"decision": "approve"}),
        (rejected, {"decision": "reject", "note": "Wrong payer"}),
    ):
        form["csrf_token"] = page_token(operator)
        answer = operator.post(f"/console/tasks/{task_id}/review", data=form)
        assert answer.status_code == 303

    # then the approved one is queued again, recorded as the operator's decision
    task = client.get(f"/tasks/{approved}", headers=account.headers).json
    assert task["status"] == "dispatching"
    assert task["review"]["decision"] == "approved" and task["review"]["reviewer"] == "o@c.test"
    # and the rejected one ended with the note
    task = client.get(f"/tasks/{rejected}", headers=account.headers).json
    assert task["status"] == "completed_with_issues" and "Wrong payer" in task["notes"]
    decided = {
        ("task.review.approve", f"task:{approved}"),
        ("task.review.reject", f"task:{rejected}"),
    }
    assert decided <= {(r["action"], r["target"]) for r in audit_rows(runtime)}

    # and deciding again is a 409, a missing task a 404
    again = operator.post(
        f"/console/tasks/{rejected}/review",
        data={"decision": "approve", "csrf_token": page_token(operator)},
    )
    assert again.status_code == 409
    missing = operator.post(
        "/console/tasks/999999/review",
        data={"decision": "approve", "csrf_token": page_token(operator)},
    )
    assert missing.status_code == 404


def test_a_note_longer_than_the_api_takes_is_refused_and_nothing_is_decided(
    runtime, app, client, account
):
    # given a task paused for review, and an operator signed in to the console
    make_user(runtime, account.id, "o@c.test", "operator")
    operator = app.test_client()
    sign_in(operator, "o@c.test")
    task_id = _paused_task(runtime, client, account)

    # when the operator rejects it with a note over the 2,000 characters the API takes
    answer = operator.post(
        f"/console/tasks/{task_id}/review",
        data={"decision": "reject", "note": "x" * 2001, "csrf_token": page_token(operator)},
    )

    # then the page says so (the decision was recorded with the note cut, and the audit log
    # held the whole of it), and the task still waits for a decision
    assert answer.status_code == 422 and "2000 characters" in answer.text
    task = client.get(f"/tasks/{task_id}", headers=account.headers).json
    assert task["status"] == "pending_review"
    assert "task.review.reject" not in {r["action"] for r in audit_rows(runtime)}


def test_a_decision_or_a_code_sent_from_a_page_overtaken_meanwhile_says_why_it_was_refused(
    runtime, app, client, account
):
    # given a task paused for review, and two operators with its page open
    task_id = _paused_task(runtime, client, account)
    first, second = app.test_client(), app.test_client()
    for browser, email in ((first, "a@c.test"), (second, "b@c.test")):
        make_user(runtime, account.id, email, "operator")
        sign_in(browser, email)
    token = page_token(second, f"/console/tasks/{task_id}")

    # when the first approves it, then the second rejects it from the page opened before
    approved = first.post(
        f"/console/tasks/{task_id}/review",
        data={"decision": "approve", "csrf_token": page_token(first)},
    )
    assert approved.status_code == 303
    late = second.post(
        f"/console/tasks/{task_id}/review", data={"decision": "reject", "csrf_token": token}
    )

    # then the second's page says the task is no longer pending review, and it stays approved
    assert late.status_code == 409
    assert 'id="review-error"' in late.text and "not pending review" in late.text, late.text
    task = client.get(f"/tasks/{task_id}", headers=account.headers).json
    assert task["review"]["decision"] == "approved"

    # and a one-time code sent for it, once no longer asked for, is refused with its reason too
    for code, status, says in (("123456", 409, "not waiting for input"), ("", 422, "Enter the")):
        answer = second.post(
            f"/console/tasks/{task_id}/input", data={"code": code, "csrf_token": token}
        )
        assert answer.status_code == status
        assert 'id="input-error"' in answer.text and says in answer.text, answer.text
