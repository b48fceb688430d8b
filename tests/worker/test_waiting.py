"""`wait_for` with `any_of`: the branch named is the earliest that holds, even when the page
changes while its branches are looked at one by one."""

from __future__ import annotations

import pytest

from shared.sop.loader import load_sop
from tests.worker.support import page_on_html

pytestmark = pytest.mark.browser

SENDING = "<!doctype html><html><body><p>Sending the appeal…</p></body></html>"
# What the portal's answer page shows: its heading and, under it, an alert with the reason.
ANSWER = "<h1>Appeal not accepted</h1><div role='alert'>Claim not found.</div>"
SOP = """
task_type: lab_check
title: Wait for the answer
portal: sandbox
steps:
  - wait_for:
      any_of:
        - {visible: {role: heading, name: Appeal received}, as: received}
        - {visible: {role: heading, name: Appeal not accepted}, as: not_accepted}
        - {visible: {role: alert}, as: alert}
      into: shown
outcomes: [{status: completed, notes: done}]
"""


def test_the_earliest_branch_that_holds_is_named_when_the_answer_arrives_mid_look(driver):
    def render(text: str) -> str:
        # The answer arrives just as the last branch is about to be looked at: the first two
        # were looked at on the page before it.
        if text == "alert" and "Appeal not accepted" not in driver.page_source:
            driver.execute_script("document.body.innerHTML = arguments[0]", ANSWER)
        return text

    page = page_on_html(driver, SENDING, render)
    [wait_for] = load_sop(SOP).steps
    assert page.condition_met(wait_for.condition) == "not_accepted"
