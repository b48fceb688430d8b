"""Webhook dispatcher benchmark. Prints figures and ratios; it does not pass or fail.

    python bench/webhooks.py [--messages 3000] [--rounds 3] [--slices 3] [--tick-s 0.25]

Uses DATABASE_URL / REDIS_URL when set, else starts an embedded PostgreSQL and Redis in a
temporary directory. Everything runs on loopback: local receivers, a real ``celery worker -Q
webhooks --pool threads`` subprocess, and a scheduler loop in this process.

(a) dispatcher deliveries/s against a bare ``requests`` loop posting the same bodies to the same
    receiver, one after another.
(b) a healthy endpoint's throughput alone, then with a second endpoint that hangs until the
    timeout: the per-endpoint concurrency limit and the circuit breaker should keep the hanging
    one from slowing the healthy one (target: less than 10%).

Each round measures the three in alternating slices, so a change in the machine's load touches
all three alike; the spread over the rounds (worst, median, best) is printed with each ratio. The
receiver counts what it is sent, so the measurement adds no queries to the database.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import requests
from psycopg.types.json import Jsonb
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.services import services  # noqa: E402
from shared.accounts import create_account  # noqa: E402
from shared.runtime import build_runtime  # noqa: E402
from shared.settings import load_settings  # noqa: E402
from shared.webhooks import create_endpoint, dispatch_due_messages, envelope_body  # noqa: E402

TIMEOUT_S = 2.0
PAYLOAD = {
    "id": 1,
    "accountId": 1,
    "task_number": 1,
    "status": "completed",
    "handler": "agent",
    "title": "Check eligibility for W100000001",
    "instructions": "x" * 600,
    "startedAt": "2026-11-29T12:00:00.000Z",
    "completedAt": "2026-11-29T12:00:09.000Z",
    "failedAt": None,
    "notes": "Coverage active; copay $25.",
    "createdAt": "2026-11-29T11:59:58.000Z",
    "updatedAt": "2026-11-29T12:00:09.000Z",
    "trajectory_id": "6f1c1f0e-0000-4000-8000-000000000000",
}


class KeepAlive(WSGIRequestHandler):
    """HTTP/1.1, so connections are kept between requests as a production receiver keeps them
    (the development server closes each one otherwise, for the bare loop and the dispatcher
    alike)."""

    protocol_version = "HTTP/1.1"


class Served:
    """A WSGI app on a loopback port, in daemon threads."""

    def __init__(self, app) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=KeepAlive)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


class Counter:
    """Requests a receiver answered, for waiting without polling the database."""

    def __init__(self) -> None:
        self.n = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def add(self) -> None:
        with self._changed:
            self.n += 1
            self._changed.notify_all()

    def wait_for(self, n: int, timeout_s: float) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self.n >= n, timeout_s):
                raise SystemExit(f"only {self.n} of {n} deliveries in {timeout_s:.0f} s")


received = Counter()


@Request.application
def ok_receiver(request: Request) -> Response:
    request.get_data()
    received.add()
    return Response("ok")


@Request.application
def hanging_receiver(request: Request) -> Response:
    time.sleep(TIMEOUT_S + 1.0)  # longer than the dispatcher waits
    return Response("too late")


def add_messages(runtime, account_id: int, count: int) -> None:
    with runtime.pool.connection() as conn:
        conn.execute(
            "INSERT INTO webhook_messages (msg_id, account_id, event, payload, next_attempt_at)"
            " SELECT 'msg_bench_' || md5(random()::text), %s, 'task_finished', %s, now()"
            " FROM generate_series(1, %s)",
            (account_id, Jsonb(PAYLOAD), count),
        )


class Ticker(threading.Thread):
    """The scheduler's webhook duty, every ``tick_s``, until stopped."""

    def __init__(self, runtime, tick_s: float) -> None:
        super().__init__(daemon=True)
        self.runtime, self.tick_s = runtime, tick_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.tick_s):
            dispatch_due_messages(self.runtime, lock_s=30)


def run_until_delivered(count: int) -> float:
    """Seconds until the healthy receiver has been sent ``count`` more messages."""
    started, target = time.monotonic(), received.n + count
    received.wait_for(target, timeout_s=300)
    return time.monotonic() - started


def bare_loop(url: str, count: int) -> float:
    """The same signed bodies posted one after another with one requests.Session."""
    secret = "whsec_" + "A" * 43 + "="
    body = envelope_body(secret, event="task_finished", created_at="2026-11-29T12:00:09.000Z",
                         data=PAYLOAD)  # fmt: skip
    headers = {"Content-Type": "application/json", "webhook-id": "msg_x",
               "webhook-timestamp": "0", "webhook-signature": "v1,x"}  # fmt: skip
    with requests.Session() as session:
        started = time.monotonic()
        for _ in range(count):
            session.post(url, data=body, headers=headers, timeout=TIMEOUT_S, allow_redirects=False)
        return time.monotonic() - started


