"""The SOP language for strangers: each case that tripped an SOP written only from the docs.

Each test runs an SOP, written from docs/sops.md alone, on one of the sandbox's lab pages
(docs/sandbox.md, "Lab pages"), and checks what the SOP's author would see: the values read,
the outcome, the trajectory.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import requests

from shared.sop.errors import SopInvalid
from shared.sop.loader import load_sop
from tests.worker.support import PLAIN_USER, ListRecorder, set_faults
from worker.agent import locators
from worker.agent.interpreter import run_sop
from worker.errors import PortalUnavailable

pytestmark = pytest.mark.browser


def run(driver, base_url: str, page: str, steps: str, outcomes: str = "", recorder=None):
    sop = load_sop(
        f"""
task_type: lab_check
title: A lab page
portal: sandbox
settings: {{step_timeout_s: 3}}
steps:
  - goto: /__sandbox/lab/{page}
{steps}
outcomes:
{outcomes or '  - {status: completed, notes: "done"}'}
"""
    )
    return run_sop(driver, sop, {}, base_url=base_url, credentials=PLAIN_USER, recorder=recorder)


def test_nested_within_reaches_a_table_past_a_sidebar(driver, sandbox_url) -> None:
    # Given a sidebar whose "Results" region comes before the main one
    outcome = run(
        driver,
        sandbox_url,
        "tables",
        """
  - extract: {into: first, table: {role: table}}
  - extract: {into: named, table: {role: table, within: {role: region, name: Results}}}
  - extract:
      into: nested
      table: {role: table, within: {role: region, name: Results, within: {role: main}}}
""",
    )
    # then only the nested `within` reaches the main table
    r = outcome.result
    assert r["first"] == [{"member_id": "W999999999", "status": "Old search"}]
    assert r["named"] == r["first"]
    assert r["nested"] == [{"member_id": "W100000001", "status": "Current"}]


def test_the_documented_nested_within_reaches_the_main_table(driver, sandbox_url) -> None:
    # The example docs/sops.md gives under "`within` nests", run as written
    docs = (Path(__file__).resolve().parents[2] / "docs" / "sops.md").read_text()
    section = docs[docs.index("**`within` nests.**") :]
    [example] = re.findall(r"^```yaml\n(.*?)^```", section, re.S | re.M)[:1]
    outcome = run(driver, sandbox_url, "tables", textwrap.indent(example, "  "))
    assert outcome.result["rows"] == [{"member_id": "W100000001", "status": "Current"}]


def test_exists_and_count_wait_when_asked(driver, sandbox_url) -> None:
    outcome = run(
        driver,
        sandbox_url,
        "delayed?delay_s=1",
        """
  - extract: {into: at_once, exists: {role: list, name: Claims found}}
  - extract: {into: waited, exists: {role: list, name: Claims found}, wait_s: 8}
  - extract: {into: rows, count: {role: listitem}, wait_s: 8}
  - extract: {into: never, exists: {text: Nothing like this}, wait_s: 0.5}
""",
    )
    r = outcome.result
    # Without a wait they look once, as documented; with one they wait for the list.
    assert (r["at_once"], r["waited"], r["rows"], r["never"]) == (False, True, 3, False)


def test_exists_takes_one_match_from_the_page_where_count_takes_every_one(
    driver, sandbox_url, monkeypatch
) -> None:
    # Given a record of how many of the claims' rows each look sends back
    sent: list[int] = []
    execute = driver.execute_script

    def recording(script: str, *args: object) -> object:
        answer = execute(script, *args)
        if script == locators._FIND_JS and args[0]["value"] == "listitem":
            sent.append(len(answer))
        return answer

    monkeypatch.setattr(driver, "execute_script", recording)
    # When an SOP counts the three rows, then asks whether there are any
    outcome = run(
        driver,
        sandbox_url,
        "delayed?delay_s=1",
        """
  - extract: {into: rows, count: {role: listitem}, wait_s: 8}
  - extract: {into: any, exists: {role: listitem}}
""",
    )
    # Then the count got all three and the exists one: on a page whose every row matched, all
    # of them took seconds a look
    assert (outcome.result["rows"], outcome.result["any"]) == (3, True)
    assert sent[-2:] == [3, 1]


def test_fields_named_by_image_alt_aria_placeholder_and_title(driver, sandbox_url) -> None:
    labels = ["Search", "Member ID", "Group number", "Claim number", "Provider NPI"]
    fills = "\n".join(f"  - fill: {{label: {name}, value: v{i}}}" for i, name in enumerate(labels))
    reads = "\n".join(
        f"  - extract: {{into: f{i}, text: {{label: {name}}}}}" for i, name in enumerate(labels)
    )
    outcome = run(driver, sandbox_url, "fields", fills + "\n" + reads)
    assert [outcome.result[f"f{i}"] for i in range(len(labels))] == [
        f"v{i}" for i in range(len(labels))
    ]


def test_case_sensitive_text(driver, sandbox_url) -> None:
    outcome = run(
        driver,
        sandbox_url,
        "case",
        """
  - extract: {into: loose, exists: {text: User OPSADMIN exists}}
  - extract: {into: strict, exists: {text: User OPSADMIN exists, case: sensitive}}
  - extract: {into: right, exists: {text: User opsadmin exists, case: sensitive}}
  - wait_for: {text: "status: Active", case: sensitive}
