"""A task that failed on a wrong stored password completes once the password is fixed and the
task is sent again, through the running stack and the real portal."""

from __future__ import annotations

import requests

from api.openapi import TASK_EXAMPLES
from cli.local import SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET, SANDBOX_USERNAME


def _login(e2e, account, password: str) -> None:
    response = requests.put(
        f"{e2e.api_url}/credentials/sandbox",
        json={"username": SANDBOX_USERNAME, "password": password,
              "totp_secret": SANDBOX_TOTP_SECRET},
        headers=account.headers, timeout=10,
    )  # fmt: skip
    assert response.status_code == 200, response.text


def test_a_check_failed_on_a_wrong_password_completes_when_sent_again(e2e, make_account):
    # given a check that failed because the stored password was wrong
    account = make_account()
    _login(e2e, account, "not-the-password")
    first = e2e.post_task(account, "check_eligibility", TASK_EXAMPLES["check_eligibility"])
    failed = e2e.wait_for_task(account, first["id"], {"failed", "completed"}, timeout_s=120)
    assert failed["status"] == "failed" and "rejected the stored credentials" in failed["notes"]

    # when the clinic fixes the password and sends the task again
    _login(e2e, account, SANDBOX_PASSWORD)
    response = requests.post(
        f"{e2e.api_url}/tasks/{first['id']}/retry", headers=account.headers, timeout=10
    )
    assert response.status_code == 200, response.text
    again = response.json()

    # then the new task runs on the portal and completes with the member's coverage
    assert again["retry_of"] == first["id"] and again["data"] == first["data"]
    done = e2e.wait_for_task(account, again["id"], {"completed", "failed"}, timeout_s=120)
    assert done["status"] == "completed", done["notes"]
    assert done["result"]
    # and the first one is still the failure it was
    old = requests.get(f"{e2e.api_url}/tasks/{first['id']}", headers=account.headers, timeout=5)
    assert old.json()["status"] == "failed"
