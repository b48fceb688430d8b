"""Portal profiles in the engine: sign-in, prelude and the SOP's steps, the sign-in page told by
its explicit rule (not by a "Password" label), and a 5xx answer always a portal error.

The SOPs here are written from docs/portals.md and docs/sops.md only.
"""

from __future__ import annotations

import hashlib

import pytest

from shared.inputs import parse_task_data
from shared.sop.loader import load_sop
from shared.sop.profile import builtin_profile, builtin_profile_text, load_profile
from tests.api.test_console import make_user, sign_in
from tests.worker.support import (
    MFA_USER,
    run_builtin,
    set_faults,
    stats,
    submissions,
)
from worker import runner
from worker.agent.interpreter import run_sop
from worker.errors import TRANSIENT_ERRORS, PortalUnavailable, StepFailed

pytestmark = pytest.mark.browser

# Adds a staff member on a form labelled "Full Name:", "Username:" and "Password:", the labels
# of the sign-in form.
ADD_STAFF = """\
task_type: add_staff_member
title: Add a staff member
portal: sandbox
inputs:
  - {name: full_name, format: text, required: true}
  - {name: username, format: text, required: true}
  - {name: initial_password, required: true, sensitive: true}
steps:
  - goto: /staff/new
  - fill: {label: Full Name, value: "{{ full_name }}"}
  - fill: {label: Username, value: "{{ username }}"}
  - fill: {label: Password, secret: initial_password}
  - click: {button: Save}
  - wait_for: {visible: {role: heading, name: Staff member added}}
  - extract: {into: said, text: {role: status}}
outcomes:
  - status: completed
    notes: "{{ said }}"
"""
# The same task as SOPs were written before profiles: it signs in itself.
ADD_STAFF_SIGNING_IN = ADD_STAFF.replace("steps:\n", "steps:\n  - login: {url: /dashboard}\n")
STAFF = "full_name: Ada Byron\nusername: ada\ninitial_password: Correct-Horse-9"

# Opens a report that the portal answers with a 500 page in its own words; nothing lists them.
REPORT = """\
task_type: staff_report
title: Read the staff report
portal: sandbox
steps:
  - goto: /staff/report
  - wait_for: {text: Report ready}
outcomes:
  - status: completed
    notes: The report is ready.
"""


def _run(driver, text: str, data: str, base_url: str, **kwargs):
    data_map = parse_task_data(data)
    return run_sop(
        driver,
        load_sop(text),
        {k: v for k, v in data_map.items() if k != "initial_password"},
        sensitive={k: v for k, v in data_map.items() if k == "initial_password"},
        base_url=base_url,
        credentials=MFA_USER,
        **kwargs,
    )


def _added(base_url: str) -> list[tuple[str, str, str]]:
    return [
        (s["full_name"], s["username"], s["password_sha256"])
        for s in submissions(base_url)["staff"]
    ]


DIGEST = hashlib.sha256(b"Correct-Horse-9").hexdigest()


@pytest.mark.parametrize("text", [ADD_STAFF, ADD_STAFF_SIGNING_IN], ids=["profile", "own-login"])
def test_an_add_form_with_a_password_field_is_not_taken_for_the_sign_in_page(
    driver, portal, recorder, text
) -> None:
    # given the sandbox, whose profile says its sign-in page is /login with its heading
    base_url = portal()
    # when an SOP fills a form whose fields are labelled like the sign-in form's
    outcome = _run(driver, text, STAFF, base_url, recorder=recorder)
    # then the form is filled and saved once, in one sign-in, with no expiry seen
    # (before profiles: "the portal ended the session 3 times", nothing saved)
    assert outcome.status == "completed", recorder.text()
    assert outcome.notes == "Ada Byron was added."
    assert _added(base_url) == [("Ada Byron", "ada", DIGEST)]
    assert recorder.named("Session expired") == []
    assert stats(base_url)["login_attempts"]["provider@sandbox"] == 1
    assert all(step.status == "ok" for step in recorder.steps), recorder.text()


def test_a_task_signs_in_then_runs_the_prelude_then_its_steps(driver, portal, recorder) -> None:
    base_url = portal(modal="always")
    outcome = _run(driver, ADD_STAFF, STAFF, base_url, recorder=recorder)
    assert outcome.status == "completed"
    names = [step.name for step in recorder.steps]
    assert names[:8] == [
        "Sign in to Sandbox Payer Portal",
        "p1. Go to /dashboard",
        "p2. See which payer the session has",
        "p3. Choose the payer unless it is chosen already",
        "p3.1. Choose the payer",
        'p3.2. Click button "Continue"',
        "p3.3. See the payer chosen",
        "1. Go to /staff/new",
    ]
    # the announcement modal the profile names was closed right after signing in
    assert recorder.steps[0].message == (
        'signed in with a TOTP code; closed button "Dismiss" in dialog'
    )
    # and the dashboard the sign-in ended on was not loaded a second time
    assert recorder.steps[1].message == "already open: the sign-in ended on it"


