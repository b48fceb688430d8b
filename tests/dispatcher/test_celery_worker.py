"""The whole path through Redis: a real ``celery worker -Q webhooks --pool threads`` process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from shared.webhooks import dispatch_due_messages
from tests.dispatcher.support import attempts, finish_task, message

ROOT = Path(__file__).resolve().parents[2]


def test_celery_worker_delivers_through_redis(runtime, settings, account, receiver, tmp_path):
    # given a dispatcher worker process configured like production, pointed at the test services
    env = {
        **os.environ,
        "DATABASE_URL": runtime.database_url,
        "REDIS_URL": settings.redis_url,
        "UNDERSTUDY_RUN_DIR": str(settings.run_dir),  # the same dev encryption key file
        "ENCRYPTION_KEYS": "",
        "WEBHOOK_ALLOW_PRIVATE": "true",
        "WEBHOOK_SCHEDULE_S": "0,0.3,0.6",
        "WEBHOOK_JITTER": "0",
    }
    log_path = tmp_path / "dispatcher.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "dispatcher.celery", "worker",
             "-Q", "webhooks", "--pool", "threads", "-c", "4", "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        # and a receiver that fails once, and a finished task
        receiver.replies = [(503, {}, "warming up")]
        task_id, payload = finish_task(runtime, account.id)

        # when the scheduler's webhook tick runs until the message is delivered
        deadline = time.monotonic() + 30
        while message(runtime, task_id=task_id)["status"] != "delivered":
            assert worker.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            dispatch_due_messages(runtime, lock_s=5)
            time.sleep(0.1)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()

    # then the worker sent it twice with one webhook-id, and logged both attempts
    ids = receiver.ids()
    assert len(ids) == 2 and len(set(ids)) == 1
    row = message(runtime, task_id=task_id)
    assert [a["status_code"] for a in attempts(runtime, row["id"])] == [503, 200]
