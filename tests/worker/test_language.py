"""The step kinds the built-in SOPs do not exercise, run on a small local page."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler

import pytest

from shared.sop.loader import load_sop
from tests.worker.support import PLAIN_USER, loopback_server
from worker.agent.interpreter import run_sop
from worker.errors import StepFailed

PAGE = """<!doctype html><html><head><title>Playground</title></head><body>
<h1>Playground</h1>
<label for="c">Email me</label><input type="checkbox" id="c">
<label for="s">Colour</label><select id="s"><option value="r">Red</option>
  <option value="g">Green</option></select>
<label for="p">Plan</label><select id="p"
  onchange="document.getElementById('said').textContent = 'Plan sent: ' + this.value">
  <option value="">Choose</option><option value="b" disabled>Bronze</option>
  <option value="s">Silver</option></select><p id="said"></p>
<label for="t">Note</label><input id="t" value="preset">
<label for="f">Document</label><input type="file" id="f" multiple>
<div id="busy" role="status">Working...</div>
<a href="#done" id="more" data-id="42">More results</a>
<table><caption>Rows</caption><thead><tr><th>Code</th><th>Amount</th></tr></thead>
<tbody><tr><td>A1</td><td>$10.00</td></tr><tr><td>B2</td><td>$1,250.00</td></tr></tbody></table>
<p>Reference: REF-12345 issued</p>
<script>setTimeout(() => document.getElementById('busy').remove(), 300);</script>
</body></html>"""


@pytest.fixture(scope="module")
def page_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Served over http (the agent opens only http(s) pages), so it can change its #fragment.
    folder = tmp_path_factory.mktemp("playground")
    (folder / "playground.html").write_text(PAGE)
    handler = functools.partial(Quiet, directory=str(folder))
    with loopback_server(handler) as url:
        yield f"{url}/playground.html"


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def run(driver, url, steps: str, recorder=None, files=(), outcomes: str | None = None):
    sop = load_sop(
        f"""
task_type: playground
title: Playground
portal: local
inputs: [{{name: who, format: name}}]
settings: {{screenshots: every_step, step_timeout_s: 3}}
steps:
  - goto: "{url}"
{steps}
outcomes:
{outcomes or '  - {status: completed, notes: "done"}'}
"""
    )
    return run_sop(
        driver,
        sop,
        {"who": "Jane Doe"},
        base_url=url.rsplit("/", 1)[0],
        credentials=PLAIN_USER,
        recorder=recorder,
        files=list(files),
    )


def test_form_controls_waits_and_extracts(driver, page_url, recorder, task_files) -> None:
    outcome = run(
        driver,
        page_url,
        """
  - wait_for: {gone: {role: status}}
  - check: {label: Email me}
  - select: {label: Colour, option: green}
  - fill: {label: Note, value: " for {{ who.first }}", clear: false}
  - upload: {label: Document, files: "*.pdf"}
  - extract: {into: ticked, attribute: checked, from: {label: Email me}}
  - extract: {into: colour, text: {label: Colour}}
  - extract: {into: note, text: {label: Note}}
  - extract: {into: link_id, attribute: data-id, from: {link: More results}}
  - extract: {into: rows, table: {role: table, name: Rows}}
  - extract: {into: n_links, count: {role: link}}
  - extract: {into: ref, text: {text: "Reference:"}, pattern: "(REF-\\\\d+)"}
  - extract: {into: missing, text: {label: Nope}, default: null}
  - set: {total: "rows | map(attribute='amount') | map('money') | map('float') | sum"}
  - click: {link: More results}
  - wait_for: {url_contains: "#done"}
  - extract: {into: url, url: true}
  - screenshot: the end
