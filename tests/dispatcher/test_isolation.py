"""One endpoint's trouble stays its own: concurrency limits, the circuit breaker, auto-disable,
and no duplicate sends when schedulers or queue messages race."""

from __future__ import annotations

import threading
import time

from dispatcher.delivery import deliver_message
from shared.webhooks import claim_due_messages, disable_failing_endpoints, update_endpoint
from tests.conftest import analyzed_while_empty
from tests.dispatcher.support import (
    attempts,
    drive,
    endpoint,
    finish_task,
    message,
    set_endpoint,
    tick,
    with_settings,
)


def claim(runtime, limit: int = 100) -> list[int]:
    with runtime.pool.connection() as conn:
        return claim_due_messages(conn, limit=limit, lock_s=30, settings=runtime.settings)


def all_attempts(runtime) -> list[dict]:
    with runtime.pool.connection() as conn:
        return conn.execute("SELECT * FROM webhook_attempts ORDER BY id").fetchall()


def test_claims_respect_the_per_endpoint_concurrency_limit(runtime, account, make_account):
    # given a limit of 3 in flight per endpoint, 5 due messages for one account and 2 for another
    limited = with_settings(runtime, webhook_endpoint_concurrency=3)
    other = make_account("http://127.0.0.1:9/other", name="Other")
    busy = [finish_task(runtime, account.id)[0] for _ in range(5)]
    quiet = [finish_task(runtime, other.id)[0] for _ in range(2)]

    # when the scheduler claims twice in a row
    first = claim(limited)
    second = claim(limited)

    # then the busy endpoint got 3 slots, the other endpoint was not held back by it,
    # and nothing more was claimed while those are in flight
    ids = {t: message(runtime, task_id=t)["id"] for t in busy + quiet}
    assert len([i for i in first if i in {ids[t] for t in busy}]) == 3
    assert {ids[t] for t in quiet} <= set(first)
    assert second == []


def test_open_circuit_defers_without_spending_retry_budget(runtime, account, receiver):
    # given a breaker that trips after 2 consecutive failures, and 4 messages to a failing endpoint
    breaker = with_settings(runtime, webhook_breaker_failures=2, webhook_breaker_cooldown_s=1.0)
    receiver.default = (500, {}, "down")
    tasks = [finish_task(runtime, account.id)[0] for _ in range(4)]

    # when the scheduler ticks, and keeps ticking within the cooldown
    tick(breaker)
    tick(breaker)

    # then only 2 requests were made, the circuit is open, and the others kept their budget
    assert len(receiver.received) == 2
    ep = endpoint(runtime, account.id)
    assert ep["consecutive_failures"] == 2 and ep["circuit_open_until"] is not None
    rows = [message(runtime, task_id=t) for t in tasks]
    assert sorted(r["attempts"] for r in rows) == [0, 0, 1, 1]
    assert all(r["status"] == "pending" for r in rows)

    # when the cooldown passes and the receiver recovers
    receiver.default = (200, {}, "ok")
    time.sleep(1.1)
    half_open = claim(breaker)

    # then a single probe is let through, and after it succeeds everything is delivered
    assert len(half_open) == 1
    for message_id in half_open:
        deliver_message(breaker, message_id)
    drive(breaker, lambda: all(message(runtime, task_id=t)["status"] == "delivered" for t in tasks))
    assert endpoint(runtime, account.id)["consecutive_failures"] == 0


def test_claims_keep_their_limits_when_the_statistics_say_the_table_is_empty(
    runtime, account, settings
):
    # given statistics from a quiet spell, then a burst of 5 due messages for one endpoint
    analyzed_while_empty(settings.database_url, "webhook_messages")
    tasks = [finish_task(runtime, account.id)[0] for _ in range(5)]

    # when the scheduler claims with 3 slots per endpoint
    first = claim(with_settings(runtime, webhook_endpoint_concurrency=3))
    # then it claims 3, not every due message
    assert first == [message(runtime, task_id=t)["id"] for t in tasks[:3]]

    # when the endpoint's breaker is half-open once those leases run out
    set_endpoint(runtime, account.id, consecutive_failures=2)
    with runtime.pool.connection() as conn:
        conn.execute("UPDATE webhook_messages SET locked_until = now() - interval '1 second'")
    probe = claim(with_settings(runtime, webhook_breaker_failures=2))
    # then a single probe is let through
    assert probe == [message(runtime, task_id=tasks[0])["id"]]


