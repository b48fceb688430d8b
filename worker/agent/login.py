"""Signing in: the `login` step, also used to sign in again when a session expires.

Only this module types the stored password, and only into a password field.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from shared import totp
from shared.sop.model import Locator, LoginStep
from worker.agent import locators
from worker.agent.handlers import At, handles
from worker.agent.page import clear_quietly
from worker.errors import AgentError, CredentialsRejected, SecretRefused

if TYPE_CHECKING:
    from worker.agent.interpreter import Run


@handles(LoginStep)
def login(run: Run, step: LoginStep, at: At) -> str:
    return sign_in(run, step, run.timeout(step))


def sign_in(run: Run, how: LoginStep, timeout: float) -> str:
    """Sign in as `how` says (or find the browser already signed in); the step's message."""
    run.page.in_login = True
    try:
        url = run.render(how.url) if how.url else ""
        if url:
            run.page.goto(url)
        state = _first_state(run, how, timeout)
        if state == "in":
            return "already signed in"
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


def _first_state(run: Run, how: LoginStep, timeout: float) -> str:
    """Where the sign-in starts. With a `success` sign, "in" means that sign shows: a page that
    draws itself by script (a single-page app) shows neither a form nor the sign at first."""
    if not how.success:
        return _state(run, how)

    def settled() -> str | None:
        state = _state(run, how)
        if state != "in":
            return state
        return "in" if run.page.condition_met(how.success) else None

    return str(run.page.wait(settled, timeout, "the sign-in form or the signed-in page"))


def _state(run: Run, how: LoginStep) -> str:
    # One look for all three fields: a signed-in page (the common case) costs one round trip.
    labels = [how.code_label, how.password_label, how.username_label]
    shown = locators.first_shown(
        run.page.driver, [Locator("label", label) for label in labels if label]
    )
    return "in" if shown is None else ("code" if shown == 0 else "form")


def _submit_password(run: Run, how: LoginStep, timeout: float) -> None:
    page = run.page
    user = locators.find_first(page.driver, Locator("label", how.username_label))
    if user is not None:
        page.type(user, run.credentials.username)
    if not how.password_label:
        # A sign-in without a password (an email, then a one-time code): send the username.
        page.submit_and_wait(Locator("button", how.button), timeout)
        if _state(run, how) == "form":
            alert = locators.find_first(page.driver, Locator("role", "alert"))
            said = f": {alert.text.strip()}" if alert is not None else ""
            raise CredentialsRejected(f"the portal rejected the username{said}")
        return
    label = Locator("label", how.password_label)
    password = locators.find_first(page.driver, label)
    if password is None:  # username first, password on the next screen
        page.submit_and_wait(Locator("button", how.button), timeout)
        password = page.element(label, timeout)
    if page.secret_kinds([password], filled_only=False) != ["password"]:
        # Typed anywhere else (a search box), the page could show it back.
        raise SecretRefused(
            f"the sign-in step types the password only into a password field, "
            f"and {label.describe()} is not one"
        )
    page.type_secret(password, run.credentials.password)
    try:
        page.submit_and_wait(Locator("button", how.button), timeout)
    except AgentError:
        clear_quietly(password)  # a sign-in left half-done leaves no password behind
        raise
    if _state(run, how) == "form":
        alert = locators.find_first(page.driver, Locator("role", "alert"))
        said = f": {alert.text.strip()}" if alert is not None else ""
        raise CredentialsRejected(f"the portal rejected the username or password{said}")


def _enter_code(run: Run, how: LoginStep, timeout: float) -> str:
    for attempt in range(2):
        code, said = _one_time_code(run, attempt)
        run.redactor.add(code)
        field_el = run.page.element(Locator("label", how.code_label), timeout)
        run.page.type(field_el, code)
        run.page.submit_and_wait(Locator("button", how.code_button), timeout)
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
