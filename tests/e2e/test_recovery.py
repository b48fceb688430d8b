"""Nothing is lost: a worker killed mid-task leaves a lease that the scheduler recovers."""

from __future__ import annotations

import os
import signal
import time

import requests

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


def _claimed_by(runtime, task_id: int, timeout_s: float = 60) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with runtime.pool.connection() as conn:
            row = conn.execute(
                "SELECT status, claimed_by FROM tasks WHERE id = %s", (task_id,)
            ).fetchone()
        if row["status"] == "running" and row["claimed_by"]:
            return row["claimed_by"]
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} was never claimed")


def test_a_worker_killed_mid_task_is_retried_and_the_task_completes(
    e2e, runtime, make_account, receiver
):
    # given a slow portal, so the task is still running when its worker dies
    e2e.sandbox_faults(slow_s=1.0, modal="never")
    account = make_account(webhook_url=receiver.url)
    task = requests.post(
        f"{e2e.api_url}/tasks",
        json={"type": "check_eligibility", "data": JANE},
        headers=account.headers,
        timeout=10,
    ).json()
    # when the worker process that claimed it is killed outright
    worker_pid = int(_claimed_by(runtime, task["id"]).split(":")[1])
    os.kill(worker_pid, signal.SIGKILL)
    e2e.sandbox_faults(slow_s=0)
    # then the lease expires, the scheduler hands the task out again, and it completes once
    final = e2e.wait_for_task(account, task["id"], {"completed", "failed"}, timeout_s=120)
    assert final["status"] == "completed", final["notes"]
    assert final["attempts"] == 2
    receiver.wait_for(1)
    time.sleep(2)
    assert len(receiver.requests) == 1
