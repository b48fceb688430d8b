"""The webhook API as a client uses it: the endpoint, its secret, the message log, redelivery."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import standardwebhooks

from api import create_app
from shared import webhooks as hooks
from shared.accounts import create_account, create_api_key
from shared.webhooks import create_endpoint
from tests.dispatcher.support import (
    Receiver,
    drive,
    finish_task,
    message,
    served_receiver,
    with_settings,
)
from tests.plans import rows_read_in


@pytest.fixture
def runtime(runtime):
    """The circuit breaker out of the way: these tests fail deliveries on purpose."""
    return with_settings(runtime, webhook_breaker_failures=1000)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with served_receiver() as recv:
        yield recv


@dataclasses.dataclass
class Caller:
    account_id: int
    secret: str | None
    headers: dict[str, str]


@pytest.fixture
def make_caller(runtime):
    def make(url: str | None, *, endpoint: bool = True, name: str = "Acme Health") -> Caller:
        with runtime.pool.connection() as conn:
            account = create_account(conn, name)
            secret = create_endpoint(conn, runtime.fernet, account, url) if endpoint else None
            key = create_api_key(conn, account)
        return Caller(account, secret, {"Authorization": f"Bearer {key}"})

    return make


@pytest.fixture
def caller(make_caller, receiver) -> Caller:
    return make_caller(receiver.url)


@pytest.fixture
def other(make_caller) -> Caller:
    return make_caller("http://127.0.0.1:9/other", name="Other Clinic")


def fail_all(runtime, receiver, task_ids) -> None:
    receiver.default = (500, {}, "down")
    drive(runtime, lambda: all(message(runtime, task_id=t)["status"] == "failed" for t in task_ids))
    receiver.default = (200, {}, "ok")


# --- the endpoint ------------------------------------------------------------------------------


def test_get_endpoint_shows_config_and_health_but_never_the_secret(client, caller, receiver):
    # when the client reads its endpoint
    response = client.get("/webhook-endpoint", headers=caller.headers)

    # then it sees the URL, the state and the health, and no secret anywhere
    assert response.status_code == 200
    body = response.get_json()
    assert body["url"] == receiver.url and body["enabled"] is True
    assert body["health"]["consecutive_failures"] == 0
    assert caller.secret not in response.get_data(as_text=True)
    assert "secret" not in body


def test_endpoint_needs_an_api_key(client):
    assert client.get("/webhook-endpoint").status_code == 401
    assert client.get("/webhooks/messages").status_code == 401


def test_put_changes_the_url(client, caller):
    response = client.put(
        "/webhook-endpoint", json={"url": "http://127.0.0.1:8999/new"}, headers=caller.headers
    )
    assert response.status_code == 200
    assert response.get_json()["url"] == "http://127.0.0.1:8999/new"
    assert "secret" not in response.get_json()


@pytest.fixture
def strict_client(runtime):
    """An API whose operator does not allow private webhook targets (production's default)."""
    app = create_app(runtime=with_settings(runtime, webhook_allow_private=False))
    app.testing = True
    return app.test_client()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8000/hooks", "loopback"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://10.1.2.3/hooks", "private"),
        ("http://[::ffff:127.0.0.1]/hooks", "loopback"),
        ("http://localhost:8000/hooks", "loopback"),
        ("ftp://example.com/hooks", "http:// or https://"),
        ("http://[2606:4700::1111]x/hooks", "malformed"),
    ],
)
def test_put_refuses_urls_the_ssrf_rules_forbid(strict_client, runtime, caller, url, reason):
    # when the client sets a URL pointing inside our network
    response = strict_client.put("/webhook-endpoint", json={"url": url}, headers=caller.headers)

    # then it is a 422 that says why, and nothing changed
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_failed"
    [problem] = error["details"]
    assert problem["field"] == "url" and reason in problem["message"]
    assert strict_client.get("/webhook-endpoint", headers=caller.headers).get_json()["url"] != url


