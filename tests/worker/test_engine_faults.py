"""How the engine copes with a hostile portal: outages, bad credentials, MFA, expiry, modals."""

from __future__ import annotations

import pytest

from shared import totp
from shared.accounts import Credentials
from shared.inputs import parse_task_data
from shared.sop.library import builtin_sop_text
from shared.sop.loader import load_sop
from tests.worker.support import (
    JANE,
    MFA_USER,
    PLAIN_USER,
    SECRETS,
    run_builtin,
    set_faults,
    stats,
)
from worker.agent.interpreter import run_sop
from worker.errors import (
    TRANSIENT_ERRORS,
    CredentialsRejected,
    CredentialsRemoved,
    InputsInvalid,
    InputTimeout,
    PortalUnavailable,
    StepFailed,
    TaskCanceled,
)

PNG = b"\x89PNG"


def test_portal_down_is_transient(driver, portal, recorder) -> None:
    base_url = portal(down=True)
    with pytest.raises(PortalUnavailable, match="Service Unavailable") as exc:
        run_builtin(driver, "check_eligibility", JANE, base_url, recorder=recorder)
    assert isinstance(exc.value, TRANSIENT_ERRORS)
    assert recorder.steps[-1].status == "failed"
    assert recorder.steps[-1].screenshot.startswith(PNG)


def test_http_500_member_is_transient(driver, portal) -> None:
    data = "member_id: W500000005\npatient: Any One\ndob: 1990-01-01"
    with pytest.raises(PortalUnavailable, match="Internal Server Error"):
        run_builtin(driver, "check_eligibility", data, portal())


def test_unreachable_portal_is_transient(driver, portal) -> None:
    portal()
    with pytest.raises(PortalUnavailable, match="could not be reached .*ERR_"):
        run_builtin(driver, "check_eligibility", JANE, "http://127.0.0.1:9")


def test_page_load_timeout_is_transient(driver, portal) -> None:
    base_url = portal(slow_s=1.0)
    driver.set_page_load_timeout(0.3)
    try:
        with pytest.raises(PortalUnavailable, match="did not load in time"):
            run_builtin(driver, "check_eligibility", JANE, base_url)
    finally:
        driver.set_page_load_timeout(15)
        set_faults(base_url, slow_s=0)


def test_wrong_password_fails_after_exactly_one_attempt(driver, portal, recorder) -> None:
    # given a wrong password
    base_url = portal()
    bad = Credentials("provider@sandbox", "wrong-password-123", MFA_USER.totp_secret)

    # when the SOP runs, then the credentials are rejected without a retry
    with pytest.raises(CredentialsRejected, match="Invalid username or password") as exc:
        run_builtin(driver, "check_eligibility", JANE, base_url, credentials=bad, recorder=recorder)
    assert stats(base_url)["login_attempts"]["provider@sandbox"] == 1
    # and the password appears nowhere
    assert "wrong-password-123" not in str(exc.value)
    assert "wrong-password-123" not in recorder.text()
    assert not isinstance(exc.value, TRANSIENT_ERRORS)


def test_mfa_code_from_a_person(driver, portal, recorder) -> None:
    # given credentials without a TOTP secret, and a person who answers with the right code
    asked: list[str] = []

    def request_code() -> str:
        code = totp.code(MFA_USER.totp_secret)
        asked.append(code)
        return code

    no_secret = Credentials(MFA_USER.username, MFA_USER.password, None)

    # when the portal asks for a code
    outcome = run_builtin(
        driver,
        "check_eligibility",
        JANE,
        portal(),
        credentials=no_secret,
        request_code=request_code,
        recorder=recorder,
    )

    # then the code was asked for once, used, and kept out of the trajectory
    assert outcome.status == "completed" and len(asked) == 1
    assert recorder.steps[0].message == "signed in with a code from a person"
    assert asked[0] not in recorder.text()


