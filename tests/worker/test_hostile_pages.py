"""A portal's pages turned hostile or broken: scripts that never end, dialogs, a renderer that
dies, pages that never finish, pop-ups and endless redirects. Each runs as a real task through
worker.runner.run_task on a real browser pool; each must end with a clear status (or be
retried within its bounds), never hang the worker, and leave the next task on that worker
working."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.worker.support import (
    QuietHandler,
    browser_pool,
    loopback_server,
    on_local_portal,
    run_within,
    sandbox_runtime,
)
from worker import workspace

pytestmark = pytest.mark.faults

# Pages by name; "/done" is the well-behaved page the next task opens.
DONE = b"<title>Done</title><h1>All done</h1>"
GO = '<button id=go onclick="{}">Go</button>'
SHOW_DONE = "document.body.innerHTML='<h1>All done</h1>'"
PAGES: dict[str, bytes] = {
    "/done": DONE,
    "/loop-on-load": b"<h1>All done</h1><script>while(true){}</script>",
    "/loop-on-click": GO.format("while(true){}").encode(),
    # Ends no task: its loop starts once the task that opened it is over.
    "/loop-later": b"<h1>All done</h1><script>setTimeout(() => { while (true) {} }, 1500)</script>",
    "/alert-on-load": b"<h1>All done</h1><script>alert('Welcome back')</script>",
    # Each answer is followed at once by the next dialog: no command gets between two of them
    # (with a timer between dialogs, a command could, and the task's outcome was a race).
    "/alerts-forever": (
        b"<h1>All done</h1><script>onload = () => { for (;;) alert('Again') }</script>"
    ),
    "/alert-on-click": GO.format(f"alert('Saved'); {SHOW_DONE}").encode(),
    "/confirm-on-click": GO.format(f"if (confirm('Sure?')) {SHOW_DONE}").encode(),
    "/prompt-on-click": GO.format(f"if (prompt('Why?') !== null) {SHOW_DONE}").encode(),
    "/beforeunload": (
        b"<h1>All done</h1><a id=go href='/done'>Leave</a><script>"
        b"addEventListener('beforeunload', e => {e.preventDefault(); e.returnValue = '';})"
        b"</script>"
    ),
    # A claim the page discards only if its confirm (or prompt) is answered OK.
    "/discard": (
        b'<h1 id=state>Claim open</h1><button id=go onclick="state.textContent = '
        b"confirm('Discard this claim?') ? 'Claim discarded' : 'Claim kept'\">Discard</button>"
    ),
    "/discard-why": (
        b'<h1 id=state>Claim open</h1><button id=go onclick="state.textContent = '
        b"prompt('Why discard it?') === null ? 'Claim kept' : 'Claim discarded'\">Discard</button>"
    ),
    "/to-slow-page": b"<a id=go href='/slow'>Next</a>",
    "/slow": DONE,
    "/popup-on-load": b"<h1>All done</h1><script>window.open('/done')</script>",
    "/blank-link": b"<a id=go target=_blank href='/done'>New window</a><h1>All done</h1>",
    "/close-self": b"<h1>All done</h1><script>window.close()</script>",
    "/meta-loop": b"<meta http-equiv=refresh content='0'><h1>Loading</h1>",
    "/js-loop": b"<h1>Loading</h1><script>location.replace('/js-loop?' + Math.random())</script>",
    "/odd-facts": (
        b"<h1>All done</h1><script>"
        b"performance.getEntriesByType = () => [{responseStatus: 'OK'}];"
        b"Object.defineProperty(document, 'title', {get: () => 42});"
        b"</script>"
    ),
    "/huge": (
        b"<h1>All done</h1><p>" + b"lorem ipsum " * 3_500_000 + b"</p>" + b"<i>x</i>" * 1_000_000
    ),
}

SOP = """
task_type: check_eligibility
title: Hostile page
portal: acme
inputs:
  - name: target
    format: text
    required: true
  - name: click
    format: text