@pytest.mark.parametrize(
    "body",
    [{}, {"enabled": "yes"}, {"url": 5}, {"url": ""}, {"url": "http://x/", "colour": "red"}],
)
def test_put_refuses_invalid_bodies(client, caller, body):
    response = client.put("/webhook-endpoint", json=body, headers=caller.headers)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_failed"


def test_put_needs_json(client, caller):
    response = client.put("/webhook-endpoint", data="url=x", headers=caller.headers)
    assert response.status_code == 415


def test_first_put_creates_the_endpoint_and_shows_the_secret_once(client, make_caller):
    # given an account that has no endpoint yet
    newcomer = make_caller(None, endpoint=False)
    assert client.get("/webhook-endpoint", headers=newcomer.headers).status_code == 404

    # when it sets a URL
    response = client.put(
        "/webhook-endpoint", json={"url": "http://127.0.0.1:8999/h"}, headers=newcomer.headers
    )

    # then the endpoint is created and its secret is shown, this once
    assert response.status_code == 201
    assert response.get_json()["secret"].startswith("whsec_")
    again = client.put("/webhook-endpoint", json={"enabled": True}, headers=newcomer.headers)
    assert again.status_code == 200 and "secret" not in again.get_json()


def test_test_event_sends_a_verifiable_ping(client, runtime, caller, receiver):
    # when the client asks for a test event
    response = client.post("/webhook-endpoint/test", headers=caller.headers)

    # then a ping message is queued, and delivered signed
    assert response.status_code == 202
    queued = response.get_json()
    assert queued["event"] == "ping" and queued["status"] == "pending"
    drive(runtime, lambda: len(receiver.received) == 1)
    got = receiver.received[0]
    envelope = standardwebhooks.Webhook(caller.secret).verify(got.body, got.headers)
    assert envelope["event"] == "ping"
    assert got.headers["Webhook-Id"] == queued["msg_id"]


def test_a_test_event_is_refused_while_a_ping_is_pending(client, runtime, make_caller):
    # given a receiver that is down, and a ping queued for it
    caller = make_caller("http://127.0.0.1:9/down")
    first = client.post("/webhook-endpoint/test", headers=caller.headers)
    assert first.status_code == 202

    # when the client asks for more test events while it is pending
    answers = [client.post("/webhook-endpoint/test", headers=caller.headers) for _ in range(5)]

    # then each is refused with a 409 naming the pending ping, and no other message is queued
    for answer in answers:
        assert answer.status_code == 409
        error = answer.get_json()["error"]
        assert error["code"] == "ping_pending"
        assert error["details"] == {"message_id": first.get_json()["id"],
                                    "msg_id": first.get_json()["msg_id"]}  # fmt: skip
    listed = client.get("/webhooks/messages", headers=caller.headers).get_json()["data"]
    assert [m["id"] for m in listed] == [first.get_json()["id"]]

    # and once that ping has failed (its retries spent), the next test is queued
    with runtime.pool.connection() as conn:
        conn.execute("UPDATE webhook_messages SET status = 'failed', failed_at = now()")
    again = client.post("/webhook-endpoint/test", headers=caller.headers)
    assert again.status_code == 202 and again.get_json()["id"] != first.get_json()["id"]