""",
    )
    r = outcome.result
    # The default stays as it was (case is ignored); `case: sensitive` tells them apart.
    assert (r["loose"], r["strict"], r["right"]) == (True, False, True)


def test_case_option_is_checked(driver) -> None:
    with pytest.raises(SopInvalid) as err:
        load_sop(
            """
task_type: lab_check
title: t
portal: sandbox
steps:
  - extract: {into: x, exists: {text: a, case: upper}}
outcomes: [{status: completed, notes: ok}]
"""
        )
    assert "case" in str(err.value.errors)


def test_end_if_ends_the_task_with_its_outcome(driver, sandbox_url) -> None:
    recorder = ListRecorder()
    outcome = run(
        driver,
        sandbox_url,
        "delayed?delay_s=0.5&alert=No+member+found",
        """
  - end_if:
      text: No member found
      wait_s: 5
      status: completed_with_issues
      notes: "Member not found: {{ seen }}"
  - fail: the SOP went on after end_if
""",
        recorder=recorder,
    )
    assert (outcome.status, outcome.notes) == (
        "completed_with_issues",
        "Member not found: No member found",
    )
    assert recorder.steps[-1].status == "ok"


def test_end_if_goes_on_when_nothing_shows(driver, sandbox_url) -> None:
    outcome = run(
        driver,
        sandbox_url,
        "delayed?delay_s=0",
        """
  - wait_for: {text: Search finished}
  - end_if: {visible: {role: alert}, status: failed, notes: "an alert showed"}
  - extract: {into: rows, count: {role: listitem}}
""",
        outcomes="""  - {when: rows == 3, status: completed, notes: "three rows"}
  - {status: failed, notes: "not three"}""",
    )
    assert (outcome.status, outcome.notes) == ("completed", "three rows")


def test_native_and_custom_dropdowns_and_a_shadow_field(driver, sandbox_url) -> None:
    outcome = run(
        driver,
        sandbox_url,
        "dropdowns",
        """
  - select: {label: Payer, option: Acme Mutual}
  - select: {label: Plan, option: Silver HMO}
  - fill: {label: Note, value: inside}
  - extract: {into: payer, text: {label: Payer}}
  - extract: {into: plan, text: {label: Plan}}
  - extract: {into: note, text: {label: Note}}
  - extract: {into: shadow_text, exists: {text: Inside the shadow root}}
""",
    )
    r = outcome.result
    assert (r["payer"], r["plan"], r["note"], r["shadow_text"]) == (
        "am",
        "Silver HMO",
        "inside",
        True,
    )


def test_a_session_that_keeps_ending_leaves_a_failed_step_with_a_screenshot(
    driver, sandbox_url
) -> None:
    # Given a portal that ends every session on the next page
    from tests.worker.support import FAST_FAULTS, run_builtin

    set_faults(sandbox_url, **FAST_FAULTS)
    recorder = ListRecorder()

    def expire_after_sign_in(name: str) -> None:
        if "Choose the payer" in name or "Session expired" in name:
            set_faults(sandbox_url, expire_after_requests=0)

    recorder.on_step = expire_after_sign_in
    with pytest.raises(PortalUnavailable):
        run_builtin(
            driver,
            "check_eligibility",
            "member_id: W100000001\npatient: Jane Doe\ndob: 1990-01-15",
            sandbox_url,
            recorder=recorder,
        )
    # then the trajectory ends with a failed step that says why, with a screenshot
    last = recorder.steps[-1]
    assert last.status == "failed", recorder.text()
    assert "session" in last.message
    assert last.screenshot and last.screenshot.startswith(b"\x89PNG")
    requests.post(f"{sandbox_url}/__sandbox/reset", timeout=5)


def test_a_goto_after_a_click_lands_where_it_asked_once_the_clicks_navigation_is_over(
    driver, sandbox_url
) -> None:
    # Given a Continue button whose form the page sends by script a moment after the click,
    # while the next `goto` is still waiting for its slow page
    recorder = ListRecorder()
    outcome = run(
        driver,
        sandbox_url,
        "late-submit",
        """
  - click: {button: Continue}
  - goto: /__sandbox/lab/tables?answer_after_s=1
  - extract:
      into: rows
      table: {role: table, within: {role: region, name: Results, within: {role: main}}}
""",
        recorder=recorder,
    )
    # then the form is sent (its navigation is not cut short), and the goto still opens its page
    assert outcome.result["rows"] == [{"member_id": "W100000001", "status": "Current"}]
    goto = next(s for s in recorder.steps if "tables" in s.message)
    assert "late-submit?sent=1" in goto.message, goto.message


def test_a_page_that_sends_itself_on_is_followed_not_opened_again(driver, sandbox_url) -> None:
    # Given a goto of a page that posts its own form once loaded (a single sign-on hand-off)
    recorder = ListRecorder()
    outcome = run(
        driver,
        sandbox_url,
        "tables",
        """
  - goto: /__sandbox/lab/late-submit?auto=1
  - wait_for: {text: The form was sent.}
""",
        recorder=recorder,
    )
    # then the goto follows it where it leads, once, with nothing to note
    goto = next(s for s in recorder.steps if "auto=1" in s.message)
    assert goto.message == "opened /__sandbox/lab/late-submit?auto=1", goto.message
    assert outcome.status == "completed"
