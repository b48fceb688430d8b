"""The lookup of a receiver's name is part of its attempt: a name whose DNS hangs is cut off at
the attempt's deadline, recorded and retried, and its stuck lookups cannot pile up."""

from __future__ import annotations

import threading
import time

from dispatcher.delivery import deliver_message
from dispatcher.transport import Transport
from shared.webhooks import claim_due_messages
from tests.dispatcher.support import attempts, endpoint, finish_task, message, with_settings

# Far longer than any attempt's deadline here: the old code waited this out.
_HANG_S = 10.0


class HangingDns:
    """A resolver for one name whose lookups hang until released, then answer loopback."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.lookups = 0
        self.answered = threading.Event()

    def __call__(self, host: str, _port: int) -> list[str]:
        self.lookups += 1
        try:
            self.released.wait(timeout=_HANG_S)
            return ["127.0.0.1"]
        finally:
            self.answered.set()


def deliver_due(runtime, transport: Transport) -> None:
    with runtime.pool.connection() as conn:
        ids = claim_due_messages(conn, limit=10, lock_s=30, settings=runtime.settings)
    for message_id in ids:
        deliver_message(runtime, message_id, transport=transport)


def delivered_in_the_end(runtime, transport: Transport, task_id: int) -> dict:
    """Keep delivering until the message is delivered (the schedule is compressed)."""
    give_up = time.monotonic() + 10
    while (row := message(runtime, task_id=task_id))["status"] != "delivered":
        assert time.monotonic() < give_up, row
        deliver_due(runtime, transport)
        time.sleep(0.05)
    return row


def test_a_hanging_lookup_ends_the_attempt_at_its_deadline(runtime, make_account, receiver):
    # given a 0.5 s attempt deadline, and an endpoint whose name's lookup hangs
    quick = with_settings(runtime, webhook_timeout_s=0.5)
    port = int(receiver.url.split(":")[2].split("/")[0])
    acct = make_account(f"http://hooks.customer.test:{port}/hooks")
    task_id, _ = finish_task(runtime, acct.id)
    dns = HangingDns()
    transport = Transport(resolver=dns)

    # when the message is delivered
    try:
        deliver_due(quick, transport)
        # then the attempt was over while the lookup still hung: the slot was let go
        ended_before_the_lookup = not dns.answered.is_set()
    finally:
        dns.released.set()
    assert ended_before_the_lookup

    # and the attempt is recorded as a connection failure that says why, to be retried
    row = message(runtime, task_id=task_id)
    [attempt] = attempts(runtime, row["id"])
    assert attempt["error_class"] == "connection"
    assert "did not resolve in time" in attempt["error_detail"]
    assert attempt["status_code"] is None
    assert receiver.received == []
    assert row["status"] == "pending" and row["attempts"] == 1
    assert row["next_attempt_at"] > attempt["attempted_at"]

    # and once the name answers again, the retry is delivered
    row = delivered_in_the_end(quick, transport, task_id)
    assert row["attempts"] == 2
    assert len(receiver.received) == 1


def test_stuck_lookups_are_capped_and_another_tenant_is_not_charged(
    runtime, make_account, receiver
):
    # given a transport with one lookup thread, held by a tenant's name whose lookup hangs
    quick = with_settings(runtime, webhook_timeout_s=0.5)
    port = int(receiver.url.split(":")[2].split("/")[0])
    dns = HangingDns()
    transport = Transport(resolver=dns, lookup_threads=1)
    first = make_account(f"http://hooks.customer.test:{port}/hooks", name="Hangs")
    first_task, _ = finish_task(runtime, first.id)
    try:
        deliver_due(quick, transport)

        # when another tenant's message needs a lookup while that one is still stuck
        second = make_account(f"http://hooks.other.test:{port}/hooks", name="Waits")
        second_task, _ = finish_task(runtime, second.id)
        deliver_due(quick, transport)

        # then no second lookup was started
        started = dns.lookups
    finally:
        dns.released.set()
    assert started == 1

    # and the stuck tenant's attempt failed as not resolved in time, while the other tenant's
    # message only waits a moment: no attempt counted, nothing held against its endpoint
    row = message(runtime, task_id=first_task)
    [attempt] = attempts(runtime, row["id"])
    assert "did not resolve in time" in attempt["error_detail"]
    waiting = message(runtime, task_id=second_task)
    assert attempts(runtime, waiting["id"]) == []
    assert (waiting["status"], waiting["attempts"]) == ("pending", 0)
    assert waiting["locked_until"] is None and waiting["next_attempt_at"] is not None
    assert endpoint(runtime, second.id)["consecutive_failures"] == 0

    # and once the stuck lookup is over, its thread is free: both are delivered
    with runtime.pool.connection() as conn:  # (rather than wait out the pause)
        conn.execute("UPDATE webhook_messages SET next_attempt_at = now()")
    for task_id in (first_task, second_task):
        delivered_in_the_end(quick, transport, task_id)
    assert len(receiver.received) == 2
