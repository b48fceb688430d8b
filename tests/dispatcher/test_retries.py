"""Failures, retries and the receiver's say: Retry-After, 410, redirects, timeouts, abort-message,
exhaustion. The schedule is compressed to (0, 0.2, 0.4, 0.6) s with no jitter in tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise

import pytest
from prometheus_client import REGISTRY, generate_latest

from shared.webhooks import update_endpoint
from tests.conftest import free_port
from tests.dispatcher.support import (
    attempts,
    drive,
    endpoint,
    finish_task,
    message,
    served_receiver,
    tick,
    with_settings,
)
from tests.scrape import delta, parse


def settle(runtime, seconds: float) -> None:
    """Keep the scheduler and dispatcher running for a while."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tick(runtime)
        time.sleep(0.05)


def test_receiver_down_then_up_is_delivered_with_the_same_webhook_id(runtime, account, receiver):
    # given a receiver that fails twice, then recovers
    receiver.replies = [(503, {}, "maintenance"), (500, {}, "boom")]
    task_id, _ = finish_task(runtime, account.id)
    before = parse(generate_latest(REGISTRY).decode())

    # when deliveries run until the message is delivered
    drive(runtime, lambda: message(runtime, task_id=task_id)["status"] == "delivered")
    settle(runtime, 0.8)

    # then it took three attempts, all with one webhook-id, and none after the success
    ids = receiver.ids()
    assert len(ids) == 3 and len(set(ids)) == 1
    row = message(runtime, task_id=task_id)
    assert row["msg_id"] == ids[0]
    assert row["attempts"] == 3
    log = attempts(runtime, row["id"])
    assert [a["status_code"] for a in log] == [503, 500, 200]
    assert [a["error_class"] for a in log] == ["http_status", "http_status", None]
    assert log[0]["response_body"] == "maintenance"
    # and the attempts were counted by outcome, each with its latency
    after = parse(generate_latest(REGISTRY).decode())
    attempts_total = "understudy_webhook_attempts_total"
    assert delta(before, after, attempts_total, outcome="http_status") == 2
    assert delta(before, after, attempts_total, outcome="delivered") == 1
    assert delta(before, after, "understudy_webhook_attempt_duration_seconds_count") == 3
    # and each retry waited its turn in the schedule
    gaps = [(b["attempted_at"] - a["attempted_at"]).total_seconds() for a, b in pairwise(log)]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4


def test_connection_refused_is_logged_and_retried(runtime, make_account):
    # given an endpoint where nothing listens
    acct = make_account(f"http://127.0.0.1:{free_port()}/hooks")
    task_id, _ = finish_task(runtime, acct.id)

    # when one attempt is made
    before = parse(generate_latest(REGISTRY).decode())
    tick(runtime)

    # then it is logged as a connection error and the message waits for its next attempt
    row = message(runtime, task_id=task_id)
    [attempt] = attempts(runtime, row["id"])
    assert attempt["error_class"] == "connection"
    assert attempt["status_code"] is None
    after = parse(generate_latest(REGISTRY).decode())
    assert delta(before, after, "understudy_webhook_attempts_total", outcome="connection") == 1
    assert row["status"] == "pending" and row["attempts"] == 1
    assert row["next_attempt_at"] > row["last_attempt_at"]


def test_retry_after_seconds_is_honoured(runtime, account, receiver):
    # given a receiver that answers 429 with Retry-After: 2
    receiver.replies = [(429, {"Retry-After": "2"}, "slow down")]
    task_id, _ = finish_task(runtime, account.id)

    # when the first attempt is made
    tick(runtime)

    # then the next attempt is set about 2 s out, not at the schedule's 0.2 s
    row = message(runtime, task_id=task_id)
    wait = (row["next_attempt_at"] - row["last_attempt_at"]).total_seconds()
    assert 1.9 <= wait <= 2.5
    settle(runtime, 1.0)
    assert len(receiver.received) == 1
    drive(runtime, lambda: message(runtime, task_id=task_id)["status"] == "delivered")
    assert len(receiver.received) == 2


