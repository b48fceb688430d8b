"""How much of a portal's page a task keeps: an `extract` reads at most MAX_EXTRACT_ROWS rows and
MAX_EXTRACT_CHARS characters, and a task's whole result is at most MAX_RESULT_BYTES. A page with a
huge table or text (hostile or broken) ends the task `completed_with_issues` with a note naming
the step, how much the page had and the setting, never with its whole page in Postgres, in
GET /tasks/{id} or in the webhook body. Each runs as a real task through worker.runner.run_task.
"""

from __future__ import annotations

import dataclasses
import json
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.settings import SettingsError, load_settings
from tests.worker.support import (
    QuietHandler,
    browser_pool,
    loopback_server,
    on_local_portal,
    run_within,
    sandbox_runtime,
)
from worker.agent.interpreter import Outcome
from worker.agent.limits import Cut, bounded, cut_cells

pytestmark = pytest.mark.browser

# A hang guard only: far beyond what any case needs on a busy machine.
HANG_S = 300
# Rows of the portal's hostile table, and characters of its hostile text.
HUGE_ROWS = 200_000
HUGE_CHARS = 5_000_000
PASSWORD = "p-4242"


def _table(rows: int, cell: str = "") -> bytes:
    body = "".join(f"<tr><td>M{i}</td><td>Jane {i}</td><td>{cell or 'active'}</td></tr>"
                   for i in range(rows))  # fmt: skip
    return (
        "<h1>Members</h1><table id=t><tr><th>Member</th><th>Name</th><th>Status</th></tr>"
        f"{body}</table>"
    ).encode()