def test_mfa_without_secret_or_person_is_rejected(driver, portal) -> None:
    no_secret = Credentials(MFA_USER.username, MFA_USER.password, None)
    with pytest.raises(CredentialsRejected, match="one-time code"):
        run_builtin(driver, "check_eligibility", JANE, portal(), credentials=no_secret)


def test_nobody_answers_the_code_request(driver, portal) -> None:
    def request_code() -> str:
        raise InputTimeout("no code within 10 minutes")

    no_secret = Credentials(MFA_USER.username, MFA_USER.password, None)
    with pytest.raises(InputTimeout):
        run_builtin(
            driver,
            "check_eligibility",
            JANE,
            portal(),
            credentials=no_secret,
            request_code=request_code,
        )


def test_wrong_mfa_code_is_rejected_after_a_second_try(driver, portal) -> None:
    no_secret = Credentials(MFA_USER.username, MFA_USER.password, None)
    codes = iter(["000000", "111111"])
    with pytest.raises(CredentialsRejected, match="one-time code") as exc:
        run_builtin(
            driver,
            "check_eligibility",
            JANE,
            portal(),
            credentials=no_secret,
            request_code=lambda: next(codes),
        )
    assert "000000" not in str(exc.value)


def _expire_once_mid_flow(base_url: str, recorder) -> None:
    """End the portal's session right after the search form is filled, once."""

    def on_step(name: str) -> None:
        if "Date of Birth" in name and not recorder.named("Session expired"):
            set_faults(base_url, expire_after_requests=1)
        if name.startswith("Session expired"):
            set_faults(base_url, expire_after_requests=None)

    recorder.on_step = on_step


def test_session_expiry_mid_flow_signs_in_again_and_finishes(driver, portal, recorder) -> None:
    # given a portal that ends the session right after the search form is filled
    base_url = portal()
    _expire_once_mid_flow(base_url, recorder)

    # when eligibility is checked
    outcome = run_builtin(driver, "check_eligibility", JANE, base_url, recorder=recorder)

    # then the agent signed in again, started over, and finished
    assert outcome.status == "completed" and "Sandbox Gold PPO" in outcome.notes
    assert len(recorder.named("Session expired")) == 1
    assert stats(base_url)["login_attempts"]["provider@sandbox"] == 2


def test_a_sign_in_again_types_the_login_stored_now(driver, portal, recorder) -> None:
    # given a run that began with one login, whose account stored another since (a rotated
    # password), and a portal that ends the session mid-flow
    base_url = portal()
    _expire_once_mid_flow(base_url, recorder)

    # when eligibility is checked
    outcome = run_builtin(driver, "check_eligibility", JANE, base_url, recorder=recorder,
                          renew_credentials=lambda: PLAIN_USER)  # fmt: skip

    # then the sign-in again used the login stored now, not the one the run began with
    assert outcome.status == "completed"
    attempts = stats(base_url)["login_attempts"]
    assert (attempts["provider@sandbox"], attempts["nomfa@sandbox"]) == (1, 1)


def test_a_login_deleted_mid_run_is_never_typed_again(driver, portal, recorder) -> None:
    # given a run whose account deleted the portal's login since it began
    base_url = portal()
    _expire_once_mid_flow(base_url, recorder)

    def deleted() -> Credentials:
        raise CredentialsRemoved("the credentials for portal 'sandbox' were deleted")

    # when the portal ends the session, then the run stops there, signed in once only
    with pytest.raises(CredentialsRemoved):
        run_builtin(driver, "check_eligibility", JANE, base_url, recorder=recorder,
                    renew_credentials=deleted)  # fmt: skip
    assert stats(base_url)["login_attempts"]["provider@sandbox"] == 1
    assert recorder.steps[-1].status == "failed"


def test_session_that_keeps_expiring_is_transient(driver, portal) -> None:
    base_url = portal(expire_after_requests=2)
    with pytest.raises(PortalUnavailable, match="ended the session"):
        run_builtin(driver, "check_eligibility", JANE, base_url, credentials=PLAIN_USER)