settings:
  step_timeout_s: 5
steps:
  - goto: "{{ target }}"
  - when: click == 'yes'
    click: {css: "#go"}
  - wait_for: {text: "All done"}
outcomes:
  - status: completed
    notes: "done"
"""

# Presses the page's button (its dialogs answered as DIALOGS_HERE says), then presses it again
# (as the SOP's settings say, SETTINGS_HERE) when `again` is given, and says what the page shows.
ANSWERING_SOP = """
task_type: check_eligibility
title: Answer a dialog
portal: acme
inputs:
  - {name: target, format: text, required: true}
  - {name: click, format: text}
  - {name: again, format: text}
settings:
  step_timeout_s: 5
SETTINGS_HERE
steps:
  - goto: "{{ target }}"
  - name: Press Discard
    click: {button: Discard}
DIALOGS_HERE
  - wait_for: {gone: {text: Claim open}}
  - extract: {into: first, text: {css: "#state"}}
  - when: again == 'yes'
    name: Press Discard again
    click: {button: Discard}
  - extract: {into: last, text: {css: "#state"}}
outcomes:
  - status: completed
    notes: "{{ first }} / {{ last }}"
"""


# Reads the claim the prelude left, then presses Discard itself, Cancel being its default.
AFTER_PRELUDE_SOP = """
task_type: check_eligibility
title: Answer after the prelude
portal: acme
inputs:
  - {name: target, format: text, required: true}
settings:
  step_timeout_s: 5
  dialogs: dismiss
steps:
  - wait_for: {gone: {text: Claim open}}
  - extract: {into: first, text: {css: "#state"}}
  - click: {button: Discard}
  - extract: {into: last, text: {css: "#state"}}
outcomes:
  - status: completed
    notes: "{{ first }} / {{ last }}"