def test_endpoint_failing_too_long_is_disabled_and_holds_messages(runtime, account, receiver):
    # given an endpoint that has been failing for longer than webhook_disable_after_s
    short = with_settings(runtime, webhook_disable_after_s=60)
    receiver.default = (500, {}, "down")
    first, _ = finish_task(runtime, account.id)
    tick(short)
    set_endpoint(runtime, account.id, failing_since="now() - interval '2 minutes'")

    # when the next attempt fails
    time.sleep(0.25)
    tick(short)

    # then the endpoint is disabled, with the reason
    ep = endpoint(runtime, account.id)
    assert ep["enabled"] is False
    assert "no successful delivery" in ep["disabled_reason"]
    # and new messages are held, not attempted and not dropped
    requests_so_far = len(receiver.received)
    second, _ = finish_task(runtime, account.id)
    for _ in range(5):
        tick(short)
        time.sleep(0.1)
    assert len(receiver.received) == requests_so_far
    assert message(runtime, task_id=second)["status"] == "pending"
    assert message(runtime, task_id=second)["attempts"] == 0

    # when the receiver is fixed and the account re-enables the endpoint
    receiver.default = (200, {}, "ok")
    with runtime.pool.connection() as conn:
        update_endpoint(conn, account.id, enabled=True)

    # then the held messages are delivered
    drive(
        short,
        lambda: all(message(runtime, task_id=t)["status"] == "delivered" for t in (first, second)),
    )


def test_scheduler_disables_endpoints_failing_too_long(runtime, account):
    # given an endpoint failing for two minutes (its circuit keeps it from being tried)
    set_endpoint(runtime, account.id, failing_since="now() - interval '2 minutes'")

    # when the scheduler's sweep runs with a one-minute limit
    with runtime.pool.connection() as conn:
        disabled = disable_failing_endpoints(conn, disable_after_s=60)

    # then that endpoint is disabled
    assert disabled == [account.id]
    assert endpoint(runtime, account.id)["enabled"] is False


def test_two_schedulers_racing_send_each_message_once(runtime, account, receiver):
    # given 30 finished tasks
    tasks = [finish_task(runtime, account.id)[0] for _ in range(30)]

    # when two scheduler+dispatcher loops run at once, each with its own connections
    def loop() -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with runtime.pool.connection() as conn:
                pending = conn.execute(
                    "SELECT count(*) AS n FROM webhook_messages WHERE status = 'pending'"
                ).fetchone()["n"]
            if not pending:
                return
            tick(runtime, lock_s=0.01)  # an expired claim must not allow a second send either

    threads = [threading.Thread(target=loop) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then every message arrived exactly once and was attempted exactly once
    assert all(message(runtime, task_id=t)["status"] == "delivered" for t in tasks)
    ids = receiver.ids()
    assert len(ids) == 30 and len(set(ids)) == 30
    assert len(all_attempts(runtime)) == 30


def test_duplicate_queue_messages_send_once(runtime, account, receiver):
    # given a claimed message whose queue message arrives three times at once
    receiver.default = lambda: (time.sleep(0.2), (200, {}, "ok"))[1]
    task_id, _ = finish_task(runtime, account.id)
    [message_id] = claim(runtime)

    threads = [
        threading.Thread(target=deliver_message, args=(runtime, message_id)) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # and once more, late, after it was delivered
    deliver_message(runtime, message_id)

    # then one request was sent and one attempt logged
    assert len(receiver.received) == 1
    assert len(attempts(runtime, message_id)) == 1
    assert message(runtime, task_id=task_id)["status"] == "delivered"


def test_unclaimed_message_is_not_sent_by_a_stray_queue_message(runtime, account, receiver):
    # given a due message the scheduler has not claimed
    task_id, _ = finish_task(runtime, account.id)
    message_id = message(runtime, task_id=task_id)["id"]

    # when a stray queue message for it is processed
    deliver_message(runtime, message_id)

    # then nothing is sent: only the scheduler decides what goes out
    assert receiver.received == []
    assert message(runtime, task_id=task_id)["attempts"] == 0


def test_a_thread_at_its_chain_limit_leaves_no_message_claimed(
    runtime, account, receiver, monkeypatch
):
    # given one slot per endpoint, 5 due messages, and threads that send at most 3 in a row
    single = with_settings(runtime, webhook_endpoint_concurrency=1)
    tasks = [finish_task(runtime, account.id)[0] for _ in range(5)]
    [first] = claim(single)

    # when the thread given the first message is done
    monkeypatch.setattr("dispatcher.delivery.CHAIN_MAX_MESSAGES", 3)
    deliver_message(single, first)

    # then it sent 3, and the endpoint's slot is free for the next tick at once
    assert len(receiver.received) == 3
    assert len(claim(single)) == 1
    assert sum(message(runtime, task_id=t)["status"] == "delivered" for t in tasks) == 3
