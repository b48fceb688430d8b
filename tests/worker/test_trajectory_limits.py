"""How much of its trajectory a task stores: at most MAX_TASK_STEPS steps and
MAX_TASK_SCREENSHOTS screenshots, whatever its SOP loops over. Before these limits, only
TASK_TIME_LIMIT_S bounded it: an SOP whose `while` took a screenshot each round stored 31 MB in
25 s, and nested `while`s of `set` steps 5,063 rows in 45 s.

Each test runs a hostile SOP as a real task through worker.runner.run_task, on the sandbox
portal in a real Chromium, with small limits, and looks at what a client sees: GET /tasks/{id},
GET /tasks/{id}/trajectory and the rows stored.
"""

from __future__ import annotations

import pytest

from shared.settings import SettingsError, load_settings
from tests.worker.support import run_within, sandbox_runtime

pytestmark = pytest.mark.browser

# A hang guard only: far beyond what any case needs on a busy machine.
HANG_S = 300

# Nested `while`s of `set` steps: up to rounds x rounds x 2 steps, far more than any limit here.
NESTED_SETS = """
task_type: check_eligibility
title: Count without end
portal: sandbox
inputs:
  - {name: rounds, format: text, required: true}
steps:
  - set: {i: 0, n: 0}
  - while: "i < rounds | int"
    max: 10000
    do:
      - set: {i: i + 1, j: 0}
      - while: "j < rounds | int"
        max: 10000
        do:
          - set: {j: j + 1}
          - set: {n: n + 1}
outcomes:
  - status: completed
    notes: "Counted {{ n }}."
"""

# A `while` that takes a screenshot each round, then ends as the SOP says.
SCREENSHOT_LOOP = """
task_type: check_eligibility
title: Photograph the page again and again
portal: sandbox
inputs:
  - {name: rounds, format: text, required: true}
steps:
  - set: {n: 0}
  - while: "n < rounds | int"
    max: 10000
    do:
      - set: {n: n + 1}
      - screenshot: "round {{ n }}"
outcomes:
  - status: completed
    notes: "Took {{ n }} screenshots."
"""


def _put_sop(client, account, text: str) -> None:
    response = client.put(
        "/sops/check_eligibility", data=text, headers=account.headers, content_type="text/yaml"
    )
    assert response.status_code in (200, 201), response.get_json()


def _run(rt, client, account, browsers, sop: str, rounds: int) -> dict:
    """Run one task of ``sop`` and return what its client sees of it, and what is stored."""
    _put_sop(client, account, sop)
    created = client.post(
        "/tasks",
        json={"type": "check_eligibility", "data": {"rounds": str(rounds)}},
        headers=account.headers,
    )
    assert created.status_code == 200, created.get_json()
    task_id = created.get_json()["id"]
    run_within(rt, task_id, browsers, HANG_S, "a looping SOP")
    task = client.get(f"/tasks/{task_id}", headers=account.headers)
    assert task.status_code == 200, task.get_data(as_text=True)
    trajectory = client.get(f"/tasks/{task_id}/trajectory", headers=account.headers)
    assert trajectory.status_code == 200, trajectory.get_data(as_text=True)
    with rt.pool.connection() as conn:
        stored = conn.execute(
            "SELECT (SELECT count(*) FROM trajectory_steps WHERE task_id = %(id)s) AS steps,"
            " (SELECT count(*) FROM artifacts WHERE task_id = %(id)s) AS screenshots",
            {"id": task_id},
        ).fetchone()
    return {**task.get_json(), "trajectory": trajectory.get_json()["steps"], **stored}


def test_a_task_past_max_task_steps_stops_and_fails_naming_the_setting(
    runtime, sandbox_url, client, account, browsers
):
    # Given a limit of 40 steps a task, and an SOP of nested loops that would take 800
    rt = sandbox_runtime(runtime, sandbox_url, max_task_steps=40)

    # When a task runs it
    task = _run(rt, client, account, browsers, NESTED_SETS, rounds=20)

    # Then it stops there and fails, its notes naming the setting and its value
    assert task["status"] == "failed", task["notes"]
    assert "MAX_TASK_STEPS" in task["notes"] and "40" in task["notes"], task["notes"]
    # And it stored its 40 steps and the failed one that says why, no more
    assert task["steps"] <= 41, task["steps"]
    last = task["trajectory"][-1]
    assert last["status"] == "failed" and "MAX_TASK_STEPS" in last["message"], last
    assert len(task["trajectory"]) == task["steps"]


def test_screenshots_past_max_task_screenshots_are_left_out_and_the_notes_say_so(
    runtime, sandbox_url, client, account, browsers
):
    # Given a limit of 3 screenshots a task, and an SOP that takes one in each of 8 rounds
    rt = sandbox_runtime(runtime, sandbox_url, max_task_screenshots=3)

    # When a task runs it
    task = _run(rt, client, account, browsers, SCREENSHOT_LOOP, rounds=8)

    # Then it runs to its end, every step recorded, and stores 3 screenshots only
    assert task["result"]["n"] == 8, task["notes"]
    rounds = [s for s in task["trajectory"] if s["message"].startswith("round ")]
    assert len(rounds) == 8, [s["message"] for s in task["trajectory"]]
    assert task["screenshots"] == 3, task["screenshots"]
    assert sum(1 for s in task["trajectory"] if s["screenshot"]) == 3
    # And it ends completed_with_issues, its notes (after the SOP's own) saying what was left
    # out and which setting
    assert task["status"] == "completed_with_issues", task["notes"]
    assert task["notes"].startswith("Took 8 screenshots."), task["notes"]
    notes = task["notes"]
    assert "MAX_TASK_SCREENSHOTS" in notes and "5 screenshot" in notes, notes


def test_a_screenshot_loop_past_both_limits_fails_saying_both(
    runtime, sandbox_url, client, account, browsers
):
    # Given limits of 30 steps and 4 screenshots a task, and an SOP that would take 500
    # screenshots
    rt = sandbox_runtime(runtime, sandbox_url, max_task_steps=30, max_task_screenshots=4)

    # When a task runs it
    task = _run(rt, client, account, browsers, SCREENSHOT_LOOP, rounds=500)

    # Then it fails at the step limit with its notes naming both settings, and stores no more
    # than 4 screenshots (the failed step's own among the ones left out)
    assert task["status"] == "failed", task["notes"]
    assert "MAX_TASK_STEPS" in task["notes"], task["notes"]
    assert "MAX_TASK_SCREENSHOTS" in task["notes"], task["notes"]
    assert task["steps"] <= 31 and task["screenshots"] == 4, (task["steps"], task["screenshots"])


def test_the_trajectory_limits_are_settings_checked_at_start():
    settings = load_settings({"MAX_TASK_STEPS": "50", "MAX_TASK_SCREENSHOTS": "7"})
    assert (settings.max_task_steps, settings.max_task_screenshots) == (50, 7)
    defaults = load_settings({})
    assert (defaults.max_task_steps, defaults.max_task_screenshots) == (2000, 200)
    for name in ("MAX_TASK_STEPS", "MAX_TASK_SCREENSHOTS"):
        with pytest.raises(SettingsError, match=name):
            load_settings({name: "0"})