"""


def _answering(client, account, portal_url, *, step: str = "", settings: str = ""):
    sop = ANSWERING_SOP.replace("SETTINGS_HERE", f"  dialogs: {settings}" if settings else "")
    sop = sop.replace("DIALOGS_HERE", f"    dialogs: {step}" if step else "")
    return on_local_portal(client, account, portal_url, password="p-4242", sop=sop)


# A page load timeout whose command limit (LONG_LOAD_S + COMMAND_SLACK_S) a test can tell from
# the liveness check's by far.
LONG_LOAD_S = 120
# Longer than the pools' page load timeouts (10 s and 5 s)
SLOW_S = 13
# A hang guard only: far beyond what any case needs on a busy machine.
HANG_S = 300


def _kill_renderers(root: Path) -> None:
    """What the kernel does to a tab that runs out of memory: SIGKILL its renderer."""
    for pid in workspace.processes_mentioning(str(root)):
        try:
            if b"--type=renderer" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


class Portal(QuietHandler):
    crash_root: Path | None = None  # the workspace whose renderers "/crash" kills

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = urlsplit(self.path).path
        if path == "/crash" and self.crash_root is not None:
            self.reply(200, b"<h1>Loading</h1>", {"Content-Type": "text/html"})
            threading.Timer(0.5, _kill_renderers, (self.crash_root,)).start()
            return
        if path == "/slow":
            time.sleep(SLOW_S)
        if path == "/http-loop":
            self.reply(302, b"", {"Location": "/http-loop"})
            return
        body = PAGES.get(path)
        if body is None:
            self.reply(404, b"<h1>Not found</h1>")
        else:
            self.reply(200, body, {"Content-Type": "text/html"})


@pytest.fixture(scope="module")
def portal_url(workspace_dir):
    Portal.crash_root = workspace_dir
    with loopback_server(Portal) as url:
        yield url


@pytest.fixture(scope="module")
def workspace_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("work")


@pytest.fixture
def browsers(settings, workspace_dir):
    # The pool of the cases whose pages load: a command's limit is 18 s here (10 s page load
    # timeout + 8 s slack), not the default 60 s. The cases whose pages never settle use
    # `quick_browsers`.
    pool = browser_pool(
        settings, workspace_dir=workspace_dir, page_load_timeout_s=10, command_slack_s=8
    )
    yield pool
    pool.close()


@pytest.fixture
def quick_browsers(settings, workspace_dir):
    # A page whose script never ends holds the renderer, and chromedriver then gives each
    # command the page load timeout before it answers: the navigation that never loads takes
    # it, then the next command takes it again and the browser is stopped. Each attempt costs
    # about twice the page load timeout (a click that starts the loop, the command limit):
    # 5 s and 10 s here, not 10 s and 18 s as in `browsers`. A page that reloads itself forever
    # holds the failed step's screenshot until the command limit. /done still loads in 5 s.
    pool = browser_pool(
        settings, workspace_dir=workspace_dir, page_load_timeout_s=5, command_slack_s=5
    )
    yield pool
    pool.close()


@pytest.fixture
def rt(runtime, sandbox_url, workspace_dir):
    return sandbox_runtime(
        runtime,
        sandbox_url,
        workspace_dir=workspace_dir,
        portal_retry_attempts=2,
        portal_allow_private=True,
        portal_outage_wait_s=0,
    )


@pytest.fixture
def acme(client, account, portal_url):
    return on_local_portal(client, account, portal_url, password="p-4242", sop=SOP)


def _run(
    rt, client, account, browsers, target: str, *, click: bool = False, again: bool = False
) -> dict:
    data = {"target": target, "click": "yes" if click else "no", "again": "yes" if again else ""}
    response = client.post(
        "/tasks", json={"type": "check_eligibility", "data": data}, headers=account.headers
    )
    assert response.status_code == 200, response.get_json()
    task_id = response.get_json()["id"]
    run_within(rt, task_id, browsers, HANG_S, target)
    with rt.pool.connection() as conn:
        task = conn.execute("SELECT * FROM tasks WHERE id = %s", (task_id,)).fetchone()
        steps = conn.execute(
            "SELECT name, status, message FROM trajectory_steps WHERE task_id = %s ORDER BY id",
            (task_id,),
        ).fetchall()
    trajectory = "\n".join(f"{s['status']} {s['name']}: {s['message']}" for s in steps)
    return {**task, "trajectory": trajectory}


def _next_task_works(rt, client, account, browsers) -> None:
    task = _run(rt, client, account, browsers, "/done")
    assert task["status"] == "completed", (task["notes"], task["trajectory"])


@pytest.mark.parametrize(
    ("target", "click"),
    [("/loop-on-load", False), ("/loop-on-click", True)],
    ids=["on-load", "after-click"],
)
def test_a_script_that_never_ends(rt, client, acme, quick_browsers, target, click):
    task = _run(rt, client, acme, quick_browsers, target, click=click)
    assert task["status"] == "failed", (task["notes"], task["trajectory"])
    _next_task_works(rt, client, acme, quick_browsers)


@pytest.mark.parametrize(
    ("target", "click", "said"),
    [
        ("/alert-on-load", False, "Welcome back"),
        ("/alert-on-click", True, "Saved"),
        ("/confirm-on-click", True, "Sure?"),
        ("/prompt-on-click", True, "Why?"),
    ],
    ids=["alert-on-load", "alert-after-click", "confirm-after-click", "prompt-after-click"],
)
def test_a_dialog_is_answered_as_a_person_would_and_shown_in_the_trajectory(
    rt, client, acme, browsers, target, click, said
):
    # Given a page that shows a dialog (on load, or for a click), when a task runs on it
    task = _run(rt, client, acme, browsers, target, click=click)

    # Then the dialog is accepted, the page goes on, and the trajectory says what it said
    assert task["status"] == "completed", (task["notes"], task["trajectory"])
    assert f"dialog: {said!r}" in task["trajectory"], task["trajectory"]


@pytest.mark.parametrize(
    ("on_step", "by_default", "shows"),
    [
        ("accept", "", "Claim discarded"),
        ("dismiss", "", "Claim kept"),
        ("", "dismiss", "Claim kept"),
        ("accept", "dismiss", "Claim discarded"),
    ],
    ids=["step-accept", "step-dismiss", "sop-dismiss", "step-accept-over-sop-dismiss"],
)
@pytest.mark.parametrize("target", ["/discard", "/discard-why"], ids=["confirm", "prompt"])
def test_a_step_answers_a_confirm_or_prompt_as_the_sop_says(
    rt, client, account, portal_url, browsers, target, on_step, by_default, shows
):
    # Given a claim page whose Discard button asks "Discard this claim?" (or why, by prompt), and
    # an SOP that says how its Discard step answers dialogs (or how all its steps do)
    sop_account = _answering(client, account, portal_url, step=on_step, settings=by_default)

    # When a task presses Discard
    task = _run(rt, client, sop_account, browsers, target)

    # Then the page's script got the answer the SOP gave: OK discards, Cancel keeps the claim
    assert task["status"] == "completed", (task["notes"], task["trajectory"])
    assert task["notes"] == f"{shows} / {shows}", task["trajectory"]
    # and the step's message names the dialog, and says when it was answered Cancel
    said = "Discard this claim?" if target == "/discard" else "Why discard it?"
    pressed = next(line for line in task["trajectory"].splitlines() if "Press Discard" in line)
    cancel = " (answered Cancel)" if shows == "Claim kept" else ""
    assert pressed.endswith(f"the page showed a dialog: {said!r}{cancel}"), task["trajectory"]


def test_a_steps_answer_to_dialogs_is_for_that_step_only(rt, client, account, portal_url, browsers):
    # Given an SOP whose first Discard step answers Cancel, and a second one that says nothing
    sop_account = _answering(client, account, portal_url, step="dismiss")

    # When a task presses Discard twice
    task = _run(rt, client, sop_account, browsers, "/discard", again=True)

    # Then the first confirm was refused and the second accepted, as the SOP's default says
    assert task["status"] == "completed", (task["notes"], task["trajectory"])
    assert task["notes"] == "Claim kept / Claim discarded", task["trajectory"]
    again = next(line for line in task["trajectory"].splitlines() if "again" in line)
    assert again.endswith("the page showed a dialog: 'Discard this claim?'"), task["trajectory"]


def test_the_sops_default_answer_is_not_the_portal_preludes(
    rt, client, account, portal_url, browsers
):
    # Given a portal whose profile's prelude presses Discard (saying nothing of dialogs), and an
    # SOP whose settings answer Cancel, which reads the claim and presses Discard itself
    on_local_portal(client, account, portal_url, password="p-4242", sop=AFTER_PRELUDE_SOP)
    profile = "portal: acme\ntitle: Acme\nprelude: [{goto: /discard}, {click: {button: Discard}}]\n"
    response = client.put(
        "/portals/acme/profile",
        data=profile.encode(),
        headers={**account.headers, "Content-Type": "application/yaml"},
    )
    assert response.status_code == 201, response.get_json()

    # When a task runs
    task = _run(rt, client, account, browsers, "/discard")

    # Then the prelude's confirm was answered OK, and the SOP's own step's Cancel
    assert task["status"] == "completed", (task["notes"], task["trajectory"])
    assert task["notes"] == "Claim discarded / Claim kept", task["trajectory"]


def test_a_page_that_shows_dialogs_forever_fails_with_a_clear_note(rt, client, acme, browsers):
    task = _run(rt, client, acme, browsers, "/alerts-forever")
    assert task["status"] == "failed", (task["notes"], task["trajectory"])
    assert "Again" in task["notes"] and "Session info" not in task["notes"], task["notes"]
    _next_task_works(rt, client, acme, browsers)


def test_a_page_that_asks_before_it_is_left_is_left(rt, client, acme, browsers):
    task = _run(rt, client, acme, browsers, "/beforeunload", click=True)
    assert task["status"] == "completed", (task["notes"], task["trajectory"])


@pytest.mark.parametrize("target", ["/meta-loop", "/js-loop", "/http-loop"])
def test_a_page_that_redirects_forever_fails_its_step(rt, client, acme, quick_browsers, target):
    # Given a page that reloads itself, by a meta refresh, by script or by HTTP, forever
    task = _run(rt, client, acme, quick_browsers, target)

    # Then the task fails, saying where (the page never settled, or never showed what the SOP
    # waits for), not with a bare "timeout"; and the next task works. (On a loaded machine a
    # first attempt's page load may time out as a browser error: retried in a fresh browser, the
    # last attempt's step failure is what the notes say.)
    assert task["status"] == "failed", (task["notes"], task["trajectory"])
    assert "Go to" in task["trajectory"] and "browser error" not in task["notes"], task
    if target == "/http-loop":  # the browser names it; the note says so, not "not reached"
        assert f"the page {target} redirects in a loop" in task["notes"], task["notes"]
    _next_task_works(rt, client, acme, quick_browsers)


def test_a_tab_that_crashes_fails_the_task_and_the_next_task_works(rt, client, acme, browsers):
    # Given a page whose renderer dies (killed, as for running out of memory) while a step waits
    task = _run(rt, client, acme, browsers, "/crash")

    # Then the task is retried in a fresh browser, then fails saying so; the next task works
    assert task["status"] == "failed", (task["notes"], task["trajectory"])
    assert "crashed" in task["notes"], task["notes"]
    assert browsers.started >= 2
    _next_task_works(rt, client, acme, browsers)


def test_a_page_that_replaces_what_the_checks_read_is_still_checked(rt, client, acme, browsers):
    # Given a page whose script replaces the navigation timing and the title with odd values
    task = _run(rt, client, acme, browsers, "/odd-facts")

    # Then the page checks read past them, and the task goes on (it used to fail as an internal
    # error of ours: ValueError)
    assert task["status"] == "completed", (task["notes"], task["trajectory"])


def test_a_click_that_opens_a_page_too_slow_to_load_is_a_portal_error(
    rt, client, acme, quick_browsers
):
    # Given a link to a page that takes longer than the page load timeout
    task = _run(rt, client, acme, quick_browsers, "/to-slow-page", click=True)

    # Then the task fails as a portal error (retried), not as a broken browser
    assert task["status"] == "failed", (task["notes"], task["trajectory"])
    assert task["notes"].startswith("Portal error"), task["notes"]
    assert "did not load in time" in task["notes"], task["notes"]
    assert quick_browsers.started == 1  # the browser was fine: kept


def test_a_script_that_never_ends_after_a_task_costs_the_next_task_no_command_timeout(
    settings, workspace_dir, rt, client, acme, caplog
):
    # Given a browser with a long page load timeout (a hung command is given up after 150 s),
    # whose task ended on a page that starts a loop that never ends once the task is over
    browsers = browser_pool(settings, workspace_dir=workspace_dir, page_load_timeout_s=LONG_LOAD_S)
    try:
        task = _run(rt, client, acme, browsers, "/loop-later")
        assert task["status"] == "completed", (task["notes"], task["trajectory"])
        time.sleep(2)  # the loop has started
        caplog.set_level(logging.WARNING, logger="worker.browser")

        # When the account's next task takes the browser
        started = time.monotonic()
        _next_task_works(rt, client, acme, browsers)

        # Then the pool saw at once that the browser did not answer, and the task ran in a fresh
        # one, long before a command's time limit would have passed
        assert time.monotonic() - started < LONG_LOAD_S, time.monotonic() - started
        assert browsers.started == 2
        assert "did not answer" in caplog.text, caplog.text
    finally:
        browsers.close()