def test_retry_after_is_capped(runtime, account, receiver):
    # given a cap of 1 s and a receiver asking for an hour
    capped = with_settings(runtime, webhook_retry_after_cap_s=1.0)
    receiver.replies = [(503, {"Retry-After": "3600"}, "")]
    task_id, _ = finish_task(runtime, account.id)

    # when the first attempt is made
    tick(capped)

    # then the wait is the cap
    row = message(runtime, task_id=task_id)
    wait = (row["next_attempt_at"] - row["last_attempt_at"]).total_seconds()
    assert 0.9 <= wait <= 1.5


def test_410_disables_the_endpoint_and_holds_messages(runtime, account, receiver):
    # given a receiver that answers 410 Gone
    receiver.replies = [(410, {}, "gone")]
    first, _ = finish_task(runtime, account.id)

    # when deliveries run, and another task finishes meanwhile
    tick(runtime)
    second, _ = finish_task(runtime, account.id)
    settle(runtime, 0.8)

    # then the endpoint is disabled at once, with the reason, after a single request
    assert len(receiver.received) == 1
    ep = endpoint(runtime, account.id)
    assert ep["enabled"] is False
    assert "410" in ep["disabled_reason"]
    # and both messages are held, not dropped
    assert message(runtime, task_id=first)["status"] == "pending"
    assert message(runtime, task_id=second)["status"] == "pending"

    # when the account enables the endpoint again / then both are delivered
    with runtime.pool.connection() as conn:
        update_endpoint(conn, account.id, enabled=True)
    drive(runtime, lambda: len(receiver.received) == 3)
    assert message(runtime, task_id=first)["status"] == "delivered"
    assert message(runtime, task_id=second)["status"] == "delivered"


def test_410_from_a_url_replaced_mid_attempt_does_not_disable_the_new_one(
    runtime, account, receiver
):
    # given an old receiver that answers 410 Gone, slowly, and the account moving to a new one
    # while that attempt is in flight
    receiver.replies = [lambda: (time.sleep(0.5), (410, {}, "gone"))[1]]
    first, _ = finish_task(runtime, account.id)
    with served_receiver() as new:

        def move() -> None:
            time.sleep(0.2)
            with runtime.pool.connection() as conn:
                update_endpoint(conn, account.id, url=new.url)

        mover = threading.Thread(target=move)
        mover.start()
        tick(runtime)
        mover.join()

        # then the old URL's answer is logged, but the new URL's endpoint stays enabled
        [attempt] = attempts(runtime, message(runtime, task_id=first)["id"])
        assert (attempt["status_code"], attempt["url"]) == (410, receiver.url)
        ep = endpoint(runtime, account.id)
        assert ep["enabled"] is True and ep["url"] == new.url

        # and the message goes to the new URL
        drive(runtime, lambda: message(runtime, task_id=first)["status"] == "delivered")
        assert len(new.received) == 1


def test_redirect_is_a_failure_and_not_followed(runtime, account, receiver):
    # given a receiver that redirects elsewhere
    receiver.replies = [(302, {"Location": receiver.url + "/elsewhere"}, "")]
    task_id, _ = finish_task(runtime, account.id)

    # when one attempt is made
    tick(runtime)

    # then nobody requested the Location, and the attempt is a failure to retry
    assert [r.path for r in receiver.received] == ["/hooks"]
    row = message(runtime, task_id=task_id)
    [attempt] = attempts(runtime, row["id"])
    assert attempt["status_code"] == 302
    assert attempt["error_class"] == "redirect"
    assert row["status"] == "pending"


def test_slow_receiver_times_out(runtime, account, receiver):
    # given a 0.5 s timeout and a receiver that takes 6 s (margins wide for a loaded machine)
    quick = with_settings(runtime, webhook_timeout_s=0.5)
    receiver.replies = [lambda: (time.sleep(6), (200, {}, "late"))[1]]
    task_id, _ = finish_task(runtime, account.id)

    # when one attempt is made
    started = time.monotonic()
    tick(quick)

    # then it gave up long before the receiver answered, and logged a timeout
    assert time.monotonic() - started < 5
    row = message(runtime, task_id=task_id)
    [attempt] = attempts(runtime, row["id"])
    assert attempt["error_class"] == "timeout"
    assert attempt["status_code"] is None
    assert 400 <= attempt["latency_ms"] < 5000
    assert row["status"] == "pending"


