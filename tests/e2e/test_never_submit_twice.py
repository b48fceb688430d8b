"""A task killed right after its submit click never submits twice, and never stays running."""

from __future__ import annotations

import time

import requests

CLAIM = (
    "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15\nprovider_npi: 1234567893\n"
    "line 1: 99213, J06.9, 125.00, 2025-03-20"
)


def _submitted_claims(stack) -> list[dict]:
    return requests.get(f"{stack.sandbox_url}/__sandbox/submissions", timeout=5).json()["claims"]


def test_worker_killed_after_the_submit_click_leaves_exactly_one_submission(
    e2e, runtime, make_account, receiver
):
    # given a payer that records a claim at once but confirms it slowly
    e2e.sandbox_faults(modal="never", spinner_s=0.2, slow_page_s=0.2, slow_submit_s=8)
    account = make_account(webhook_url=receiver.url)
    task = e2e.post_task(account, "submit_claim", CLAIM)
    # when the worker is killed once the portal holds the claim, before it saw the confirmation
    deadline = time.monotonic() + 90
    while not _submitted_claims(e2e) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _submitted_claims(e2e), "the claim was never submitted"
    e2e.kill_worker_running(runtime, task["id"])
    e2e.sandbox_faults(slow_submit_s=0)
    # then the retry verifies instead of submitting again, and the task ends
    final = e2e.wait_for_task(
        account, task["id"], {"completed", "completed_with_issues", "failed"}, timeout_s=120
    )
    claims = _submitted_claims(e2e)
    assert len(claims) == 1
    assert final["status"] in {"completed", "completed_with_issues"}, final["notes"]
    assert final["attempts"] == 2
    if final["status"] == "completed":
        assert claims[0]["reference"] in final["notes"]
    receiver.wait_for(1)
