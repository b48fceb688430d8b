"""The scheduler of the running stack deletes a task once it ended more than its account's
retention ago: the clinic's client then finds neither the task nor its trajectory."""

from __future__ import annotations

import time

import requests

from api.openapi import TASK_EXAMPLES


def test_the_running_scheduler_deletes_a_task_past_its_retention(e2e, make_account, runtime):
    # given a check that ran on the portal, and one that is kept
    account = make_account()
    old, kept = (
        e2e.post_task(account, "check_eligibility", TASK_EXAMPLES["check_eligibility"])["id"]
        for _ in range(2)
    )
    for task_id in (old, kept):
        e2e.wait_for_task(account, task_id, {"completed"}, timeout_s=120)
    trajectory = f"{e2e.api_url}/tasks/{old}/trajectory"
    assert requests.get(trajectory, headers=account.headers, timeout=5).json()["steps"]

    # when 91 days pass for the first (its end moved back, as the days would)
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE tasks SET completed_at = completed_at - interval '91 days' WHERE id = %s",
            (old,),
        )

    # then within the scheduler's next passes it is gone for the client, trajectory and all
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = requests.get(f"{e2e.api_url}/tasks/{old}", headers=account.headers, timeout=5)
        if got.status_code == 404:
            break
        time.sleep(0.5)
    assert got.status_code == 404, got.text
    assert requests.get(trajectory, headers=account.headers, timeout=5).status_code == 404
    # and the other is still there
    got = requests.get(f"{e2e.api_url}/tasks/{kept}", headers=account.headers, timeout=5)
    assert got.status_code == 200 and got.json()["status"] == "completed"