def test_click_intercepted_by_modal_is_dismissed_and_retried(driver, portal, recorder) -> None:
    # given an SOP that signs in itself (so the profile's sign-in, which closes the modal, does
    # not run), without a dismiss step, with the modal declared in its settings only
    text = builtin_sop_text("check_eligibility")
    text = text.replace(
        "steps:\n",
        "steps:\n  - login: {url: /dashboard}\n"
        "  - select: {label: Payer, option: Sandbox Health}\n  - click: {button: Continue}\n",
    )
    text = text.replace(
        "  screenshots: failures\n",
        "  screenshots: failures\n  dismiss:\n    - {button: Dismiss, within: {role: dialog}}\n",
    )
    sop = load_sop(text)

    # when the modal always shows after sign-in
    outcome = run_sop(
        driver,
        sop,
        parse_task_data(JANE),
        base_url=portal(modal="always"),
        credentials=MFA_USER,
        recorder=recorder,
        profile=None,
    )

    # then the covered click was retried after dismissing it
    assert outcome.status == "completed", recorder.text()
    assert recorder.steps[0].message == "signed in with a TOTP code"  # nothing closed there


def test_missing_element_fails_the_step_with_locator_and_screenshot(
    driver, portal, recorder
) -> None:
    sop = load_sop(
        """
task_type: check_eligibility
title: Broken
portal: sandbox
inputs: [{name: member_id, format: member_id, required: true}]
steps:
  - login: {url: /dashboard}
  - fill: {label: Favourite Colour, value: blue}
    timeout_s: 0.5
outcomes: [{status: completed, notes: ok}]
"""
    )
    with pytest.raises(StepFailed) as exc:
        run_sop(
            driver,
            sop,
            {"member_id": "W1"},
            base_url=portal(),
            credentials=PLAIN_USER,
            recorder=recorder,
        )
    assert exc.value.step_index == "2"
    assert exc.value.looking_for == 'field "Favourite Colour"'
    assert 'field "Favourite Colour"' in str(exc.value)
    failed = recorder.steps[-1]
    assert failed.status == "failed" and failed.screenshot.startswith(PNG)


def test_explicit_fail_step(driver, portal) -> None:
    sop = load_sop(
        """
task_type: x
title: Fails
portal: {name: sandbox}
steps:
  - fail: "cannot handle {{ member_id }}"
inputs: [{name: member_id}]
outcomes: [{status: completed, notes: ok}]
"""
    )
    with pytest.raises(StepFailed, match="cannot handle W9"):
        run_sop(driver, sop, {"member_id": "W9"}, base_url=portal(), credentials=PLAIN_USER)


def test_cancel_between_steps(driver, portal, recorder) -> None:
    with pytest.raises(TaskCanceled):
        run_builtin(
            driver,
            "check_eligibility",
            JANE,
            portal(),
            recorder=recorder,
            should_stop=lambda: len(recorder.steps) >= 3,
        )
    assert len(recorder.steps) == 3


def test_invalid_inputs_are_refused_before_the_browser_is_used(driver, portal) -> None:
    with pytest.raises(InputsInvalid) as exc:
        run_builtin(driver, "check_eligibility", "patient: Jane", portal())
    assert {e["field"] for e in exc.value.errors} == {"member_id", "patient", "dob"}
    assert driver.current_url == "about:blank"


def test_secrets_never_reach_messages(driver, portal, recorder) -> None:
    # an SOP that tries to type the password somewhere visible still cannot leak it
    sop = load_sop(
        """
task_type: x
title: Leaky
portal: sandbox
inputs: [{name: note}]
steps:
  - login: {url: /dashboard}
  - fail: "note was {{ note }}"
outcomes: [{status: completed, notes: ok}]
"""
    )
    with pytest.raises(StepFailed) as exc:
        run_sop(
            driver,
            sop,
            {"note": MFA_USER.password},
            base_url=portal(),
            credentials=MFA_USER,
            recorder=recorder,
        )
    for secret in SECRETS:
        assert secret not in str(exc.value) and secret not in recorder.text()
