"""Signing in: the portal profile's sign-in, and the `login` step of SOPs that sign in
themselves; also used to sign in again when a session expires.

Which page is the sign-in page is stated by the profile (docs/portals.md); only without a
profile is it told by the old sign, the sign-in form's fields. Only this module types the stored
password, and only into a password field.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING

from shared import totp
from shared.sop.model import DEFAULT_LOGIN, Locator, LoginStep
from shared.sop.profile import PageRule, Profile, SignIn, SignOut
from worker.agent import locators
from worker.agent.handlers import At, handles
from worker.agent.page import clear_quietly, code_page_rule, on_page, sign_in_page_locators
from worker.errors import AgentError, CredentialsRejected, SecretRefused, SessionInUse

if TYPE_CHECKING:
    from worker.agent.interpreter import Run

log = logging.getLogger(__name__)


@handles(LoginStep)
def login(run: Run, step: LoginStep, at: At) -> str:
    return sign_in(run, sign_in_of_step(step, run.profile), run.timeout(step))


def sign_in_of_step(step: LoginStep, profile: Profile | None) -> SignIn:
    """A `login` step's sign-in. The sign-in page is told by the profile's explicit rule when
    there is one; without, by the old sign (an empty PageRule: the step's fields showing)."""
    page = profile.sign_in.page if profile and profile.sign_in else PageRule()
    return SignIn(
        url=step.url,
        page=page,
        username=Locator("label", step.username_label),
        password=Locator("label", step.password_label) if step.password_label else None,
        button=Locator("button", step.button),
        code=Locator("label", step.code_label),
        code_button=Locator("button", step.code_button),
        success=step.success,
    )


def sign_in_again(sop_login: LoginStep | None, profile: Profile | None) -> SignIn | None:
    """How a run signs in again after an expiry: the SOP's first login step if it signs in
    itself, else the profile's sign-in (none: the portal needs no sign-in); with neither, the
    default login step, as before profiles."""
    if sop_login is not None or profile is None:
        return sign_in_of_step(sop_login or DEFAULT_LOGIN, profile)
    return profile.sign_in


ALREADY_SIGNED_IN = "already signed in"  # the message when the browser kept its session


def sign_in(run: Run, how: SignIn, timeout: float) -> str:
    """Sign in as `how` says (or find the browser already signed in); the step's message."""
    run.page.in_login = True
    try:
        url = run.render(how.url) if how.url else ""
        if url:
            run.page.goto(url)
        state = _first_state(run, how, timeout)
        run.holds_session = True  # signed in already, or about to be
        if state == "in":
            return ALREADY_SIGNED_IN
        if state == "form":
            _submit_password(run, how, timeout)
            state = _state(run, how)
        with_code = ""
        if state == "code":
            with_code = _enter_code(run, how, timeout)
        if how.success:
            run.page.wait_condition(how.success, timeout)
        return "signed in" + with_code
    finally:
        run.page.in_login = False


def sign_out(run: Run, how: SignOut, timeout: float) -> None:
    """End the session the run signed in with, as the profile's ``sign_out`` says, so that the
    browser keeps none between tasks. Best effort: the task's outcome is decided already, and
    a portal that fails here ends the session by itself when it expires (logged)."""
    run.page.in_login = True  # the sign-in page, where signing out leads, is no expiry here
    try:
        if how.url:
            run.page.goto(run.render(how.url))
        elif how.click:
            run.page.click(run.page.locator(how.click), timeout)
        run.holds_session = False
    except Exception:  # any failure: never the task's, which has ended
        log.warning("could not sign out (%s); the session ends when it expires", how.describe(),
                    exc_info=True)  # fmt: skip
    finally:
        run.page.in_login = False


def _first_state(run: Run, how: SignIn, timeout: float) -> str:
    """Where the sign-in starts. With a `success` sign, "in" means that sign shows: a page that
    draws itself by script (a single-page app) shows neither a form nor the sign at first."""
    success = how.success
    if not success:
        return _state(run, how)

    def settled() -> str | None:
        state = _state(run, how)
        if state != "in":
            return state
        return "in" if run.page.condition_met(success) else None

    return str(run.page.wait(settled, timeout, "the sign-in form or the signed-in page"))


def _state(run: Run, how: SignIn) -> str:
    """ "form" on the sign-in page, "code" on the one-time code page, else "in".

    One look for everything: a signed-in page (the common case) costs one round trip.
    """
    page_locators = sign_in_page_locators(how)
    code_rule = code_page_rule(how)
    code_locators = [code_rule.shows] if code_rule and code_rule.shows else []
    probe = [run.page.locator(loc) for loc in (*page_locators, *code_locators)]
    info = locators.probe_page(run.page.driver, markers=probe)
    url, found = info.get("url", ""), info.get("markers") or []
    if code_rule is not None and on_page(code_rule, url, found[len(page_locators) :]):
        return "code"
    on_sign_in = on_page(how.page, url, found[: len(page_locators)], signing_in=True)
    return "form" if on_sign_in else "in"


def _submit_password(run: Run, how: SignIn, timeout: float) -> None:
    page = run.page
    user = locators.find_first(page.driver, page.locator(how.username))
    if user is not None:
        page.type(user, run.credentials.username)
    if how.password is None:
        # A sign-in without a password (an email, then a one-time code): send the username.
        page.submit_and_wait(page.locator(how.button), timeout)
        if _state(run, how) == "form":
            raise _refusal(run, how, "the username")
        return
    label, button = page.locator(how.password), page.locator(how.button)
    password = locators.find_first(page.driver, label)
    if password is None:  # username first, password on the next screen
        page.submit_and_wait(button, timeout)
        password = page.element(label, timeout)
    if page.secret_kinds([password], filled_only=False) != ["password"]:
        # Typed anywhere else (a search box), the page could show it back.
        raise SecretRefused(
            f"the sign-in step types the password only into a password field, "
            f"and {label.describe()} is not one"
        )
    page.type_secret(password, run.credentials.password)
    try:
        page.submit_and_wait(button, timeout)
    except AgentError:
        clear_quietly(password)  # a sign-in left half-done leaves no password behind
        raise
    if _state(run, how) == "form":
        raise _refusal(run, how, "the username or password")


def _refusal(run: Run, how: SignIn, what: str) -> AgentError:
    """Why the sign-in page came back after the credentials: the user is signed in elsewhere
    (one of the profile's ``in_use`` signs shows; the portal's to lift, waited out like a portal
    that is down), else the portal rejected ``what``."""
    alert = locators.find_first(run.page.driver, Locator("role", "alert"))
    said = f": {alert.text.strip()}" if alert is not None else ""
    if any(run.page.condition_met(sign) for sign in how.in_use):
        return SessionInUse(
            f"the portal refused the sign-in while the user is signed in elsewhere{said}"
        )
    return CredentialsRejected(f"the portal rejected {what}{said}")


def _enter_code(run: Run, how: SignIn, timeout: float) -> str:
    assert how.code is not None and how.code_button is not None  # only then is the state "code"
    for attempt in range(2):
        code, said = _one_time_code(run, attempt)
        run.redactor.add(code, whole_word=True)
        field_el = run.page.element(how.code, timeout)
        run.page.type(field_el, code)
        run.page.submit_and_wait(run.page.locator(how.code_button), timeout)
        if _state(run, how) != "code":
            return said
    raise CredentialsRejected("the portal rejected the one-time code")


def _one_time_code(run: Run, attempt: int) -> tuple[str, str]:
    secret = run.credentials.totp_secret
    if secret:
        # A second try uses the next 30 s window's code, in case our clock is behind.
        return totp.code(secret, at=time.time() + 30 * attempt), " with a TOTP code"
    if run.request_code is None:
        raise CredentialsRejected(
            "the portal asks for a one-time code, but there is no TOTP secret "
            "and no one to ask for a code"
        )
    return re.sub(r"\s+", "", run.request_code()), " with a code from a person"
