"""The Python client and the CLI against the whole stack: a task waited for until it completes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from standardwebhooks.webhooks import Webhook
from understudy_client import Understudy, verify_webhook

from api.openapi import TASK_EXAMPLES

CLI = str(Path(sys.executable).parent / "understudy")


def test_client_waits_until_completed_and_verifies_the_webhook(e2e, make_account, receiver):
    account = make_account(webhook_url=receiver.url)
    api = Understudy(e2e.api_url, account.api_key)
    task = api.create_task("check_eligibility", TASK_EXAMPLES["check_eligibility"])

    done = api.wait(task, timeout=120, poll_s=0.5)

    assert done["status"] == "completed", done["notes"]
    assert "Sandbox Gold PPO" in done["notes"]
    steps = api.get_trajectory(done["id"])["steps"]
    assert steps and all(s["status"] != "failed" for s in steps), steps
    [delivery] = receiver.wait_for(1, timeout_s=60)
    envelope = verify_webhook(delivery["body"], delivery["headers"], account.webhook_secret)
    assert envelope == Webhook(account.webhook_secret).verify(delivery["body"], delivery["headers"])
    assert envelope["data"]["id"] == done["id"]

    # and the CLI, pointed at the same server by the environment, waits the same way
    env = {**os.environ, "UNDERSTUDY_URL": e2e.api_url, "UNDERSTUDY_API_KEY": account.api_key}
    created = subprocess.run(
        [CLI, "tasks", "create", "check_claim_status", "--data",
         TASK_EXAMPLES["check_claim_status"], "--wait", "--timeout", "120", "--json"],
        capture_output=True, text=True, env=env, timeout=180, check=False,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    final = json.loads(created.stdout)
    assert final["status"] == "completed" and "paid" in final["notes"].lower()


def test_a_batch_from_the_cli_runs_every_task_and_signs_a_webhook_for_each(
    e2e, make_account, receiver, tmp_path
):
    # given a CSV of three eligibility checks with three different outcomes, and an endpoint
    # that also wants to hear when the whole batch has ended
    account = make_account(webhook_url=receiver.url)
    Understudy(e2e.api_url, account.api_key).update_webhook_endpoint(
        filter_types=["task_finished", "batch.finished"]
    )
    sheet = tmp_path / "checks.csv"
    sheet.write_text(
        "member_id,patient,dob\n"
        "W100000001,Jane Doe,1990-01-15\n"
        "W200000002,John Roe,1985-06-30\n"
        "W300000003,Ann Smith,1970-02-02\n"
    )
    env = {**os.environ, "UNDERSTUDY_URL": e2e.api_url, "UNDERSTUDY_API_KEY": account.api_key}
    # when the CLI sends it as one batch and waits
    sent = subprocess.run(
        [CLI, "tasks", "batch", str(sheet), "--type", "check_eligibility", "--wait",
         "--timeout", "180", "--json"],
        capture_output=True, text=True, env=env, timeout=240, check=False,
    )  # fmt: skip
    # then every check ran on the portal and ended as its member does
    assert sent.returncode == 0, sent.stderr
    finals = json.loads(sent.stdout)
    assert [t["status"] for t in finals] == [
        "completed", "completed_with_issues", "completed_with_issues"
    ], [t["notes"] for t in finals]  # fmt: skip
    assert "Sandbox Gold PPO" in finals[0]["notes"]
    # and each has its own signed webhook, and the batch one more once all three ended
    deliveries = receiver.wait_for(4, timeout_s=60)
    events = [verify_webhook(d["body"], d["headers"], account.webhook_secret) for d in deliveries]
    finished = [e["data"]["id"] for e in events if e["event"] == "task_finished"]
    assert sorted(finished) == sorted(t["id"] for t in finals)
    [batch] = [e["data"] for e in events if e["event"] == "batch.finished"]
    assert batch["task_ids"] == [t["id"] for t in finals] and batch["finished"] is True
    assert batch["counts"] == {"completed": 1, "completed_with_issues": 2}