""",
        recorder=recorder,
        files=task_files("a.pdf", "b.txt"),
    )
    r = outcome.result
    assert (r["ticked"], r["colour"], r["note"], r["link_id"]) == (
        "true",
        "g",
        "preset for Jane",
        "42",
    )
    assert r["rows"] == [{"code": "A1", "amount": "$10.00"}, {"code": "B2", "amount": "$1,250.00"}]
    assert (r["n_links"], r["ref"], r["missing"], r["total"]) == (1, "REF-12345", None, 1260.0)
    assert r["url"].endswith("#done")
    assert recorder.named("Upload")[0].message == "uploaded a.pdf"
    # screenshots: every_step
    assert all(s.screenshot for s in recorder.steps if s.status == "ok")


def test_a_number_json_has_none_for_is_null_in_the_result(driver, page_url, recorder) -> None:
    # a page's "NaN" or "Infinity" made a float: JSON has no such number, so the result (and
    # with it GET /tasks/{id} and the webhook) says null, and the step's message says the same
    outcome = run(
        driver,
        page_url,
        """  - set: {ratio: "'NaN' | float", huge: "'-Infinity' | float", fine: "'1.5' | float"}""",
        recorder=recorder,
    )
    assert (outcome.result["ratio"], outcome.result["huge"], outcome.result["fine"]) == (
        None,
        None,
        1.5,
    )
    assert recorder.named("Set")[0].message == "ratio = None, huge = None, fine = 1.5"


def test_loops_branches_and_finish(driver, page_url, recorder) -> None:
    outcome = run(
        driver,
        page_url,
        """
  - set: {seen: "[]", n: "0"}
  - for_each: "[1, 2, 3, 4]"
    as: x
    until: x > 3
    do:
      - set: {seen: "seen + [x * 10]"}
  - while: n < 5
    max: 10
    do:
      - set: {n: n + 2}
  - if: n == 6
    then:
      - set: {branch: "'then'"}
    else:
      - set: {branch: "'else'"}
  - click: {button: Not There}
    optional: true
    timeout_s: 0.2
  - set: {skipped: "true"}
    when: "false"
  - finish: enough
  - fail: never reached
""",
        recorder=recorder,
        outcomes="""  - when: branch == 'then'
    status: completed_with_issues
    notes: "seen {{ seen | join(',') }}, n={{ n }}"
  - {status: failed, notes: "wrong"}""",
    )
    assert outcome.status == "completed_with_issues" and outcome.notes == "seen 10,20,30, n=6"
    assert "x" not in outcome.result and "loop" not in outcome.result
    assert "skipped" not in outcome.result
    statuses = {s.name.split(". ", 1)[1]: s.status for s in recorder.steps}
    assert statuses['Click button "Not There"'] == "skipped"


@pytest.mark.parametrize(
    ("grow", "refusal"),
    [
        # `~` writes both sides at once: the second sight of `s` counts against the bound
        ("s ~ s", "a joined text would pass 65536 characters"),
        # `+` adds one reference a round, each within the bound: the `set` step stops it
        ("s + [s[0]]", "`s` would hold more than a task's result may"),
    ],
    ids=["doubled", "grown"],
)
def test_a_value_grown_in_a_loop_fails_its_step_before_it_fills_the_memory(
    driver, page_url, grow, refusal
):
    # each round of the `while` doubles the text, or adds 60,000 characters to the list: 4
    # million characters after 12 rounds, 4 thousand billion after 32 (a `max` may be up to
    # 10,000), were nothing to stop it
    first = "'x' * 1000" if grow == "s ~ s" else "['x' * 60000]"
    steps = f"""  - set: {{s: "{first}"}}
  - while: "true"
    max: 40
    do:
      - set: {{s: "{grow}"}}
