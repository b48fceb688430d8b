"""A portal that allows one session per user, on the whole stack (2 workers, real browsers): with
``max_sessions: 1`` in its profile, one account's tasks take turns instead of signing each other
out."""

from __future__ import annotations

import requests

from shared.sop.profile import builtin_profile_text

NPI = "provider_npi: 1234567893"
JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"
LINE = "line 1: 99213, J06.9, 125.00, 2025-03-20"


def test_an_accounts_claims_take_turns_on_a_portal_with_one_session_per_user(e2e, runtime, account):
    # given a portal where a sign-in ends the same user's other session, and a profile saying so
    e2e.sandbox_faults(modal="never", single_session=True)
    profile = builtin_profile_text("sandbox") + "max_sessions: 1\n"
    stored = requests.put(
        f"{e2e.api_url}/portals/sandbox/profile",
        data=profile.encode(),
        headers={**account.headers, "Content-Type": "application/yaml"},
        timeout=10,
    )
    assert stored.status_code == 201, stored.text

    # when the account sends four claims at once to the two workers
    ids = [e2e.post_task(account, "submit_claim", f"{JANE}\n{NPI}\n{LINE}")["id"] for _ in range(4)]
    finals = [
        e2e.wait_for_task(account, task_id, {"completed", "completed_with_issues", "failed"}, 240)
        for task_id in ids
    ]

    # then every claim is submitted once, none lost to a session ended under it
    assert [(t["status"], t["attempts"]) for t in finals] == [("completed", 1)] * 4, [
        t["notes"] for t in finals
    ]
    claims = requests.get(f"{e2e.sandbox_url}/__sandbox/submissions", timeout=5).json()["claims"]
    assert len(claims) == 4
    # and one ran at a time: each started after the one before it ended
    runs = sorted((t["startedAt"], t["completedAt"]) for t in finals)
    assert all(later[0] >= earlier[1] for earlier, later in zip(runs, runs[1:], strict=False)), runs
