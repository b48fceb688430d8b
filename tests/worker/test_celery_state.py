"""A task that ends `failed` is a FAILURE in Celery too, so a monitor (Flower) tells the truth.

A real `celery worker -Q agent` process, as the Procfile runs it, and the task events it sends
through the real Redis, read as a monitor reads them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


class Events:
    """Every task event on the broker, captured in a thread as Flower would."""

    def __init__(self, app) -> None:
        self.seen: list[dict] = []
        self._app = app
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._capture, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def _capture(self) -> None:
        with self._app.connection_for_read() as conn:
            self.receiver = self._app.events.Receiver(conn, handlers={"*": self.seen.append})
            self._ready.set()
            self.receiver.capture(limit=None, timeout=None, wakeup=False)

    def of_task(self, task_id: int) -> list[dict]:
        """The events of the Celery task(s) whose argument was this task id."""
        uuids = {
            e["uuid"]
            for e in self.seen
            if e["type"] == "task-received" and e.get("args") in (f"[{task_id}]", f"({task_id},)")
        }
        return [e for e in self.seen if e.get("uuid") in uuids]

    def stop(self) -> None:
        self.receiver.should_stop = True
        self._thread.join(timeout=5)


def _types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def test_a_failed_task_is_a_celery_failure_and_a_skipped_one_a_success(
    client, make_account, runtime, settings, tmp_path
):
    # given a task whose portal credentials were deleted after it was queued (it will end
    # `failed` without a browser), and a task canceled while queued (the worker skips it)
    account = make_account()
    create = {"type": "check_eligibility", "data": JANE}
    failing = client.post("/tasks", json=create, headers=account.headers).get_json()
    skipped = client.post("/tasks", json=create, headers=account.headers).get_json()
    assert client.post(f"/tasks/{skipped['id']}/cancel", headers=account.headers).status_code == 200
    with runtime.pool.connection() as conn:
        conn.execute("DELETE FROM portal_credentials WHERE account_id = %s", (account.id,))
    events = Events(runtime.celery)

    # when an agent worker, started as the Procfile starts it, takes both messages
    env = {
        **os.environ,
        "DATABASE_URL": runtime.database_url,
        "REDIS_URL": settings.redis_url,
        "UNDERSTUDY_RUN_DIR": str(settings.run_dir),  # the same dev encryption key file
        "ENCRYPTION_KEYS": "",
        "WORKSPACE_DIR": str(tmp_path / "work"),
        "LOG_FORMAT": "json",
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.celery", "worker", "-Q", "agent",
             "--pool", "prefork", "--concurrency", "1", "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (
            "task-failed" in _types(events.of_task(failing["id"]))
            and "task-succeeded" in _types(events.of_task(skipped["id"]))
        ):
            assert worker.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, (events.seen, log_path.read_text())
            time.sleep(0.2)
        time.sleep(1)  # long enough for a retry or a redelivery to show, were there one
        alive = worker.poll() is None
    finally:
        events.stop()
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()

    # then Celery recorded the failed task as a FAILURE, once: no retry, no redelivery
    failed = events.of_task(failing["id"])
    assert _types(failed).count("task-received") == 1, failed
    assert "task-retried" not in _types(failed) and "task-succeeded" not in _types(failed)
    [failure] = [e for e in failed if e["type"] == "task-failed"]
    assert "TaskEndedFailed" in failure["exception"]
    # and the skipped one as a SUCCESS; the worker kept running
    assert "task-failed" not in _types(events.of_task(skipped["id"]))
    assert alive
    # and Postgres says what it said before: failed, with its note and its webhook message
    with runtime.pool.connection() as conn:
        row = conn.execute(
            "SELECT status, notes FROM tasks WHERE id = %s", (failing["id"],)
        ).fetchone()
        messages = conn.execute(
            "SELECT count(*) AS n FROM webhook_messages WHERE task_id = %s", (failing["id"],)
        ).fetchone()
    assert row["status"] == "failed" and "No credentials are stored" in row["notes"]
    assert messages["n"] == 1
    # and the worker logged the failure as an expected outcome: INFO, no traceback
    text = log_path.read_text()
    assert "raised expected" in text and "Traceback" not in text