"""
    with pytest.raises(StepFailed, match=refusal):
        run(driver, page_url, steps)


def test_while_that_never_ends_fails(driver, page_url) -> None:
    with pytest.raises(StepFailed, match="still going after 3 rounds"):
        run(driver, page_url, "  - while: 'true'\n    max: 3\n    do:\n      - set: {x: 1}\n")


def test_required_upload_without_files_fails(driver, page_url) -> None:
    with pytest.raises(StepFailed, match="no task file"):
        run(driver, page_url, "  - upload: {label: Document, files: '*.pdf', required: true}\n")


def test_undefined_variable_in_a_value_fails_the_step(driver, page_url) -> None:
    with pytest.raises(StepFailed, match="template error.*membr_id"):
        run(driver, page_url, "  - fill: {label: Note, value: '{{ membr_id }}'}\n")


def test_unknown_option_lists_the_choices(driver, page_url) -> None:
    with pytest.raises(StepFailed, match="Red, Green"):
        run(driver, page_url, "  - select: {label: Colour, option: Blue}\n")


def test_a_chosen_option_reaches_the_pages_script_and_a_disabled_one_is_refused(
    driver, page_url
) -> None:
    # the page hears the choice as it hears a person's (its change handler runs)
    outcome = run(
        driver,
        page_url,
        "  - select: {label: Plan, option: silver}\n"
        "  - extract: {into: said, text: {text: 'Plan sent:'}}\n",
    )
    assert outcome.result["said"] == "Plan sent: s"
    # an option a person cannot pick fails the step and says why
    with pytest.raises(StepFailed, match="'Bronze' cannot be chosen: it is disabled"):
        run(driver, page_url, "  - select: {label: Plan, option: Bronze}\n")


def test_bad_condition_fails_the_step_but_not_the_outcome(driver, page_url) -> None:
    with pytest.raises(StepFailed, match="could not evaluate"):
        run(driver, page_url, '  - set: {x: 1}\n    when: "none > 3"\n')
    outcome = run(
        driver,
        page_url,
        "  - set: {x: 1}\n",
        outcomes="  - when: none > 3\n    status: failed\n    notes: nope\n"
        "  - {status: completed, notes: 'x={{ x }}'}",
    )
    assert (outcome.status, outcome.notes) == ("completed", "x=1")


@pytest.mark.parametrize("lookup", ["'{member}'.format()", "'{0}'.format()", "'%(member)s' % {}"])
def test_a_name_a_format_does_not_find_is_the_sops_error_and_never_undoes_the_outcome(
    driver, page_url, lookup
) -> None:
    # given a template that formats a name (or a place) its values do not have: in a value,
    # the step fails as a template error, not as the agent's internal error
    with pytest.raises(StepFailed, match="template error: (KeyError|IndexError)"):
        run(driver, page_url, f'  - fill: {{label: Note, value: "{{{{ {lookup} }}}}"}}\n')
    # in a condition, it could not be evaluated
    with pytest.raises(StepFailed, match="could not evaluate"):
        run(driver, page_url, f'  - set: {{x: 1}}\n    when: "{lookup} == 1"\n')
    # and in the notes, written once the work is done, the outcome stands and says so
    outcome = run(
        driver,
        page_url,
        "  - set: {x: 1}\n",
        outcomes=f'  - {{status: completed, notes: "x={{{{ x }}}} {{{{ {lookup} }}}}"}}',
    )
    assert outcome.status == "completed"
    assert outcome.notes.startswith("(the SOP's notes could not be written:"), outcome.notes


def test_a_number_too_long_to_write_fails_its_step_not_the_agent(driver, page_url) -> None:
    # a `set` step's value is shown in the trajectory and kept in the result, both as text:
    # a number of 5,001 digits ended the task as the agent's internal error (ValueError)
    with pytest.raises(StepFailed, match="could not evaluate.*a power would have more than 4300"):
        run(driver, page_url, '  - set: {x: "10 ** 5000"}\n')


def test_a_pattern_built_as_it_runs_that_does_not_compile_fails_the_step_saying_why(
    driver, page_url
) -> None:
    # given a condition whose pattern is made of what the run read (an unclosed group)
    steps = (
        "  - set: {found: \"'(unclosed'\"}\n  - set: {x: 1}\n    when: \"'x' is matching(found)\"\n"
    )
    # then the step fails and names the pattern's fault (an uncaught re.error before)
    with pytest.raises(StepFailed, match="could not evaluate.*bad regular expression.*RE2"):
        run(driver, page_url, steps)