def start_worker(env: dict[str, str], threads: int, log_path: Path) -> subprocess.Popen:
    log = log_path.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "dispatcher.celery", "worker", "-Q", "webhooks",
         "--pool", "threads", "-c", str(threads), "--loglevel", "WARNING"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def spread(values: list[float]) -> str:
    ordered = sorted(values)
    median = statistics.median(ordered)
    return f"worst {ordered[0]:5.2f}  median {median:5.2f}  best {ordered[-1]:5.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slices", type=int, default=3, help="alternations per round")
    parser.add_argument("--hanging", type=int, default=200, help="messages to the hanging one")
    parser.add_argument("--tick-s", type=float, default=0.25, help="scheduler interval")
    parser.add_argument("--threads", type=int, default=16, help="dispatcher threads")
    parser.add_argument("--worker-log", type=Path, help="keep the dispatcher's log here")
    args = parser.parse_args()
    # A TERM (a timeout, a CI job cancelled) unwinds too, so the servers started are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request

    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp_name:
        tmp = Path(tmp_name)
        database_url, redis_url, cleanup = services(tmp)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("TRUNCATE webhook_attempts, webhook_messages, webhook_endpoints CASCADE")
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "UNDERSTUDY_RUN_DIR": str(tmp),
            "ENCRYPTION_KEYS": "",
            "WEBHOOK_ALLOW_PRIVATE": "true",
            "WEBHOOK_TIMEOUT_S": str(TIMEOUT_S),
            "DISPATCHER_CONCURRENCY": str(args.threads),
        }
        settings = load_settings(env)
        runtime = build_runtime(settings, pool_size=4)
        ok, hanging = Served(ok_receiver), Served(hanging_receiver)
        worker = start_worker(env, args.threads, tmp / "dispatcher.log")
        ticker = Ticker(runtime, args.tick_s)
        n = args.messages
        rounds: list[tuple[float, float, float]] = []
        try:
            with runtime.pool.connection() as conn:
                healthy = create_account(conn, "healthy")
                create_endpoint(conn, runtime.fernet, healthy, ok.url)
                slow = create_account(conn, "hanging")
                create_endpoint(conn, runtime.fernet, slow, hanging.url)
            ticker.start()
            # Warm up: the worker connects, pools fill, first-use costs are paid.
            add_messages(runtime, healthy, 50)
            run_until_delivered(50)
            part = n // args.slices
            for _ in range(args.rounds):
                bare_s = alone_s = shared_s = 0.0
                # The three in alternating slices, so that a change in the machine's load (it
                # is shared) falls on all three alike.
                for _ in range(args.slices):
                    bare_s += bare_loop(ok.url, part)
                    add_messages(runtime, healthy, part)
                    alone_s += run_until_delivered(part)
                    add_messages(runtime, slow, args.hanging // args.slices)
                    add_messages(runtime, healthy, part)
                    shared_s += run_until_delivered(part)
                done = part * args.slices
                rounds.append((done / bare_s, done / alone_s, done / shared_s))
            with runtime.pool.connection() as conn:
                hang = conn.execute(
                    "SELECT count(*) AS n FROM webhook_attempts a JOIN webhook_messages m"
                    " ON m.id = a.message_id WHERE m.account_id = %s",
                    (slow,),
                ).fetchone()["n"]
        finally:
            ticker.stopped.set()
            ticker.join(timeout=30)
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
            ok.close()
            if args.worker_log:
                args.worker_log.write_bytes((tmp / "dispatcher.log").read_bytes())
            runtime.close()
            for stop in cleanup:
                stop()
        # The hanging receiver's threads sleep on; they are daemons and end with the process.

    print(f"messages per measurement: {n} in {args.slices} alternating slices;"
          f" {args.rounds} rounds; dispatcher: celery --pool threads -c {args.threads};"
          f" tick {args.tick_s} s; timeout {TIMEOUT_S} s")  # fmt: skip
    print()
    print("round   bare loop   dispatcher   beside hanging   dispatcher/bare   beside/alone")
    for i, (bare, alone, beside) in enumerate(rounds, 1):
        print(f"{i:5d} {bare:9.1f}/s {alone:10.1f}/s {beside:14.1f}/s"
              f" {alone / bare:17.2f} {beside / alone:14.2f}")  # fmt: skip
    print()
    print("(a) dispatcher (sign + POST + attempt log + state) / bare requests loop (1 thread,")
    print("    keep-alive), same receiver:")
    print(f"    {spread([alone / bare for bare, alone, _ in rounds])}")
    print("(b) healthy endpoint beside one hanging until the timeout / alone:")
    print(
        f"    {spread([beside / alone for _, alone, beside in rounds])}   (target: worst >= 0.90)"
    )
    print(f"    attempts made to the hanging endpoint: {hang}"
          f" (of {args.rounds * args.hanging} messages; the breaker defers the rest)")  # fmt: skip


if __name__ == "__main__":
    main()
