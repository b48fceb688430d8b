"""Passwords and TOTP secrets never appear in logs, API responses or trajectories."""

from __future__ import annotations

import requests

from shared.cli import SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


def test_no_secret_in_logs_responses_or_trajectory(e2e, make_account, receiver):
    # given a task run with the sandbox credentials, MFA by TOTP, a screenshot of every failure
    account = make_account(webhook_url=receiver.url)
    headers = account.headers
    task = e2e.post_task(account, "check_eligibility", JANE)
    e2e.wait_for_task(account, task["id"], {"completed"})
    receiver.wait_for(1)
    # when we read everything a client or an operator can see
    seen = [
        requests.get(f"{e2e.api_url}{path}", headers=headers, timeout=10).text
        for path in (
            f"/tasks/{task['id']}",
            "/tasks",
            f"/tasks/{task['id']}/trajectory",
            "/credentials",
            "/portals",
            "/sops/check_eligibility",
            "/webhooks/messages",
        )
    ]
    seen += [r["body"] for r in receiver.requests]
    seen.append(e2e.log.read_text(errors="replace"))
    # then neither the password nor the TOTP secret is anywhere in it
    for text in seen:
        assert SANDBOX_PASSWORD not in text
        assert SANDBOX_TOTP_SECRET not in text
