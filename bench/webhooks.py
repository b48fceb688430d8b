"""Webhook dispatcher benchmark. Prints figures and ratios; it does not pass or fail.

    python bench/webhooks.py [--messages 1000] [--tick-s 0.25] [--threads 16]

Uses DATABASE_URL / REDIS_URL when set, else starts an embedded PostgreSQL and Redis in a
temporary directory. Everything runs on loopback: local receivers, a real ``celery worker -Q
webhooks --pool threads`` subprocess, and a scheduler loop in this process.

(a) dispatcher deliveries/s against a bare ``requests`` loop posting the same bodies to the same
    receiver, one after another.
(b) a healthy endpoint's throughput alone, then with a second endpoint that hangs until the
    timeout: the per-endpoint concurrency limit and the circuit breaker should keep the hanging
    one from slowing the healthy one (target: less than 10%).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import requests
from psycopg.types.json import Jsonb
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared import embedded  # noqa: E402
from shared.accounts import create_account  # noqa: E402
from shared.db import migrate  # noqa: E402
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


class Served:
    """A WSGI app on a loopback port, in daemon threads."""

    def __init__(self, app) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@Request.application
def ok_receiver(request: Request) -> Response:
    request.get_data()
    return Response("ok")


@Request.application
def hanging_receiver(request: Request) -> Response:
    time.sleep(TIMEOUT_S + 1.0)  # longer than the dispatcher waits
    return Response("too late")


def services(tmp: Path) -> tuple[str, str, list]:
    settings = load_settings()
    cleanup: list = []
    database_url = settings.database_url
    if not database_url:
        database_url, pg = embedded.start_postgres(tmp / "pg", stop_on_exit=True)
        cleanup.append(pg.cleanup)
    migrate(database_url)
    redis_url = settings.redis_url
    if not redis_url:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        redis_server = embedded.RedisServer(tmp / "redis", port).start()
        redis_url = redis_server.url
        cleanup.append(redis_server.stop)
    return database_url, redis_url, cleanup


def add_messages(runtime, account_id: int, count: int) -> None:
    with runtime.pool.connection() as conn:
        conn.execute(
            "INSERT INTO webhook_messages (msg_id, account_id, event, payload, next_attempt_at)"
            " SELECT 'msg_bench_' || md5(random()::text), %s, 'task_finished', %s, now()"
            " FROM generate_series(1, %s)",
            (account_id, Jsonb(PAYLOAD), count),
        )


def delivered(runtime, account_id: int) -> int:
    with runtime.pool.connection() as conn:
        return conn.execute(
            "SELECT count(*) AS n FROM webhook_messages"
            " WHERE account_id = %s AND status = 'delivered'",
            (account_id,),
        ).fetchone()["n"]


def run_until_delivered(runtime, account_id: int, count: int, tick_s: float) -> float:
    """Scheduler ticks until ``count`` messages of the account are delivered; the seconds taken."""
    started = time.monotonic()
    next_tick = started
    while delivered(runtime, account_id) < count:
        if time.monotonic() >= next_tick:
            dispatch_due_messages(runtime, lock_s=30)
            next_tick += tick_s
        if time.monotonic() - started > 300:
            raise SystemExit("deliveries did not finish in 5 minutes")
        time.sleep(0.02)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--hanging", type=int, default=200, help="messages to the hanging one")
    parser.add_argument("--tick-s", type=float, default=0.25, help="scheduler interval")
    parser.add_argument("--threads", type=int, default=16, help="dispatcher threads")
    parser.add_argument("--worker-log", type=Path, help="keep the dispatcher's log here")
    args = parser.parse_args()
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
        try:
            with runtime.pool.connection() as conn:
                healthy = create_account(conn, "healthy")
                create_endpoint(conn, runtime.fernet, healthy, ok.url)
                slow = create_account(conn, "hanging")
                create_endpoint(conn, runtime.fernet, slow, hanging.url)
            # Warm up: the worker connects, pools fill, first-use costs are paid.
            add_messages(runtime, healthy, 50)
            run_until_delivered(runtime, healthy, 50, args.tick_s)

            n = args.messages
            bare_s = bare_loop(ok.url, n)
            add_messages(runtime, healthy, n)
            alone_s = run_until_delivered(runtime, healthy, 50 + n, args.tick_s)

            add_messages(runtime, slow, args.hanging)
            add_messages(runtime, healthy, n)
            shared_s = run_until_delivered(runtime, healthy, 50 + 2 * n, args.tick_s)
            with runtime.pool.connection() as conn:
                hang = conn.execute(
                    "SELECT count(*) AS n FROM webhook_attempts a JOIN webhook_messages m"
                    " ON m.id = a.message_id WHERE m.account_id = %s",
                    (slow,),
                ).fetchone()["n"]
        finally:
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

    bare_rate, alone_rate, shared_rate = n / bare_s, n / alone_s, n / shared_s
    print(f"messages per run: {n}; dispatcher: celery --pool threads -c {args.threads};"
          f" scheduler tick {args.tick_s} s; timeout {TIMEOUT_S} s")  # fmt: skip
    print()
    print("(a) throughput to one healthy endpoint")
    print(f"    bare requests loop (1 thread, keep-alive) {bare_rate:10.1f} msg/s")
    print(f"    dispatcher (sign + POST + log + state)    {alone_rate:10.1f} msg/s")
    print(f"    ratio dispatcher / bare                   {alone_rate / bare_rate:10.2f}")
    print()
    print("(b) healthy endpoint with a second endpoint hanging until the timeout")
    print(f"    healthy alone                             {alone_rate:10.1f} msg/s")
    print(f"    healthy beside the hanging endpoint       {shared_rate:10.1f} msg/s")
    print(f"    ratio beside / alone                      {shared_rate / alone_rate:10.2f}"
          f"   (slowdown {max(0.0, 1 - shared_rate / alone_rate):.1%}; target < 10%)")  # fmt: skip
    print(f"    attempts made to the hanging endpoint     {hang:10d}"
          f"   (of {args.hanging} messages; the breaker defers the rest)")  # fmt: skip


if __name__ == "__main__":
    main()
