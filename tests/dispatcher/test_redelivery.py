"""Dead letters come back: redelivering one message, and recovering every failure since T."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.webhooks import recover_failed_messages, redeliver_message
from tests.dispatcher.support import attempts, drive, finish_task, message


def fail_all(runtime, receiver, task_ids: list[int]) -> None:
    receiver.default = (500, {}, "down")
    drive(
        runtime,
        lambda: all(message(runtime, task_id=t)["status"] == "failed" for t in task_ids),
    )


def test_redelivered_message_keeps_its_webhook_id(runtime, account, receiver):
    # given a dead-lettered message
    task_id, _ = finish_task(runtime, account.id)
    fail_all(runtime, receiver, [task_id])
    row = message(runtime, task_id=task_id)

    # when the receiver is fixed and the message is redelivered
    receiver.default = (200, {}, "ok")
    with runtime.pool.connection() as conn:
        assert redeliver_message(conn, account.id, row["id"])["status"] == "pending"
    drive(runtime, lambda: message(runtime, task_id=task_id)["status"] == "delivered")

    # then the receiver saw the same webhook-id again, and the log holds every attempt
    assert set(receiver.ids()) == {row["msg_id"]}
    assert len(receiver.received) == 5
    assert [a["status_code"] for a in attempts(runtime, row["id"])] == [500] * 4 + [200]


def test_redeliver_refuses_a_pending_message_and_other_accounts(runtime, account, make_account):
    # given a pending message
    task_id, _ = finish_task(runtime, account.id)
    row = message(runtime, task_id=task_id)
    other = make_account(None, name="Other")
    with runtime.pool.connection() as conn:
        # when it is redelivered while pending / then nothing happens
        assert redeliver_message(conn, account.id, row["id"]) is None
        # when another account asks / then nothing happens either
        assert redeliver_message(conn, other.id, row["id"]) is None


def test_recover_requeues_failures_since_t(runtime, account, receiver):
    # given one old failure, then (after T) two newer failures and one delivered message
    old, _ = finish_task(runtime, account.id)
    fail_all(runtime, receiver, [old])
    since = datetime.now(UTC)
    newer = [finish_task(runtime, account.id)[0] for _ in range(2)]
    fail_all(runtime, receiver, newer)
    receiver.default = (200, {}, "ok")
    fine, _ = finish_task(runtime, account.id)
    drive(runtime, lambda: message(runtime, task_id=fine)["status"] == "delivered")
    before = len(receiver.received)

    # when failures since T are recovered
    with runtime.pool.connection() as conn:
        count = recover_failed_messages(conn, account.id, since=since)

    # then only the two newer failures were queued again, and they are delivered
    assert count == 2
    drive(
        runtime,
        lambda: all(message(runtime, task_id=t)["status"] == "delivered" for t in newer),
    )
    assert len(receiver.received) == before + 2
    assert message(runtime, task_id=old)["status"] == "failed"
