"""A portal that allows one session per user, on the whole stack (2 workers, real browsers): with
``max_sessions: 1`` in its profile, one account's tasks take turns instead of signing each other
out; on a portal that refuses a second sign-in instead, they sign out after each task
(``sign_out``), and a sign-in refused while a person holds the session waits for them
(``sign_in.in_use``)."""

from __future__ import annotations

import requests

from cli.local import SANDBOX_PASSWORD, SANDBOX_TOTP_SECRET, SANDBOX_USERNAME
from shared import totp
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


def test_a_portal_that_refuses_a_second_sign_in_gets_one_session_at_a_time(e2e, runtime, account):
    # given a portal that turns a user's second sign-in away while the first session lives, and
    # a profile saying one session per user, and how to sign out
    e2e.sandbox_faults(modal="never", single_session="refuse")
    stored = _store_profile(e2e, account, ONE_SESSION_SIGNING_OUT)
    assert stored.status_code == 201, stored.text

    # when the account sends six checks at once to the two workers
    ids = [e2e.post_task(account, "check_eligibility", JANE)["id"] for _ in range(6)]
    finals = [
        e2e.wait_for_task(account, task_id, {"completed", "completed_with_issues", "failed"}, 240)
        for task_id in ids
    ]

    # then every check completes: no sign-in was refused because of a session of ours
    assert [t["status"] for t in finals] == ["completed"] * 6, [t["notes"] for t in finals]
    # and no session is left behind on the portal: a person may sign in now
    person = _person_signs_in(e2e)
    assert person.url.endswith("/dashboard"), person.text


def test_a_sign_in_refused_while_a_person_holds_the_session_waits_for_them(e2e, runtime, account):
    # given a portal that refuses a second session, a profile that knows its refusal, and a
    # person of the clinic signed in with the account's user name
    e2e.sandbox_faults(modal="never", single_session="refuse")
    stored = _store_profile(e2e, account, ONE_SESSION_SIGNING_OUT)
    assert stored.status_code == 201, stored.text
    person = _person_signs_in(e2e)
    assert person.url.endswith("/dashboard"), person.text

    # when a check is sent
    task_id = e2e.post_task(account, "check_eligibility", JANE)["id"]
    # then it does not fail on "rejected credentials": it waits for the portal, saying why
    waiting = e2e.wait_for_task(
        account, task_id, {"waiting_for_portal", "completed", "failed"}, 120
    )
    assert waiting["status"] == "waiting_for_portal", waiting["notes"]
    assert "signed in elsewhere" in waiting["notes"]
    # and operators see it as the clinic's session, not as the payer's outage
    with runtime.pool.connection() as conn:
        outage = conn.execute(
            "SELECT cause FROM portal_outages WHERE account_id = %s", (account.id,)
        ).fetchone()
    assert outage["cause"] == "signed_in_elsewhere"
    # and once the person signs out, the next try signs in and the check completes
    person.session.get(f"{e2e.sandbox_url}/logout", timeout=10)
    done = e2e.wait_for_task(account, task_id, {"completed", "failed"}, 120)
    assert done["status"] == "completed", done["notes"]


# One session per user, signed out after each task, and the sandbox's refusal recognised.
ONE_SESSION_SIGNING_OUT = (
    builtin_profile_text("sandbox").replace(
        "  button: {button: Sign in}\n",
        "  button: {button: Sign in}\n"
        "  in_use:\n    - {text: already signed in from another browser}\n",
    )
    + "max_sessions: 1\nsign_out: {url: /logout}\n"
)


def _store_profile(e2e, account, profile: str) -> requests.Response:
    return requests.put(
        f"{e2e.api_url}/portals/sandbox/profile",
        data=profile.encode(),
        headers={**account.headers, "Content-Type": "application/yaml"},
        timeout=10,
    )


class _Person:
    def __init__(self, session: requests.Session, page: requests.Response) -> None:
        self.session, self.url, self.text = session, page.url, page.text


def _person_signs_in(e2e) -> _Person:
    """A person signs in to the sandbox with the account's user name, code and all."""
    session = requests.Session()
    session.post(f"{e2e.sandbox_url}/login", timeout=10,
                 data={"username": SANDBOX_USERNAME, "password": SANDBOX_PASSWORD})  # fmt: skip
    page = session.post(f"{e2e.sandbox_url}/mfa", timeout=10,
                        data={"code": totp.code(SANDBOX_TOTP_SECRET)})  # fmt: skip
    return _Person(session, page)
