"""An ``Idempotency-Key`` on the calls that change something without creating a task: cancel,
input, review, the webhook endpoint's test and secret rotation, redelivery, recovery, the
DELETEs, and the endpoint's first PUT (which shows its secret once).

A client whose answer was lost sends the call again under the same key; it is carried out
once, and the first answer is given again. (Creations: tests/api/test_tasks.py.)
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import standardwebhooks

from shared import tasks as task_queries
from shared.accounts import create_account, create_api_key
from shared.crypto import decrypt_json
from shared.sop.library import builtin_sop_text
from tests.api.test_review_api import _paused_task
from tests.dispatcher.support import drive, finish_task, message, served_receiver
from tests.scrape import delta, parse

ELIGIBILITY = "member_id: W100000001\npatient: Jane Doe\ndob: 1990-01-15"


def _keyed(account, key: str) -> dict[str, str]:
    return {**account.headers, "Idempotency-Key": key}


def _new_task(client, account) -> int:
    response = client.post(
        "/tasks", json={"type": "check_eligibility", "data": ELIGIBILITY}, headers=account.headers
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["id"]


def _stored_answers(runtime) -> str:
    """Every stored answer and digest, as the database holds them."""
    with runtime.pool.connection() as conn:
        rows = conn.execute("SELECT request_digest, response_body::text FROM idempotency_keys")
        return " ".join(" ".join(row.values()) for row in rows.fetchall())


def test_a_cancel_sent_again_under_its_key_answers_as_the_first_did(client, account):
    # given a task canceled under a key
    before = parse(client.get("/metrics").get_data(as_text=True))
    task_id = _new_task(client, account)
    first = client.post(f"/tasks/{task_id}/cancel", headers=_keyed(account, "cancel-1"))
    assert first.status_code == 200 and first.get_json()["status"] == "canceled"
    assert "Idempotent-Replayed" not in first.headers

    # when the cancel is sent again under the same key
    again = client.post(f"/tasks/{task_id}/cancel", headers=_keyed(account, "cancel-1"))

    # then it gets the first answer, marked as replayed, where without the key it is refused
    assert (again.status_code, again.get_json()) == (200, first.get_json())
    assert again.headers["Idempotent-Replayed"] == "true"
    unkeyed = client.post(f"/tasks/{task_id}/cancel", headers=account.headers)
    assert unkeyed.get_json()["error"]["code"] == "task_finished"
    # and the audit log tells the replay apart from the cancel
    entries = client.get("/audit-log", headers=account.headers).get_json()["data"]
    cancels = [e["detail"] for e in entries if e["action"] == "POST /tasks/{task_id}/cancel"]
    assert cancels == [{"status": 200, "replayed": True}, {"status": 200}]
    # and operators see one replay of a cancel
    after = parse(client.get("/metrics").get_data(as_text=True))
    replays = "understudy_idempotent_replays_total"
    assert delta(before, after, replays, call="POST /tasks/{task_id}/cancel") == 1


def test_a_key_answers_only_for_its_own_request(client, account):
    # given a key used for one task's cancel
    first, second = _new_task(client, account), _new_task(client, account)
    client.post(f"/tasks/{first}/cancel", headers=_keyed(account, "k"))

    # when it is sent with another task's cancel, or with a creation
    other_task = client.post(f"/tasks/{second}/cancel", headers=_keyed(account, "k"))
    creation = client.post(
        "/tasks",
        json={"type": "check_eligibility", "data": ELIGIBILITY},
        headers=_keyed(account, "k"),
    )

    # then each is a conflict naming the key, and the other task is untouched
    for response in (other_task, creation):
        assert response.status_code == 409
        assert response.get_json()["error"]["code"] == "idempotency_conflict"
        assert response.get_json()["error"]["details"] == {"idempotency_key": "k"}
    task = client.get(f"/tasks/{second}", headers=account.headers).get_json()
    assert task["status"] != "canceled"
    # and a creation's key answers no cancel either
    client.post(
        "/tasks",
        json={"type": "check_eligibility", "data": ELIGIBILITY},
        headers=_keyed(account, "made"),
    )
    cancel = client.post(f"/tasks/{second}/cancel", headers=_keyed(account, "made"))
    assert cancel.get_json()["error"]["code"] == "idempotency_conflict"


def test_a_refusal_is_not_kept_so_the_key_stays_free(client, account):
    # given a cancel under a key that was refused (no such task)
    missing = client.post("/tasks/999999/cancel", headers=_keyed(account, "free"))
    assert missing.status_code == 404

    # when the key is used for a cancel that can be carried out
    task_id = _new_task(client, account)
    done = client.post(f"/tasks/{task_id}/cancel", headers=_keyed(account, "free"))

    # then it is carried out: the refusal changed nothing and was not kept
    assert done.status_code == 200 and done.get_json()["status"] == "canceled"
    assert "Idempotent-Replayed" not in done.headers


def test_an_input_sent_again_is_given_once_and_its_code_is_not_stored_readable(
    runtime, client, account
):
    # given a task waiting for a one-time code
    task_id = _new_task(client, account)
    with runtime.pool.connection() as conn:
        assert task_queries.claim_task(conn, task_id, "test-worker", 30.0) is not None
        assert task_queries.await_input(
            conn, task_id, "test-worker", expires_at=datetime.now(UTC).replace(year=2100),
            note="Enter the code",
        )  # fmt: skip
    url = f"/tasks/{task_id}/input"

    # when the code is given, then given again under the same key
    first = client.post(url, json={"code": "918273"}, headers=_keyed(account, "code-1"))
    again = client.post(url, json={"code": "918273"}, headers=_keyed(account, "code-1"))

    # then both answer 202 with the same task, and one input waits for the worker
    assert first.status_code == again.status_code == 202
    assert again.get_json() == first.get_json() and again.headers["Idempotent-Replayed"] == "true"
    with runtime.pool.connection() as conn:
        token = task_queries.take_input(conn, task_id)
    assert decrypt_json(runtime.fernet, token) == {"code": "918273"}
    # and another code under that key is a conflict, not a second input
    other = client.post(url, json={"code": "111111"}, headers=_keyed(account, "code-1"))
    assert other.get_json()["error"]["code"] == "idempotency_conflict"
    # and the database holds neither the code nor the answer in a readable form
    stored = _stored_answers(runtime)
    assert "918273" not in stored and '"status"' not in stored


def test_a_review_sent_again_under_its_key_is_decided_once(runtime, client, account):
    # given a task paused for review, approved under a key
    task_id = _paused_task(runtime, client, account)
    body = {"decision": "approve", "note": "ok", "reviewer": "Dana"}
    first = client.post(f"/tasks/{task_id}/review", json=body, headers=_keyed(account, "rv"))
    assert first.status_code == 200, first.get_json()

    # when the same decision is sent again under the key, once the task has moved on
    again = client.post(f"/tasks/{task_id}/review", json=body, headers=_keyed(account, "rv"))

    # then it answers the first decision, where without the key it is refused
    assert (again.status_code, again.get_json()) == (200, first.get_json())
    unkeyed = client.post(f"/tasks/{task_id}/review", json=body, headers=account.headers)
    assert unkeyed.get_json()["error"]["code"] == "not_pending_review"
    # and a rejection under the approval's key is a conflict
    rejected = client.post(
        f"/tasks/{task_id}/review", json={**body, "decision": "reject"},
        headers=_keyed(account, "rv"),
    )  # fmt: skip
    assert rejected.get_json()["error"]["code"] == "idempotency_conflict"


def test_a_rotation_sent_again_keeps_the_receivers_secret_valid(runtime, client, make_account):
    with served_receiver() as receiver:
        # given an account whose receivers verify with its secret
        account = make_account(webhook_url=receiver.url)
        rotate = "/webhook-endpoint/rotate-secret"

        # when the secret is rotated, then rotated again under the same key
        first = client.post(rotate, headers=_keyed(account, "rot"))
        again = client.post(rotate, headers=_keyed(account, "rot"))

        # then both answers are the same new secret
        assert first.status_code == again.status_code == 200
        assert again.get_json() == first.get_json()
        new = first.get_json()["secret"]
        # and it was rotated once: a delivery still verifies with the receivers' secret
        client.post("/webhook-endpoint/test", headers=account.headers)
        drive(runtime, lambda: len(receiver.received) == 1)
        got = receiver.received[0]
        standardwebhooks.Webhook(account.webhook_secret).verify(got.body, got.headers)
        standardwebhooks.Webhook(new).verify(got.body, got.headers)
        # and the stored answer does not show the secret
        assert new not in _stored_answers(runtime) and new.removeprefix("whsec_") not in (
            _stored_answers(runtime)
        )


def test_one_key_sent_twice_at_once_is_carried_out_once(runtime, app, make_account):
    # given an account, and two clients sending the same rotation under one key at once
    account = make_account(webhook_url="http://127.0.0.1:9/hook")
    answers: list = []
    start = threading.Barrier(2)

    def send() -> None:
        start.wait()
        response = app.test_client().post(
            "/webhook-endpoint/rotate-secret", headers=_keyed(account, "both")
        )
        answers.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then both get the one rotation's secret
    assert [status for status, _ in answers] == [200, 200]
    assert answers[0][1]["secret"] == answers[1][1]["secret"]


@pytest.mark.parametrize("call", ["test", "recover"])
def test_a_key_past_its_24_hours_is_free_again(runtime, client, make_account, call):
    account = make_account(webhook_url="http://127.0.0.1:9/hook")
    url, body = {
        "test": ("/webhook-endpoint/test", None),
        "recover": ("/webhooks/recover", {"since": "2026-01-01T00:00:00+00:00"}),
    }[call]
    # given a call made under a key, and sent again within the day
    first = client.post(url, json=body, headers=_keyed(account, "day"))
    again = client.post(url, json=body, headers=_keyed(account, "day"))
    assert first.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    # when its key is older than 24 hours
    with runtime.pool.connection() as conn:
        conn.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
        # and the ping it queued was delivered meanwhile (one still pending refuses another)
        conn.execute("UPDATE webhook_messages SET status = 'delivered', delivered_at = now()")

    # then the call under that key is carried out again
    later = client.post(url, json=body, headers=_keyed(account, "day"))
    assert later.status_code == 202 and "Idempotent-Replayed" not in later.headers
    if call == "test":
        assert later.get_json()["id"] != first.get_json()["id"]


def test_a_redelivery_sent_again_queues_the_message_once(runtime, client, make_account):
    # given a dead-lettered message
    account = make_account(webhook_url="http://127.0.0.1:9/hook")
    task_id, _ = finish_task(runtime, account.id)
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE webhook_messages SET status = 'failed', failed_at = now() WHERE task_id = %s",
            (task_id,),
        )
    url = f"/webhooks/messages/{message(runtime, task_id=task_id)['id']}/redeliver"

    # when it is redelivered twice under one key
    first = client.post(url, headers=_keyed(account, "again"))
    again = client.post(url, headers=_keyed(account, "again"))

    # then the second answers as the first, where without the key the message is pending
    assert first.status_code == again.status_code == 202
    assert again.get_json() == first.get_json()
    unkeyed = client.post(url, headers=account.headers)
    assert unkeyed.get_json()["error"]["code"] == "message_pending"


def test_each_accounts_keys_are_its_own(runtime, client, make_account):
    # given two accounts using the same key for a rotation
    one = make_account(webhook_url="http://127.0.0.1:9/one")
    two = make_account("Other Clinic", webhook_url="http://127.0.0.1:9/two")
    first = client.post("/webhook-endpoint/rotate-secret", headers=_keyed(one, "shared"))
    second = client.post("/webhook-endpoint/rotate-secret", headers=_keyed(two, "shared"))

    # then each is carried out for its own account, and neither sees the other's answer
    assert first.status_code == second.status_code == 200
    assert "Idempotent-Replayed" not in second.headers
    assert first.get_json()["secret"] != second.get_json()["secret"]


def test_a_call_without_a_key_stores_nothing(runtime, client, account):
    task_id = _new_task(client, account)
    assert client.post(f"/tasks/{task_id}/cancel", headers=account.headers).status_code == 200
    assert _stored_answers(runtime) == ""


def test_a_deletion_sent_again_under_its_key_answers_as_the_first_did(client, account):
    # given a portal and a task type of the account's own, each to be removed under a key
    portal = {"base_url": "https://portal.acme.test"}
    assert client.put("/portals/acme", json=portal, headers=account.headers).status_code == 200
    own = builtin_sop_text("check_eligibility").replace(
        "task_type: check_eligibility", "task_type: own_check"
    )
    made = client.put("/sops/own_check", json={"sop": own}, headers=account.headers)
    assert made.status_code == 201, made.get_json()
    # and a built-in SOP and profile, each with a version of the account's own, reverted
    mine = builtin_sop_text("check_eligibility") + "\n# the clinic's own\n"
    assert client.put(
        "/sops/check_eligibility", json={"sop": mine}, headers=account.headers
    ).status_code in (200, 201)
    profile = client.get("/portals/sandbox/profile", headers=account.headers).get_json()
    assert client.put(
        "/portals/sandbox/profile", json={"profile": profile["body"] + "\n# ours\n"},
        headers=account.headers,
    ).status_code in (200, 201)  # fmt: skip
    for url in ("/portals/acme", "/sops/own_check", "/sops/check_eligibility",
                "/portals/sandbox/profile"):  # fmt: skip
        first = client.delete(url, headers=_keyed(account, f"rm {url}"))
        assert first.status_code in (200, 204), first.get_json()

        # when the deletion is sent again under its key
        again = client.delete(url, headers=_keyed(account, f"rm {url}"))

        # then it answers as the first did, where without the key it is not found
        assert (again.status_code, again.get_data()) == (first.status_code, first.get_data())
        assert again.headers["Idempotent-Replayed"] == "true"
        if url in ("/portals/acme", "/sops/own_check"):  # without the key: gone already
            assert client.delete(url, headers=account.headers).status_code == 404


def test_an_endpoints_first_put_sent_again_shows_its_secret_again(runtime, client):
    # given an account without a webhook endpoint
    with runtime.pool.connection() as conn:
        account_id = create_account(conn, "No Endpoint Yet")
        headers = {"Authorization": f"Bearer {create_api_key(conn, account_id)}"}
    body = {"url": "http://127.0.0.1:9/hook"}

    # when its first PUT, which makes the endpoint, is sent again under its key
    first = client.put("/webhook-endpoint", json=body, headers={**headers, "Idempotency-Key": "e"})
    again = client.put("/webhook-endpoint", json=body, headers={**headers, "Idempotency-Key": "e"})

    # then both answer 201 with the one secret made, where a PUT without the key shows none
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json() and first.get_json()["secret"].startswith("whsec_")
    assert "secret" not in client.put("/webhook-endpoint", json=body, headers=headers).get_json()