def _page(path: str, query: dict[str, list[str]]) -> bytes | None:
    if path == "/table":
        return _table(int(query["rows"][0]))
    if path == "/wide":  # few rows, each with a huge cell
        return _table(3, cell="x" * 1_000_000)
    if path == "/secret":  # the portal shows the password back across where a cut falls
        return b"<div id=t>" + b"a" * 997 + PASSWORD.encode() + b"b" * 2000 + b"</div>"
    if path == "/counted":
        return COUNTED
    if path == "/late-error":
        return LATE_ERROR
    if path == "/attribute":
        return b"<div id=t data-x='" + b"x" * HUGE_CHARS + b"'>Tagged</div>"
    if path == "/address":  # an address of a million characters (Chromium takes up to 2 MB)
        return (
            b"<h1>Far</h1><script>history.replaceState(null, '', '?q=' + 'x'.repeat(1e6))</script>"
        )
    if path == "/text":
        return b"<h1>Letter</h1><div id=t>" + b"lorem ipsum " * (HUGE_CHARS // 12) + b"</div>"
    return None


# A page that counts how often its whole text is read (each read of it takes its visible text
# twice), shows its #ready a moment later, and shows the count for a click.
COUNTED = (
    b"""<h1>Waiting</h1><p>"""
    + b"lorem ipsum " * 100
    + b"""</p>
<button id=show onclick="document.getElementById('reads').textContent = String(reads)">Show</button>
<span id=reads></span>
<script>
let reads = 0;
const own = Object.getOwnPropertyDescriptor(HTMLElement.prototype, 'innerText').get;
Object.defineProperty(document.body, 'innerText', {get() { reads++; return own.call(this); }});
setTimeout(() => document.body.insertAdjacentHTML('beforeend', '<p id=ready>Ready</p>'), 3000);
</script>"""
)
# A huge page that turns into an error page a moment after it loaded.
LATE_ERROR = (
    b"<h1>Loading</h1><div>" + b"lorem ipsum " * 400_000 + b"</div><script>setTimeout(() =>"
    b" document.body.insertAdjacentHTML('afterbegin', '<p>error code 503</p>'), 1000)</script>"
)


class Portal(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urlsplit(self.path)
        body = _page(url.path, parse_qs(url.query))
        if body is None:
            self.reply(404, b"<h1>Not found</h1>")
        else:
            self.reply(200, body, {"Content-Type": "text/html"})


SOP = """
task_type: check_eligibility
title: Read a page
portal: acme
inputs:
  - name: target
    format: text
    required: true
  - name: what
    format: text
    required: true
settings:
  step_timeout_s: 20
steps:
  - goto: "{{ target }}"
  - when: what == 'table'
    extract: {into: rows, table: {css: "#t"}}
  - when: what == 'pairs'
    extract: {into: pairs, pairs: {css: "#t"}}
  - when: what == 'text'
    extract: {into: letter, text: {css: "#t"}}
  - when: what == 'attribute'
    extract: {into: tag, attribute: data-x, from: {css: "#t"}}
  - when: what == 'url'
    extract: {into: address, url: true}
  - when: what == 'two'
    extract: {into: first, text: {css: "#t"}}
  - when: what == 'two'
    extract: {into: second, text: {css: "#t"}}
  - when: what == 'wait'
    wait_for: {visible: {css: "#ready"}}
  - when: what == 'wait'
    click: {css: "#show"}
  - when: what == 'wait'
    extract: {into: reads, text: {css: "#reads"}}
  - when: what == 'end'
    end_if: {visible: {css: "#t"}, status: completed, notes: "ended"}
  - set: {flag: "'read'"}
portal_errors:
  - {text: "error code [0-9]+", regex: true}
outcomes:
  - status: completed
    notes: "read"
"""


@pytest.fixture(scope="module")
def portal_url():
    with loopback_server(Portal) as url:
        yield url


@pytest.fixture(scope="module")
def workspace_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("work")


@pytest.fixture
def browsers(settings, workspace_dir):
    # The 200,000-row page loads in about 20 s in CI, and took over 60 s with twice as many
    # test processes as cores: this module tests what is read, not how soon the page loads.
    pool = browser_pool(settings, workspace_dir=workspace_dir, page_load_timeout_s=HANG_S / 2)
    yield pool
    pool.close()


def _rt(runtime, sandbox_url, workspace_dir, **limits):
    return sandbox_runtime(
        runtime,
        sandbox_url,
        workspace_dir=workspace_dir,
        portal_retry_attempts=1,
        portal_allow_private=True,
        portal_outage_wait_s=0,
        **limits,
    )


@pytest.fixture
def acme(client, account, portal_url):
    return on_local_portal(client, account, portal_url, password=PASSWORD, sop=SOP)


def _run(rt, client, account, browsers, target: str, what: str) -> dict:
    """Run one task on ``target`` and return what its client sees: GET /tasks/{id}, the size of
    its stored result and of its webhook body, and its trajectory."""
    data = {"target": target, "what": what}
    response = client.post(
        "/tasks", json={"type": "check_eligibility", "data": data}, headers=account.headers
    )
    assert response.status_code == 200, response.get_json()
    task_id = response.get_json()["id"]
    run_within(rt, task_id, browsers, HANG_S, target)
    with rt.pool.connection() as conn:
        stored = conn.execute(
            "SELECT octet_length(result::text) AS n FROM tasks WHERE id = %s", (task_id,)
        ).fetchone()
        webhook = conn.execute(
            "SELECT octet_length(payload::text) AS n FROM webhook_messages WHERE task_id = %s",
            (task_id,),
        ).fetchone()
        steps = conn.execute(
            "SELECT name, status, message FROM trajectory_steps WHERE task_id = %s ORDER BY id",
            (task_id,),
        ).fetchall()
    task = client.get(f"/tasks/{task_id}", headers=account.headers).get_json()
    return {
        **task,
        "stored_bytes": stored["n"] or 0,
        "webhook_bytes": webhook["n"] if webhook else 0,
        "trajectory": "\n".join(f"{s['status']} {s['name']}: {s['message']}" for s in steps),
    }


def test_a_huge_table_keeps_its_first_rows_and_says_so(
    runtime, sandbox_url, workspace_dir, client, acme, browsers
):
    # Given a portal page with a 200,000-row table, and the default limits
    rt = _rt(runtime, sandbox_url, workspace_dir)
    limit = rt.settings.max_extract_rows

    # When a task extracts the table
    task = _run(rt, client, acme, browsers, f"/table?rows={HUGE_ROWS}", "table")

    # Then it keeps the first MAX_EXTRACT_ROWS rows, in order, and ends with issues saying so
    assert task["status"] == "completed_with_issues", (task["notes"], task["trajectory"])
    rows = task["result"]["rows"]
    assert len(rows) == limit
    assert rows[0] == {"member": "M0", "name": "Jane 0", "status": "active"}
    assert rows[-1]["member"] == f"M{limit - 1}"
    assert task["result"]["flag"] == "read"
    notes = task["notes"]
    assert notes.startswith("read"), notes
    assert "step 2" in notes and "`rows`" in notes, notes
    assert f"{HUGE_ROWS:,} rows" in notes and "MAX_EXTRACT_ROWS" in notes, notes
    # And neither Postgres nor the webhook holds the page
    assert task["stored_bytes"] <= rt.settings.max_result_bytes
    assert task["webhook_bytes"] <= rt.settings.max_result_bytes + 64 * 1024


def test_a_table_within_the_limit_is_read_whole(
    runtime, sandbox_url, workspace_dir, client, acme, browsers
):
    rt = _rt(runtime, sandbox_url, workspace_dir, max_extract_rows=50)

    task = _run(rt, client, acme, browsers, "/table?rows=50", "table")

    assert task["status"] == "completed", (task["notes"], task["trajectory"])
    assert task["notes"] == "read"
    assert [r["member"] for r in task["result"]["rows"]] == [f"M{i}" for i in range(50)]


def test_label_value_rows_are_bounded_too(
    runtime, sandbox_url, workspace_dir, client, acme, browsers
):
    rt = _rt(runtime, sandbox_url, workspace_dir, max_extract_rows=10)

    task = _run(rt, client, acme, browsers, "/table?rows=5000", "pairs")

    assert task["status"] == "completed_with_issues", (task["notes"], task["trajectory"])
    assert len(task["result"]["pairs"]) == 10
    assert "5,001 rows" in task["notes"] and "MAX_EXTRACT_ROWS" in task["notes"]


@pytest.mark.parametrize(
    ("what", "into", "notes"),
    [("text", "letter", "read"), ("end", "seen", "ended")],
    ids=["extract", "end_if"],
)
def test_a_huge_text_keeps_its_first_characters_and_says_so(
    runtime, sandbox_url, workspace_dir, client, acme, browsers, what, into, notes
):
    # Given a portal page with 5 million characters of text
    rt = _rt(runtime, sandbox_url, workspace_dir)
    limit = rt.settings.max_extract_chars

    # When a task extracts it, or an `end_if` sees it show and ends the task
    task = _run(rt, client, acme, browsers, "/text", what)

    # Then the value (an end_if's `seen`) keeps the first MAX_EXTRACT_CHARS characters, cut in
    # the browser, and the task ends with issues saying so, in its notes and in the step
    assert task["status"] == "completed_with_issues", (task["notes"], task["trajectory"])
    value = task["result"][into]
    assert len(value) == limit and value.startswith("lorem ipsum lorem"), len(value or "")
    said = task["notes"]
    assert said.startswith(notes) and f"`{into}`" in said, said
    assert "the text has 4,999,99" in said and "MAX_EXTRACT_CHARS" in said, said
    assert "cut: the text has" in task["trajectory"], task["trajectory"]
    assert task["stored_bytes"] <= rt.settings.max_result_bytes


@pytest.mark.parametrize(
    ("target", "what", "into", "had"),
    [("/attribute", "attribute", "tag", "5,000,000"), ("/address", "url", "address", "1,000,")],
    ids=["attribute", "url"],
)
def test_a_huge_attribute_or_address_keeps_its_first_characters_and_says_so(
    runtime, sandbox_url, workspace_dir, client, acme, browsers, target, what, into, had
):
    # Given a page with an attribute of 5 million characters, or an address of a million
    rt = _rt(runtime, sandbox_url, workspace_dir)
    limit = rt.settings.max_extract_chars

    # When a task extracts it
    task = _run(rt, client, acme, browsers, target, what)

    # Then the value keeps the first MAX_EXTRACT_CHARS characters (cut in the browser, as a
    # text is), and the task ends with issues saying how many the page had
    assert task["status"] == "completed_with_issues", (task["notes"], task["trajectory"])
    value = task["result"][into]
    assert len(value) == limit, len(value or "")
    assert value.endswith("xxxx") and (what == "attribute" or value.startswith("http")), value[:80]
    said = task["notes"]
    assert f"the text has {had}" in said and f"`{into}`" in said, said
    assert "MAX_EXTRACT_CHARS" in said, said


def test_huge_cells_are_bounded_by_the_characters_of_one_value(
    runtime, sandbox_url, workspace_dir, client, acme, browsers
):
    # Given a table of three rows whose cells hold a million characters each
    rt = _rt(runtime, sandbox_url, workspace_dir, max_extract_chars=1000)

    task = _run(rt, client, acme, browsers, "/wide", "table")

    # Then the whole table value holds at most MAX_EXTRACT_CHARS characters of page text
    assert task["status"] == "completed_with_issues", (task["notes"], task["trajectory"])
    rows = task["result"]["rows"]
    assert sum(len(v) for r in rows for v in r.values()) <= 1000
    assert rows[0]["member"] == "M0"
    assert "MAX_EXTRACT_CHARS" in task["notes"], task["notes"]


def test_a_result_over_its_limit_never_reaches_postgres_or_the_webhook(
    runtime, sandbox_url, workspace_dir, client, acme, browsers
):
    # Given values that each fit MAX_EXTRACT_CHARS but together pass MAX_RESULT_BYTES
    rt = _rt(
        runtime,
        sandbox_url,
        workspace_dir,
        max_extract_chars=60_000,
        max_result_bytes=100_000,
    )

    task = _run(rt, client, acme, browsers, "/text", "two")

    # Then the task ends with issues, the result keeps what fits (the small values stay) and
    # names what it left out, and Postgres and the webhook hold less than the limit
    assert task["status"] == "completed_with_issues", (task["notes"], task["trajectory"])
    result = task["result"]
    assert result["flag"] == "read"
    assert len(json.dumps(result)) <= 100_000
    assert [result["first"], result["second"]].count(None) == 1, result.keys()
    assert "MAX_RESULT_BYTES" in task["notes"], task["notes"]
    assert task["stored_bytes"] <= 100_000
    assert task["webhook_bytes"] <= 100_000 + 64 * 1024


def test_a_secret_the_page_shows_across_the_cut_leaves_no_fragment(
    runtime, sandbox_url, workspace_dir, client, acme, browsers
):
    # Given a page that shows the portal password back where a 1,000-character cut falls
    rt = _rt(runtime, sandbox_url, workspace_dir, max_extract_chars=1000)

    task = _run(rt, client, acme, browsers, "/secret", "text")

    # Then the value is cut after the password was masked: no piece of it is kept
    assert task["status"] == "completed_with_issues", (task["notes"], task["trajectory"])
    letter = task["result"]["letter"]
    assert len(letter) == 1000 and letter.startswith("a" * 997), letter[990:]
    assert "p-4" not in letter and "p-" not in letter[990:], letter[990:]


def test_the_limits_are_settings_checked_at_start():
    settings = load_settings({"MAX_EXTRACT_ROWS": "20", "MAX_RESULT_BYTES": "4096"})
    assert (settings.max_extract_rows, settings.max_result_bytes) == (20, 4096)
    assert load_settings({}).max_extract_chars == 200_000
    for name in ("MAX_EXTRACT_ROWS", "MAX_EXTRACT_CHARS", "MAX_RESULT_BYTES"):
        with pytest.raises(SettingsError, match=name):
            load_settings({name: "0"})


def test_an_error_pattern_on_the_page_text_reads_it_again_only_when_it_changed(
    runtime, sandbox_url, workspace_dir, client, acme, browsers
):
    # Given an SOP with an error pattern on the page's text, on a page that waits 3 s before it
    # shows what the SOP waits for (a wait looks at the page every 50 ms)
    rt = _rt(runtime, sandbox_url, workspace_dir)

    task = _run(rt, client, acme, browsers, "/counted", "wait")

    # Then the page's text was read when it loaded and when it changed, not at every look
    # (it was read some 60 times, twice a look: once per 50 ms poll)
    assert task["status"] == "completed", (task["notes"], task["trajectory"])
    assert int(task["result"]["reads"]) <= 10, task["result"]["reads"]


def test_an_error_that_shows_later_on_a_huge_page_is_still_seen(
    runtime, sandbox_url, workspace_dir, client, acme, browsers
):
    # Given a 5-million-character page that shows an error code a second after it loaded
    rt = _rt(runtime, sandbox_url, workspace_dir)

    task = _run(rt, client, acme, browsers, "/late-error", "wait")

    # Then the wait sees the page change to an error page: a portal error, not a missing element
    assert task["status"] == "failed", (task["notes"], task["trajectory"])
    assert task["notes"].startswith("Portal error"), task["notes"]


def test_cells_are_cut_in_order_to_the_characters_of_one_value():
    rows = [[[True, "Member"], [True, "Name"]], [[False, "M1"], [False, "Jane Doe"]]]
    assert cut_cells(rows, 100) == (rows, False)
    assert cut_cells(rows, 14) == ([rows[0], [[False, "M1"], [False, "Ja"]]], True)
    assert cut_cells(rows, 12) == ([rows[0], [[False, "M1"]]], True)
    assert cut_cells(rows, 10) == ([rows[0]], True)


def test_a_cut_makes_a_completed_outcome_completed_with_issues_and_leaves_failed_alone():
    cut = Cut("step 2 (Read the rows of css `#t` into `rows`)", "rows", ("the table has 5 rows",))
    done = bounded(Outcome("completed", "Read", {"rows": []}), [cut], 1000)
    assert done.status == "completed_with_issues"
    assert done.notes == (
        "Read. At step 2 (Read the rows of css `#t` into `rows`), the page had more than a task"
        " keeps: the table has 5 rows."
    )
    assert bounded(Outcome("failed", "No.", {}), [cut], 1000).status == "failed"
    many = [dataclasses.replace(cut, into=f"v{i}") for i in range(5)]
    notes = bounded(Outcome("completed", "", {}), many, 1000).notes
    assert notes.count("At step") == 3 and "2 more extract(s)" in notes and "`v4`" in notes
    assert bounded(Outcome("completed", "Read", {"a": 1}), [], 1000).notes == "Read"


def test_a_result_over_its_bytes_loses_its_largest_values_first():
    result = {"big": "x" * 500, "bigger": "y" * 900, "flag": True}
    done = bounded(Outcome("completed", "", result), [], 600)
    assert done.result == {"big": "x" * 500, "bigger": None, "flag": True}
    assert done.status == "completed_with_issues"
    assert "`bigger` (902 bytes)" in done.notes and "MAX_RESULT_BYTES" in done.notes
