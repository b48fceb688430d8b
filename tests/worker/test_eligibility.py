"""check_eligibility end to end: real Chromium, the real sandbox, the built-in SOP."""

from __future__ import annotations

import pytest

from tests.worker.support import JANE, MFA_USER, SECRETS, run_builtin


def test_active_coverage_signs_in_with_totp_and_reports_plan_and_copay(
    driver, portal, recorder
) -> None:
    # given a signed-out browser and the TOTP user
    base_url = portal()

    # when eligibility is checked for the active test member
    outcome = run_builtin(driver, "check_eligibility", JANE, base_url, recorder=recorder)

    # then the task is completed with the plan and the copay in the notes
    assert outcome.status == "completed"
    assert "Sandbox Gold PPO" in outcome.notes and "$25.00" in outcome.notes
    assert outcome.result["coverage"]["coverage_status"] == "Active"
    # and every step was recorded, with no secret anywhere
    assert recorder.steps[0].message == "signed in with a TOTP code"
    assert all(s.status in ("ok", "skipped") for s in recorder.steps)
    assert not any(secret in recorder.text() for secret in SECRETS)


@pytest.mark.parametrize(
    ("data", "status", "expected"),
    [
        (
            "member_id: W200000002\npatient: Roe, John\nDOB: 06/30/1985",
            "completed_with_issues",
            ["inactive", "12/31/2024"],
        ),
        (
            "member_id: W300000003\npatient: Ann Other\nDOB: 1980-01-01",
            "completed_with_issues",
            ["not found"],
        ),
        (
            "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-16",
            "completed_with_issues",
            ["Date of birth mismatch"],
        ),
    ],
    ids=["inactive", "not-found", "dob-mismatch"],
)
def test_other_eligibility_outcomes(driver, portal, data, status, expected) -> None:
    outcome = run_builtin(driver, "check_eligibility", data, portal())
    assert outcome.status == status
    for text in expected:
        assert text in outcome.notes


def test_alt_layout_works_with_the_unchanged_builtin_sop(driver, portal) -> None:
    # given the portal's alternative layout (new ids, names and field order)
    base_url = portal(layout="alt")

    # when the same built-in SOP runs
    outcome = run_builtin(driver, "check_eligibility", JANE, base_url)

    # then it still reads the coverage
    assert outcome.status == "completed" and "Sandbox Gold PPO" in outcome.notes


def test_announcement_modal_is_dismissed(driver, portal, recorder) -> None:
    base_url = portal(modal="always")
    outcome = run_builtin(driver, "check_eligibility", JANE, base_url, recorder=recorder)
    assert outcome.status == "completed"
    # the sandbox's profile names the modal: it is closed right after signing in
    assert recorder.steps[0].message.endswith('closed button "Dismiss" in dialog')


def test_reused_browser_skips_sign_in(driver, portal, recorder) -> None:
    base_url = portal()
    run_builtin(driver, "check_eligibility", JANE, base_url)
    outcome = run_builtin(driver, "check_eligibility", JANE, base_url, recorder=recorder)
    assert outcome.status == "completed"
    assert recorder.steps[0].message == "already signed in"


def test_user_without_mfa(driver, portal) -> None:
    from tests.worker.support import PLAIN_USER

    outcome = run_builtin(driver, "check_eligibility", JANE, portal(), credentials=PLAIN_USER)
    assert outcome.status == "completed"


def test_credentials_as_a_mapping(driver, portal) -> None:
    creds = {
        "username": MFA_USER.username,
        "password": MFA_USER.password,
        "totp_secret": MFA_USER.totp_secret,
    }
    assert run_builtin(driver, "check_eligibility", JANE, portal(), credentials=creds).status == (
        "completed"
    )