@contextmanager
def raw_receiver(head: bytes, drip: bytes = b"") -> Iterator[str]:
    """A raw HTTP receiver on loopback that reads the request, sends ``head``, then sends
    ``drip`` every 0.2 s until the client hangs up or 10 s have passed; its URL."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return  # closed with no request made
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            try:
                conn.sendall(head)
                for _ in range(50):
                    if stop.wait(0.2):
                        break
                    conn.sendall(drip)
            except OSError:
                pass  # the client hung up

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/hooks"
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


@pytest.mark.parametrize(
    ("head", "drip"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", b"x"),
        (b"HTTP/1.1 200 OK\r\n", b"X-Drip: x\r\n"),
    ],
    ids=["body", "headers"],
)
def test_receiver_dripping_bytes_times_out_within_the_timeout(runtime, make_account, head, drip):
    # given a 1 s timeout and a receiver that sends a byte or a header line every 0.2 s,
    # so no single read ever waits long
    quick = with_settings(runtime, webhook_timeout_s=1.0)
    with raw_receiver(head, drip) as url:
        acct = make_account(url)
        task_id, _ = finish_task(runtime, acct.id)

        # when one attempt is made
        started = time.monotonic()
        tick(quick)
        elapsed = time.monotonic() - started

    # then the attempt as a whole was cut off at the timeout, and logged as a timeout
    assert elapsed < 4
    row = message(runtime, task_id=task_id)
    [attempt] = attempts(runtime, row["id"])
    assert attempt["error_class"] == "timeout"
    assert attempt["status_code"] is None
    assert row["status"] == "pending"


def test_interim_responses_are_read_past_to_the_final_one(runtime, make_account):
    # given a receiver that sends 102 Processing and 103 Early Hints before its 200
    head = (
        b"HTTP/1.1 102 Processing\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    with raw_receiver(head) as url:
        acct = make_account(url)
        task_id, _ = finish_task(runtime, acct.id)

        # when one attempt is made
        tick(runtime)

    # then the final answer counts: the message is delivered
    row = message(runtime, task_id=task_id)
    [attempt] = attempts(runtime, row["id"])
    assert (attempt["status_code"], attempt["response_body"]) == (200, "ok")
    assert row["status"] == "delivered"


def test_a_receivers_text_in_the_error_detail_is_bounded(runtime, make_account):
    # given a receiver whose status line is 60 KB of its own text
    with raw_receiver(b"HTTP/1.1 2" + b"x" * 60_000 + b"\r\n\r\n") as url:
        acct = make_account(url)
        task_id, _ = finish_task(runtime, acct.id)

        # when one attempt is made
        tick(runtime)

    # then the attempt is a connection failure whose detail is cut to the response's bound
    [attempt] = attempts(runtime, message(runtime, task_id=task_id)["id"])
    assert attempt["error_class"] == "connection"
    assert "BadStatusLine" in attempt["error_detail"]
    assert len(attempt["error_detail"]) <= 2048


def test_abort_message_header_stops_retries(runtime, account, receiver):
    # given a receiver that refuses this message for good
    receiver.replies = [(400, {"webhook-delivery": "abort-message"}, "unknown task")]
    task_id, _ = finish_task(runtime, account.id)

    # when deliveries run for a while
    settle(runtime, 1.0)

    # then one attempt was made and the message is aborted
    assert len(receiver.received) == 1
    row = message(runtime, task_id=task_id)
    assert row["status"] == "aborted"
    assert row["failed_at"] is not None
    # and the endpoint is not counted as failing: it answered
    assert endpoint(runtime, account.id)["consecutive_failures"] == 0


def test_exhausted_retries_dead_letter_the_message(runtime, account, receiver):
    # given a receiver that always fails
    receiver.default = (500, {}, "down")
    task_id, _ = finish_task(runtime, account.id)

    # when deliveries run through the whole schedule
    drive(runtime, lambda: message(runtime, task_id=task_id)["status"] == "failed")
    settle(runtime, 0.8)

    # then it made exactly one attempt per schedule entry and stopped
    row = message(runtime, task_id=task_id)
    assert row["attempts"] == len(runtime.settings.webhook_schedule_s) == 4
    assert len(receiver.received) == 4
    assert row["failed_at"] is not None
    assert len(attempts(runtime, row["id"])) == 4
