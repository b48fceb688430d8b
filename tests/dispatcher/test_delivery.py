"""Delivery as a receiver sees it: envelope, headers, signatures, one message per task."""

from __future__ import annotations

import json

import standardwebhooks
import svix.webhooks

from shared.webhooks import enqueue_task_finished, update_endpoint
from tests.dispatcher.support import (
    attempts,
    drive,
    finish_task,
    message,
    tick,
    verify_body_signature,
)


def test_finished_task_is_delivered_signed_and_verifiable(runtime, account, receiver):
    # given a finished task with its outbox message
    task_id, payload = finish_task(runtime, account.id, notes="Coverage active")

    # when the scheduler and dispatcher run
    drive(runtime, lambda: len(receiver.received) == 1)

    # then the receiver got the reference envelope with the task as data
    got = receiver.received[0]
    envelope = json.loads(got.body)
    assert set(envelope) == {"signature", "event", "created_at", "data"}
    assert envelope["event"] == "task_finished"
    assert envelope["data"] == payload
    assert envelope["created_at"].endswith("Z")
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["Webhook-Id"].startswith("msg_")
    # and both public libraries verify the Standard Webhooks headers
    assert standardwebhooks.Webhook(account.secret).verify(got.body, got.headers) == envelope
    svix.webhooks.Webhook(account.secret).verify(got.body, got.headers)
    # and the body's own signature verifies as documented
    assert verify_body_signature(account.secret, got.body)
    # and the message is delivered after one logged attempt
    row = message(runtime, task_id=task_id)
    assert row["status"] == "delivered"
    assert row["msg_id"] == got.headers["Webhook-Id"]
    [attempt] = attempts(runtime, row["id"])
    assert attempt["status_code"] == 200
    assert attempt["error_class"] is None
    assert attempt["url"] == receiver.url
    assert attempt["response_body"] == "ok"
    assert attempt["latency_ms"] >= 0


def test_signature_with_a_wrong_secret_does_not_verify(runtime, account, make_account, receiver):
    # given a delivered message
    finish_task(runtime, account.id)
    drive(runtime, lambda: len(receiver.received) == 1)
    got = receiver.received[0]
    # when a receiver checks it with another account's secret / then it is rejected
    other = make_account(None, name="Other")
    try:
        standardwebhooks.Webhook(other.secret).verify(got.body, got.headers)
    except standardwebhooks.WebhookVerificationError:
        pass
    else:
        raise AssertionError("a foreign secret verified the message")
    assert not verify_body_signature(other.secret, got.body)


def test_enqueue_twice_makes_one_message_and_one_delivery(runtime, account, receiver):
    # given a task whose final state is written twice (a worker retry, say)
    task_id, payload = finish_task(runtime, account.id)
    with runtime.pool.connection() as conn:
        enqueue_task_finished(conn, account_id=account.id, task_id=task_id, payload=payload)

    # when deliveries run
    drive(runtime, lambda: message(runtime, task_id=task_id)["status"] == "delivered")

    # then exactly one message went out
    assert len(receiver.received) == 1


def test_account_without_url_holds_messages_until_one_is_set(runtime, make_account, receiver):
    # given an account with no webhook URL and a finished task
    acct = make_account(None)
    task_id, _ = finish_task(runtime, acct.id)

    # when the scheduler ticks / then nothing is claimed and the message waits
    assert tick(runtime) == 0
    assert message(runtime, task_id=task_id)["status"] == "pending"

    # when a URL is set / then the held message is delivered
    with runtime.pool.connection() as conn:
        update_endpoint(conn, acct.id, url=receiver.url)
    drive(runtime, lambda: len(receiver.received) == 1)
    assert message(runtime, task_id=task_id)["status"] == "delivered"


def test_response_body_postgres_cannot_store_is_logged_and_does_not_block(
    runtime, account, receiver
):
    # given a receiver whose answer holds a NUL byte, which PostgreSQL text refuses,
    # and a second message queued behind the first
    receiver.default = lambda: (200, {}, "ok\x00done")
    tasks = [finish_task(runtime, account.id)[0] for _ in range(2)]

    # when deliveries run
    drive(runtime, lambda: all(message(runtime, task_id=t)["status"] == "delivered" for t in tasks))

    # then each message was sent once and its attempt logged with the body made storable
    assert len(receiver.received) == 2
    for task_id in tasks:
        [attempt] = attempts(runtime, message(runtime, task_id=task_id)["id"])
        assert attempt["status_code"] == 200
        assert attempt["response_body"] == "ok\ufffddone"
