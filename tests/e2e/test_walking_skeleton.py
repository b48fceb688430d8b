"""End to end: POST /tasks -> Celery -> agent in Chromium against the sandbox -> signed webhook."""

from __future__ import annotations

import json
import time

import pytest
from standardwebhooks.webhooks import Webhook

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


def test_eligibility_task_ends_in_a_verified_completed_webhook(e2e, make_account, receiver):
    # given an account whose webhook points at a local receiver
    account = make_account(webhook_url=receiver.url)
    # when it posts an eligibility check for the active test member
    task = e2e.post_task(account, "check_eligibility", JANE)
    # then the receiver gets one webhook that verifies with the standardwebhooks library
    [delivery] = receiver.wait_for(1, timeout_s=90)
    payload = Webhook(account.webhook_secret).verify(delivery["body"], delivery["headers"])
    assert payload["event"] == "task_finished"
    assert payload["data"]["id"] == task["id"]
    assert payload["data"]["status"] == "completed", payload["data"]["notes"]
    assert "Sandbox Gold PPO" in payload["data"]["notes"]
    assert payload["data"]["trajectory_id"] == task["trajectory_id"]
    # and the task reads back the same way through the API
    final = e2e.wait_for_task(account, task["id"], {"completed"})
    assert final["completedAt"] and final["startedAt"] and final["failedAt"] is None


MEMBERS = [
    pytest.param(JANE, "completed", ["Sandbox Gold PPO"], id="W100000001-active"),
    pytest.param(
        "member_id: W200000002\npatient: John Roe\nDOB: 1985-06-30",
        "completed_with_issues",
        ["inactive", "2024"],
        id="W200000002-terminated",
    ),
    pytest.param(
        "member_id: W300000003\npatient: Pat Nobody\nDOB: 1970-01-01",
        "completed_with_issues",
        ["not found"],
        id="W300000003-not-found",
    ),
    pytest.param(
        "member_id: W100000001\npatient: Jane Doe\nDOB: 1991-02-02",
        "completed_with_issues",
        ["date of birth"],
        id="W100000001-dob-mismatch",
    ),
    pytest.param(
        "member_id: W500000005\npatient: Error Case\nDOB: 1980-05-05",
        "failed",
        ["portal error"],
        id="W500000005-portal-error",
    ),
]


@pytest.mark.parametrize(("data", "status", "phrases"), MEMBERS)
def test_every_test_member_reaches_its_documented_outcome(
    e2e, make_account, receiver, data, status, phrases
):
    account = make_account(webhook_url=receiver.url)
    task = e2e.post_task(account, "check_eligibility", data)
    [delivery] = receiver.wait_for(1, timeout_s=120)
    finished = Webhook(account.webhook_secret).verify(delivery["body"], delivery["headers"])["data"]
    assert finished["id"] == task["id"]
    assert finished["status"] == status, finished["notes"]
    for phrase in phrases:
        assert phrase.lower() in finished["notes"].lower()
    if status == "failed":
        assert finished["failedAt"] is not None and finished["completedAt"] is None


def test_a_receiver_failing_twice_gets_the_same_message_three_times_then_no_more(
    e2e, make_account, receiver
):
    # given a receiver that answers 500, 500, then 200
    receiver.script = [500, 500, 200]
    account = make_account(webhook_url=receiver.url)
    e2e.post_task(account, "check_eligibility", JANE)
    # then it sees three deliveries of one message, each verifiable
    deliveries = receiver.wait_for(3, timeout_s=120)
    ids = {d["headers"]["Webhook-Id"] for d in deliveries}
    assert len(ids) == 1
    for delivery in deliveries:
        Webhook(account.webhook_secret).verify(delivery["body"], delivery["headers"])
    # and no more after the 200
    time.sleep(4)
    assert len(receiver.requests) == 3
    assert [json.loads(d["body"])["event"] for d in deliveries] == ["task_finished"] * 3
