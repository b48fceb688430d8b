"""Every test member of every task type, through the API, the agent and a verified webhook."""

from __future__ import annotations

import pytest
import requests
from standardwebhooks.webhooks import Webhook

NPI = "provider_npi: 1234567893"
JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"
LINE = "line 1: 99213, J06.9, 125.00, 2025-03-20"
PA = f"{NPI}\ncpt: 72148\nicd10: M54.5\nclinical_notes: Low back pain for 8 weeks despite therapy."


def _patient(member: str, name: str, dob: str) -> str:
    return f"member_id: {member}\npatient: {name}\nDOB: {dob}"


CASES = [
    # submit_claim
    ("submit_claim", f"{JANE}\n{NPI}\n{LINE}", "completed", ["CLM-"]),
    (
        "submit_claim",
        f"{_patient('W200000002', 'John Roe', '1985-06-30')}\n{NPI}\n{LINE}",
        "completed_with_issues",
        ["rejected", "inactive"],
    ),
    (
        "submit_claim",
        f"{_patient('W300000003', 'Pat Nobody', '1970-01-01')}\n{NPI}\n{LINE}",
        "completed_with_issues",
        ["not found"],
    ),
    # submit_prior_authorization
    ("submit_prior_authorization", f"{JANE}\n{PA}", "completed", ["PA-", "approved"]),
    (
        "submit_prior_authorization",
        f"{_patient('W600000006', 'Maria Garcia', '1975-03-02')}\n{PA}",
        "completed_with_issues",
        ["PA-", "pended"],
    ),
    (
        "submit_prior_authorization",
        f"{_patient('W700000007', 'Li Wei', '1968-11-20')}\n{PA}",
        "completed_with_issues",
        ["PA-", "more information"],
    ),
    (
        "submit_prior_authorization",
        f"{_patient('W800000008', 'Sam Patel', '2001-07-04')}\n{PA}",
        "completed_with_issues",
        ["PA-", "denied"],
    ),
    (
        "submit_prior_authorization",
        f"{_patient('W300000003', 'Pat Nobody', '1970-01-01')}\n{PA}",
        "completed_with_issues",
        ["not found"],
    ),
    # submit_appeal
    (
        "submit_appeal",
        "claim_number: CLM-DENY-0003\nmember_id: W100000001\nreason: Necessary care",
        "completed",
        ["APL-"],
    ),
    (
        "submit_appeal",
        "claim_number: CLM-PAID-0001\nmember_id: W100000001\nreason: Underpaid",
        "completed_with_issues",
        ["not eligible"],
    ),
    (
        "submit_appeal",
        "claim_number: CLM-NOPE-9999\nmember_id: W100000001\nreason: Please review",
        "completed_with_issues",
        ["not found"],
    ),
    # check_claim_status
    ("check_claim_status", "claim_number: CLM-PAID-0001", "completed", ["paid", "96.00"]),
    ("check_claim_status", "claim_number: CLM-PROC-0002", "completed", ["in process"]),
    ("check_claim_status", "claim_number: CLM-DENY-0003", "completed_with_issues", ["denied"]),
    ("check_claim_status", "claim_number: CLM-NOPE-9999", "completed_with_issues", ["no claims"]),
    ("check_claim_status", "member_id: W100000001", "completed", ["23"]),
]


@pytest.mark.parametrize(
    ("task_type", "data", "status", "phrases"),
    CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_every_outcome_of_every_type(e2e, make_account, receiver, task_type, data, status, phrases):
    # given the sandbox with its hurdles on, quick spinners so the run stays short
    e2e.sandbox_faults(spinner_s=0.2, slow_page_s=0.3)
    account = make_account(webhook_url=receiver.url)
    # when a task of this type is posted
    created = e2e.post_task(account, task_type, data)
    # then the webhook reports the documented outcome
    [delivery] = receiver.wait_for(1, timeout_s=150)
    task = Webhook(account.webhook_secret).verify(delivery["body"], delivery["headers"])["data"]
    assert task["id"] == created["id"]
    assert task["status"] == status, task["notes"]
    for phrase in phrases:
        assert phrase.lower() in task["notes"].lower(), task["notes"]


def test_claim_attachments_reach_the_portal(e2e, make_account, receiver):
    # given a claim posted as multipart with a superbill
    e2e.sandbox_faults(spinner_s=0.2, slow_page_s=0.3, modal="never")
    account = make_account(webhook_url=receiver.url)
    response = requests.post(
        f"{e2e.api_url}/tasks",
        data={"type": "submit_claim", "data": f"{JANE}\n{NPI}\n{LINE}"},
        files={"files": ("superbill.pdf", b"%PDF-1.4 superbill", "application/pdf")},
        headers=account.headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    final = e2e.wait_for_task(account, response.json()["id"], {"completed"}, timeout_s=150)
    # then the portal holds the claim with its attachment, under the reference in the notes
    [claim] = requests.get(f"{e2e.sandbox_url}/__sandbox/submissions", timeout=5).json()["claims"]
    assert claim["reference"] in final["notes"]
    assert [a["filename"] for a in claim["attachments"]] == ["superbill.pdf"]