def test_a_real_session_expiry_is_still_recognised_and_recovered(driver, portal, recorder):
    # given a portal that ends the session when the staff form is sent (it serves one more
    # page after the prelude: the form itself)
    base_url = portal()

    def on_step(name: str) -> None:
        if name.startswith("p3.2.") and not recorder.named("Session expired"):
            set_faults(base_url, expire_after_requests=1)
        if name.startswith("Session expired"):
            set_faults(base_url, expire_after_requests=None)

    recorder.on_step = on_step
    # when the staff member is added
    outcome = _run(driver, ADD_STAFF, STAFF, base_url, recorder=recorder)
    # then the sign-in page was recognised by the profile's rule, the agent signed in again,
    # ran the prelude again, started the steps over, and saved the form once
    assert outcome.status == "completed", recorder.text()
    [expired] = recorder.named("Session expired")
    assert expired.status == "ok" and "restarting from the top" in expired.message
    assert stats(base_url)["login_attempts"]["provider@sandbox"] == 2
    # (the sandbox keeps an expired session's payer for its next sign-in, so the second prelude
    # finds it chosen)
    assert [s.message for s in recorder.named("p2. See which payer")] == [
        "payer_chosen = False",
        "payer_chosen = True",
    ]
    assert _added(base_url) == [("Ada Byron", "ada", DIGEST)]


def test_an_expiry_sign_named_in_the_profile_ends_the_session_too(driver, portal, recorder):
    # given a profile that also counts a page saying "Staff member added" as a lost session
    # (a stand-in for a portal's "your session timed out" dialog)
    text = builtin_profile_text("sandbox") + "session_expired:\n  - {text: was added}\n"
    profile = load_profile(text)
    # when an SOP reaches that page, again and again
    with pytest.raises(PortalUnavailable, match="ended the session 3 times"):
        _run(driver, ADD_STAFF, STAFF, portal(), recorder=recorder, profile=profile)
    # then each time the agent signed in again (the sandbox kept its session: "already signed in")
    assert [s.status for s in recorder.named("Session expired")][:2] == ["ok", "ok"]


@pytest.mark.parametrize(
    ("text", "profile"),
    [
        (REPORT, builtin_profile("sandbox")),
        (REPORT.replace("steps:\n", "steps:\n  - login: {url: /dashboard}\n"), None),
    ],
    ids=["profile", "no-profile"],
)
def test_a_500_page_nobody_listed_is_a_portal_error(driver, portal, recorder, text, profile):
    # given a page that answers HTTP 500 in words no SOP or profile lists
    # when an SOP opens it
    with pytest.raises(PortalUnavailable) as raised:
        _run(driver, text, "", portal(), recorder=recorder, profile=profile)
    # then it is a portal error (retried on our side), not a step that could not proceed
    assert isinstance(raised.value, TRANSIENT_ERRORS)
    assert str(raised.value) == "the portal answered HTTP 500: Oops!"
    failed = recorder.steps[-1]
    assert failed.status == "failed" and failed.screenshot.startswith(b"\x89PNG")


def test_the_profile_prelude_reads_the_tasks_payer(driver, portal) -> None:
    # given an appeal task that names another payer than the default
    base_url = portal()
    data = "claim_number: CLM-DENY-0003\nmember_id: W100000001\nreason: x\npayer: Acme Mutual"
    # when the built-in SOP runs on the sandbox profile
    outcome = run_builtin(driver, "submit_appeal", data, base_url)
    # then the prelude chose that payer for the session the appeal was filed in
    assert outcome.status == "completed"
    [appeal] = submissions(base_url)["appeals"]
    assert appeal["payer"] == "acme-mutual"


# -- through the worker: the profile in force, and a portal error's retries ---------------------


