"""Test support for webhook deliveries: a real HTTP receiver, task rows, and the scheduler's claim
plus the dispatcher's delivery run in the test's thread."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from werkzeug.wrappers import Request, Response

from dispatcher.delivery import deliver_message
from shared.runtime import Runtime
from shared.webhooks import claim_due_messages, enqueue_task_finished
from tests.conftest import ServedApp
from tests.docs.test_readme_examples import documented_body_check

Reply = tuple[int, dict[str, str], str]


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    path: str


@dataclass
class Receiver:
    """A webhook receiver on a loopback port. ``replies`` are used in order, then ``default``;
    a reply may be a callable run per request (to sleep, for instance)."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    replies: list[Reply | Callable[[], Reply]] = field(default_factory=list)
    default: Reply = (200, {}, "ok")
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ, start_response):
        request = Request(environ)
        with self.lock:
            self.received.append(Received(dict(request.headers), request.get_data(), request.path))
            reply = self.replies.pop(0) if self.replies else self.default
        if callable(reply):
            reply = reply()
        status, headers, text = reply
        return Response(text, status=status, headers=headers)(environ, start_response)

    def ids(self) -> list[str]:
        return [r.headers["Webhook-Id"] for r in self.received]


@dataclass
class Account:
    id: int
    secret: str


def insert_task(runtime: Runtime, account_id: int, status: str = "completed") -> int:
    """A bare finished task row, enough for a message to point at."""
    with runtime.pool.connection() as conn:
        sop = conn.execute(
            "INSERT INTO sops (task_type, version, body, digest)"
            " VALUES ('check_eligibility', 1, 'steps: []', md5(random()::text)) RETURNING id"
        ).fetchone()
        seq = conn.execute(
            "UPDATE accounts SET task_seq = task_seq + 1 WHERE id = %s RETURNING task_seq",
            (account_id,),
        ).fetchone()
        row = conn.execute(
            "INSERT INTO tasks (account_id, task_number, type, status, title, instructions,"
            " sop_id, completed_at) VALUES (%s, %s, 'check_eligibility', %s, 'Check', 'SOP',"
            " %s, now()) RETURNING id",
            (account_id, seq["task_seq"], status, sop["id"]),
        ).fetchone()
    return int(row["id"])


def finish_task(runtime: Runtime, account_id: int, **extra) -> tuple[int, dict]:
    """A finished task and its task_finished message, as the worker writes them."""
    task_id = insert_task(runtime, account_id)
    payload = {"id": task_id, "accountId": account_id, "status": "completed", **extra}
    payload.setdefault("trajectory_id", "6f1c1f0e-0000-4000-8000-000000000000")
    with runtime.pool.connection() as conn:
        enqueue_task_finished(conn, account_id=account_id, task_id=task_id, payload=payload)
    return task_id, payload


def tick(runtime: Runtime, *, lock_s: float = 30.0) -> int:
    """One scheduler tick and its deliveries, in this thread. Returns how many were claimed."""
    with runtime.pool.connection() as conn:
        ids = claim_due_messages(conn, limit=100, lock_s=lock_s, settings=runtime.settings)
    for message_id in ids:
        deliver_message(runtime, message_id)
    return len(ids)


def drive(runtime: Runtime, until: Callable[[], bool], *, timeout_s: float = 10.0) -> None:
    """Tick until ``until()`` holds (a compressed schedule makes retries come quickly)."""
    deadline = time.monotonic() + timeout_s
    while not until():
        if time.monotonic() > deadline:
            raise AssertionError("webhook deliveries did not settle in time")
        tick(runtime)
        time.sleep(0.05)


def message(runtime: Runtime, **where) -> dict:
    """The one message matching ``where`` (column = value)."""
    clause = " AND ".join(f"{key} = %s" for key in where) or "true"
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            f"SELECT * FROM webhook_messages WHERE {clause}", list(where.values())
        ).fetchall()
    assert len(rows) == 1, rows
    return rows[0]


def attempts(runtime: Runtime, message_id: int) -> list[dict]:
    with runtime.pool.connection() as conn:
        return conn.execute(
            "SELECT * FROM webhook_attempts WHERE message_id = %s ORDER BY id", (message_id,)
        ).fetchall()


def endpoint(runtime: Runtime, account_id: int) -> dict:
    with runtime.pool.connection() as conn:
        return conn.execute(
            "SELECT * FROM webhook_endpoints WHERE account_id = %s", (account_id,)
        ).fetchone()


@contextmanager
def served_receiver() -> Iterator[Receiver]:
    """A :class:`Receiver` listening on a loopback port for the duration."""
    recv = Receiver()
    served = ServedApp(recv)
    recv.url = served.url + "/hooks"
    try:
        yield recv
    finally:
        served.close()


def with_settings(runtime: Runtime, **changes) -> Runtime:
    """The same pool and cipher with some settings changed, as another process would have."""
    return dataclasses.replace(runtime, settings=runtime.settings.replace(**changes))


def set_endpoint(runtime: Runtime, account_id: int, **columns) -> None:
    """Change endpoint columns directly, to stand in for time passing."""
    sets = ", ".join(f"{key} = {value}" for key, value in columns.items())
    with runtime.pool.connection() as conn:
        conn.execute(f"UPDATE webhook_endpoints SET {sets} WHERE account_id = %s", (account_id,))


def verify_body_signature(secret: str, body: bytes) -> bool:
    """``body_signature_ok`` as docs/webhooks.md shows it to receivers, run as written."""
    return documented_body_check()(secret, body)
