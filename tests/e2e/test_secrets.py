"""Passwords and TOTP secrets never appear in logs, API responses or trajectories."""

from __future__ import annotations

import requests

from cli.local import SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET

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


CREATE_USER_SOP = """
task_type: submit_appeal
title: Create a portal user
portal: sandbox
inputs:
  - {name: new_username, required: true}
  - {name: new_user_password, required: true, sensitive: true}
steps:
  - login: {url: /users/new}
  - dismiss_if_present: {button: Dismiss, within: {role: dialog}, wait_s: 1}
  - fill: {label: New Username, value: "{{ new_username }}"}
  - fill: {label: New Password, secret: new_user_password}
  - fill: {label: Confirm Password, secret: new_user_password}
  - click: {button: Create user}
  - wait_for: {text: was created}
outcomes:
  - status: completed
    notes: "Created {{ new_username }}."
"""
NEW_PASSWORD = "Hx7-quartz-Lantern"


def test_a_sensitive_input_is_stars_in_answers_webhooks_and_logs(e2e, make_account, receiver):
    # given an account SOP that types a task's own password into the portal
    account = make_account(webhook_url=receiver.url)
    put = requests.put(
        f"{e2e.api_url}/sops/submit_appeal",
        data=CREATE_USER_SOP,
        headers={**account.headers, "Content-Type": "text/yaml"},
        timeout=10,
    )
    assert put.status_code == 201, put.text
    # when a task sends that password and the whole stack runs it
    data = f"new_username: jdoe\nnew_user_password: {NEW_PASSWORD}"
    task = e2e.post_task(account, "submit_appeal", data)
    e2e.wait_for_task(account, task["id"], {"completed"})
    [hook] = receiver.wait_for(1)
    # then the webhook, the API answers and the processes' logs show it only as ***
    assert "new_user_password: ***" in hook["body"]
    seen = [hook["body"], e2e.log.read_text(errors="replace")]
    seen += [
        requests.get(f"{e2e.api_url}{path}", headers=account.headers, timeout=10).text
        for path in (f"/tasks/{task['id']}", f"/tasks/{task['id']}/trajectory")
    ]
    for text in seen:
        assert NEW_PASSWORD not in text and NEW_PASSWORD[::-1] not in text