def _task(client, account, task_type: str, data: str) -> int:
    response = client.post(
        "/tasks", json={"type": task_type, "data": data}, headers=account.headers
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["id"]


def _task_json(client, account, task_id: int) -> dict:
    response = client.get(f"/tasks/{task_id}", headers=account.headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _row(rt, task_id: int) -> dict:
    with rt.pool.connection() as conn:
        return conn.execute("SELECT * FROM tasks WHERE id = %s", (task_id,)).fetchone()


def _steps(rt, task_id: int) -> list[dict]:
    with rt.pool.connection() as conn:
        return conn.execute(
            "SELECT name, status, message FROM trajectory_steps WHERE task_id = %s ORDER BY seq",
            (task_id,),
        ).fetchall()


def test_a_500_page_fails_the_task_as_a_portal_error_after_our_retries(
    rt, client, account, browsers
):
    # given an account's own task type that opens a page answering 500 in its own words
    stored = client.put(
        "/sops/staff_report",
        data=REPORT.encode(),
        headers={**account.headers, "Content-Type": "application/yaml"},
    )
    assert stored.status_code == 201, stored.get_json()
    task_id = _task(client, account, "staff_report", "note: monthly")
    # when the worker runs it
    runner.run_task(rt, task_id, browsers=browsers)
    # then it was retried as a portal error (PORTAL_RETRY_ATTEMPTS runs), then failed saying so
    row = _row(rt, task_id)
    assert row["status"] == "failed"
    assert row["notes"] == (
        "Portal error, still failing after retries: the portal answered HTTP 500: Oops!"
    )
    failed = [s for s in _steps(rt, task_id) if s["status"] == "failed"]
    assert len(failed) == rt.settings.portal_retry_attempts
    assert {s["name"] for s in failed} == {"1. Go to /staff/report"}
    # and one broken page after the sign-in is not an outage: the account's portal is not held
    with rt.pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM portal_outages").fetchone()["n"] == 0
    # and the task says it signed in with the built-in profile
    assert _task_json(client, account, task_id)["profile"] == {
        "portal": "sandbox",
        "version": None,
        "builtin": True,
    }


def test_an_accounts_own_profile_is_used_by_its_next_task(
    rt, app, client, account, browsers, sandbox_url
):
    # given an account whose sandbox profile chooses another payer in its prelude
    text = builtin_profile_text("sandbox").replace(
        "payer or 'Sandbox Health'", "payer or 'Acme Mutual'"
    )
    stored = client.put(
        "/portals/sandbox/profile",
        data=text.encode(),
        headers={**account.headers, "Content-Type": "application/yaml"},
    )
    assert stored.status_code == 201 and stored.get_json()["version"] == 1
    # when one of its appeal tasks runs
    data = "claim_number: CLM-DENY-0003\nmember_id: W100000001\nreason: necessary"
    task_id = _task(client, account, "submit_appeal", data)
    assert _task_json(client, account, task_id)["profile"] is None  # no run yet
    runner.run_task(rt, task_id, browsers=browsers)
    # then it ran the account's prelude, not the built-in one, and the task says which version
    assert _row(rt, task_id)["status"] == "completed"
    assert _task_json(client, account, task_id)["profile"] == {
        "portal": "sandbox",
        "version": 1,
        "builtin": False,
    }
    make_user(rt, account.id, "ops@clinic.test", "viewer")
    console = app.test_client()
    sign_in(console, "ops@clinic.test")
    assert "sandbox (version 1)" in console.get(f"/console/tasks/{task_id}").text
    [appeal] = submissions(sandbox_url)["appeals"]
    assert appeal["payer"] == "acme-mutual"
    names = [s["name"] for s in _steps(rt, task_id)]
    assert names[0] == "Sign in to Sandbox Payer Portal" and "p3.1. Choose the payer" in names


@pytest.mark.parametrize(
    ("line", "failed_step"),
    [
        ("  url: /dashboard\n", "Sign in to Sandbox Payer Portal"),
        ("  - goto: /dashboard\n", "p1. Go to /dashboard{{ '%(next)s' % {} }}"),
    ],
    ids=["sign-in-address", "prelude-first-step"],
)
def test_a_profile_template_that_fails_fails_its_step_as_the_profiles_fault(
    driver, portal, recorder, line, failed_step
):
    # given an account's profile with an address that is a template that cannot be written
    broken = line.replace("/dashboard", "\"/dashboard{{ '%(next)s' % {} }}\"")
    profile = load_profile(builtin_profile_text("sandbox").replace(line, broken, 1))
    # when a task signs in with it, then its step fails as a template error (it escaped the
    # run before, to end as the agent's internal error)
    with pytest.raises(StepFailed, match="template error: KeyError: 'next'"):
        _run(driver, ADD_STAFF, STAFF, portal(), recorder=recorder, profile=profile)
    assert [s.name for s in recorder.steps if s.status == "failed"] == [failed_step]
