"""Nothing is lost: a worker killed mid-task leaves a lease that the scheduler recovers."""

from __future__ import annotations

import time

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


def test_a_worker_killed_mid_task_is_retried_and_the_task_completes(
    e2e, runtime, make_account, receiver
):
    # given a slow portal, so the task is still running when its worker dies
    e2e.sandbox_faults(slow_s=1.0, modal="never")
    account = make_account(webhook_url=receiver.url)
    task = e2e.post_task(account, "check_eligibility", JANE)
    # when the worker process that claimed it is killed outright
    e2e.kill_worker_running(runtime, task["id"])
    e2e.sandbox_faults(slow_s=0)
    # then the lease expires, the scheduler hands the task out again, and it completes once
    final = e2e.wait_for_task(account, task["id"], {"completed", "failed"}, timeout_s=120)
    assert final["status"] == "completed", final["notes"]
    assert final["attempts"] == 2
    receiver.wait_for(1)
    time.sleep(2)
    assert len(receiver.requests) == 1
