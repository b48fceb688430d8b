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