def test_pings_sent_at_once_queue_one(client, runtime, make_caller):
    # given a receiver that is down
    caller = make_caller("http://127.0.0.1:9/down")

    # when eight test events are asked for at the same moment
    app = client.application
    statuses: list[int] = []

    def ping() -> None:
        with app.test_client() as own:
            statuses.append(own.post("/webhook-endpoint/test", headers=caller.headers).status_code)

    threads = [threading.Thread(target=ping) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then one is queued and the seven others are refused
    assert sorted(statuses) == [202] + [409] * 7
    with runtime.pool.connection() as conn:
        count = conn.execute("SELECT count(*) AS n FROM webhook_messages").fetchone()["n"]
    assert count == 1


def test_finding_a_pending_ping_reads_it_not_the_backlog(client, runtime, make_caller):
    # given 3,000 pending task messages behind a receiver that is down, and one pending ping
    caller = make_caller("http://127.0.0.1:9/down")
    assert client.post("/webhook-endpoint/test", headers=caller.headers).status_code == 202
    with runtime.pool.connection() as conn:
        conn.execute(
            "INSERT INTO webhook_messages (msg_id, account_id, event, payload, status,"
            " next_attempt_at) SELECT 'msg_backlog_' || g, %s, 'batch.finished', '{}',"
            " 'pending', now() FROM generate_series(1, 3000) AS g",
            (caller.account_id,),
        )
    with psycopg.connect(runtime.database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE webhook_messages")

    # when another test ping is asked for
    refused: list[str] = []

    def enqueue(conn) -> None:
        try:
            hooks.enqueue_ping(conn, caller.account_id)
        except hooks.PingPending as pending:
            refused.append(pending.message["msg_id"])

    read = rows_read_in(runtime, enqueue, "webhook_messages")

    # then it is refused having read the pending ping, not the 3,000 messages
    assert len(refused) == 1
    assert read <= 10, read


def test_rotate_secret_returns_it_once_and_both_verify(client, runtime, caller, receiver):
    # when the client rotates its secret
    response = client.post("/webhook-endpoint/rotate-secret", headers=caller.headers)

    # then the new secret is shown with the old one's expiry, about 24 h away
    assert response.status_code == 200
    body = response.get_json()
    new = body["secret"]
    assert new.startswith("whsec_") and new != caller.secret
    expires = datetime.fromisoformat(body["previous_secret_expires_at"])
    assert timedelta(hours=23) < expires - datetime.now(UTC) <= timedelta(hours=24)
    # and it is not shown again
    assert new not in client.get("/webhook-endpoint", headers=caller.headers).get_data(as_text=True)
    # and during the overlap a delivery verifies with either secret
    client.post("/webhook-endpoint/test", headers=caller.headers)
    drive(runtime, lambda: len(receiver.received) == 1)
    got = receiver.received[0]
    standardwebhooks.Webhook(caller.secret).verify(got.body, got.headers)
    standardwebhooks.Webhook(new).verify(got.body, got.headers)


def test_disable_holds_and_enable_delivers(client, runtime, caller, receiver):
    # given the client disabled its endpoint, and a task then finished
    response = client.put("/webhook-endpoint", json={"enabled": False}, headers=caller.headers)
    assert response.get_json()["enabled"] is False
    task_id, _ = finish_task(runtime, caller.account_id)
    drive(runtime, lambda: True)
    time.sleep(0.3)
    drive(runtime, lambda: True)
    assert receiver.received == []
    assert client.post("/webhook-endpoint/test", headers=caller.headers).status_code == 409
    # and the message says it is held, with no next attempt that would look overdue
    [held] = client.get("/webhooks/messages", headers=caller.headers).get_json()["data"]
    assert (held["status"], held["held"], held["next_attempt_at"]) == ("pending", True, None)
    shown = client.get(f"/webhooks/messages/{held['msg_id']}", headers=caller.headers)
    assert shown.get_json()["held"] is True

    # when it enables the endpoint again
    response = client.put("/webhook-endpoint", json={"enabled": True}, headers=caller.headers)

    # then the held message is due at once, and delivered
    assert response.get_json()["enabled"] is True
    [due] = client.get("/webhooks/messages", headers=caller.headers).get_json()["data"]
    assert due["held"] is False and (due["status"] != "pending" or due["next_attempt_at"])
    drive(runtime, lambda: message(runtime, task_id=task_id)["status"] == "delivered")
    assert len(receiver.received) == 1
    delivered = client.get("/webhooks/messages", headers=caller.headers).get_json()["data"]
    assert (delivered[0]["held"], delivered[0]["next_attempt_at"]) == (False, None)


# --- messages ----------------------------------------------------------------------------------


def test_message_list_filters_and_pages(client, runtime, caller, receiver):
    # given three delivered task messages and one failed one
    delivered = [finish_task(runtime, caller.account_id)[0] for _ in range(3)]
    drive(runtime, lambda: len(receiver.received) == 3)
    failed, _ = finish_task(runtime, caller.account_id)
    fail_all(runtime, receiver, [failed])

    # when the client lists two at a time
    first = client.get("/webhooks/messages?limit=2", headers=caller.headers).get_json()
    second = client.get(
        f"/webhooks/messages?limit=2&cursor={first['next_cursor']}", headers=caller.headers
    ).get_json()

    # then it pages newest first through all four
    assert first["has_more"] is True and second["has_more"] is False
    task_ids = [m["task_id"] for m in first["data"] + second["data"]]
    assert task_ids == [failed, *reversed(delivered)]

    # and the filters narrow it
    def listed(query: str) -> list[int]:
        response = client.get(f"/webhooks/messages?{query}", headers=caller.headers)
        assert response.status_code == 200, response.get_json()
        return [m["task_id"] for m in response.get_json()["data"]]

    assert listed("status=failed") == [failed]
    assert listed(f"task_id={delivered[0]}") == [delivered[0]]
    future = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    assert listed(f"since={future.replace('+', '%2B')}") == []
    assert len(listed(f"until={future.replace('+', '%2B')}")) == 4
    assert client.get("/webhooks/messages?status=lost", headers=caller.headers).status_code == 422
    assert client.get("/webhooks/messages?since=soon", headers=caller.headers).status_code == 422
    for task_id in ("0", "-3", str(2**63), "9" * 40):
        answer = client.get(f"/webhooks/messages?task_id={task_id}", headers=caller.headers)
        assert answer.status_code == 422, task_id
        assert [d["field"] for d in answer.get_json()["error"]["details"]] == ["task_id"]


def test_message_detail_shows_every_attempt(client, runtime, caller, receiver):
    # given a message delivered on its second attempt
    receiver.replies = [(503, {"Retry-After": "0"}, "busy")]
    task_id, payload = finish_task(runtime, caller.account_id)
    drive(runtime, lambda: message(runtime, task_id=task_id)["status"] == "delivered")
    row = message(runtime, task_id=task_id)

    # when the client reads it, by id and by msg_id
    by_id = client.get(f"/webhooks/messages/{row['id']}", headers=caller.headers)
    by_msg_id = client.get(f"/webhooks/messages/{row['msg_id']}", headers=caller.headers)

    # then it sees the message, its data and both attempts
    assert by_id.status_code == 200 and by_id.get_json() == by_msg_id.get_json()
    body = by_id.get_json()
    assert body["status"] == "delivered" and body["attempt_count"] == 2
    assert body["data"] == payload
    assert [a["status_code"] for a in body["attempts"]] == [503, 200]
    assert body["attempts"][0]["response_body"] == "busy"
    assert body["attempts"][0]["error_class"] == "http_status"
    assert body["attempts"][0]["url"] == receiver.url


def test_redeliver_sends_again_with_the_same_webhook_id(client, runtime, caller, receiver):
    # given a dead-lettered message
    task_id, _ = finish_task(runtime, caller.account_id)
    fail_all(runtime, receiver, [task_id])
    row = message(runtime, task_id=task_id)

    # when the client redelivers it
    response = client.post(f"/webhooks/messages/{row['id']}/redeliver", headers=caller.headers)

    # then it is queued and delivered with its original webhook-id
    assert response.status_code == 202
    assert response.get_json()["status"] == "pending"
    drive(runtime, lambda: message(runtime, task_id=task_id)["status"] == "delivered")
    assert receiver.received[-1].headers["Webhook-Id"] == row["msg_id"]
    # and redelivering a message that is still pending is a conflict
    finish_task(runtime, caller.account_id)
    pending = client.get("/webhooks/messages?status=pending", headers=caller.headers).get_json()
    again = client.post(
        f"/webhooks/messages/{pending['data'][0]['id']}/redeliver", headers=caller.headers
    )
    assert again.status_code == 409


def test_recover_requeues_failures_since_t(client, runtime, caller, receiver):
    # given a failure before T and two after it
    old, _ = finish_task(runtime, caller.account_id)
    fail_all(runtime, receiver, [old])
    since = datetime.now(UTC)
    newer = [finish_task(runtime, caller.account_id)[0] for _ in range(2)]
    fail_all(runtime, receiver, newer)

    # when the client recovers since T
    response = client.post(
        "/webhooks/recover", json={"since": since.isoformat()}, headers=caller.headers
    )

    # then two were queued again and get delivered; the older one stays failed
    assert response.status_code == 202
    assert response.get_json() == {"count": 2}
    drive(runtime, lambda: all(message(runtime, task_id=t)["status"] == "delivered" for t in newer))
    assert message(runtime, task_id=old)["status"] == "failed"


def test_recover_needs_an_aware_since(client, caller):
    for body in ({}, {"since": "yesterday"}, {"since": "2026-11-29T10:00:00"}):
        response = client.post("/webhooks/recover", json=body, headers=caller.headers)
        assert response.status_code == 422, body


def test_another_accounts_messages_are_404(client, runtime, caller, other, receiver):
    # given a failed message of another account
    task_id, _ = finish_task(runtime, other.account_id)
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE webhook_messages SET status = 'failed', failed_at = now() WHERE task_id = %s",
            (task_id,),
        )
    row = message(runtime, task_id=task_id)

    # when this account reaches for it / then it does not exist
    for ref in (row["id"], row["msg_id"]):
        got = client.get(f"/webhooks/messages/{ref}", headers=caller.headers)
        assert got.status_code == 404
        assert got.get_json()["error"]["code"] == "not_found"
        again = client.post(f"/webhooks/messages/{ref}/redeliver", headers=caller.headers)
        assert again.status_code == 404
    assert client.get("/webhooks/messages", headers=caller.headers).get_json()["data"] == []
    recovered = client.post(
        "/webhooks/recover", json={"since": "2000-01-01T00:00:00Z"}, headers=caller.headers
    )
    assert recovered.get_json() == {"count": 0}
    assert message(runtime, task_id=task_id)["status"] == "failed"
    # and the owner still sees it
    owned = client.get(f"/webhooks/messages/{row['id']}", headers=other.headers)
    assert owned.status_code == 200
    assert json.loads(owned.get_data())["task_id"] == task_id


def test_two_first_puts_at_once_make_one_endpoint_and_no_error(app, make_caller):
    # given an account without an endpoint, and two clients setting its URL at the same moment
    caller = make_caller(None, endpoint=False)
    start = threading.Barrier(2)
    answers: list = []

    def put(url: str) -> None:
        start.wait()
        response = app.test_client().put(
            "/webhook-endpoint", json={"url": url}, headers=caller.headers
        )
        answers.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=put, args=(f"http://127.0.0.1:9/{n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then one made the endpoint and shows its secret, and the other set it after
    assert sorted(status for status, _ in answers) == [200, 201], answers
    made = next(body for status, body in answers if status == 201)
    assert made["secret"].startswith("whsec_")
    assert all("secret" not in body for status, body in answers if status == 200)


def test_a_url_given_again_sends_the_messages_waiting_in_their_retry_schedule(
    client, runtime, caller, receiver
):
    # given a message that waits hours for its next attempt (its receiver failed it), and an
    # endpoint whose URL the client then removed
    task_id, _ = finish_task(runtime, caller.account_id)
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE webhook_messages SET attempts = 5, next_attempt_at = now() + interval '5 hours'"
            " WHERE task_id = %s",
            (task_id,),
        )
    response = client.put("/webhook-endpoint", json={"url": None}, headers=caller.headers)
    assert response.status_code == 200
    [held] = client.get("/webhooks/messages", headers=caller.headers).get_json()["data"]
    assert held["held"] is True

    # when it gives the endpoint a URL again
    response = client.put("/webhook-endpoint", json={"url": receiver.url}, headers=caller.headers)
    assert response.status_code == 200

    # then the message goes at once (docs/webhooks.md: "goes as soon as the endpoint is enabled
    # (or given a URL) again, which also sends at once every message waiting in its retry
    # schedule"), not hours later
    drive(runtime, lambda: message(runtime, task_id=task_id)["status"] == "delivered")
    assert len(receiver.received) == 1
