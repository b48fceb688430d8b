"""Property-based SOPs (hypothesis) run in a real browser: whatever steps an account writes,
the run ends with an outcome or the engine's own error (a failed step that says why), never
another Python error, which the worker would report as its internal error.

Steps of every kind, nested in `if`, `while` and `for_each`, with hostile values (formats that
name what is missing, numbers too long to write, a page's table sorted as a dict), run on the
small page of test_language.py.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.sop.errors import SopInvalid
from tests.fuzzing import fuzz_settings
from tests.worker.test_language import page_url, run  # noqa: F401 - page_url is a fixture
from worker.errors import AgentError

pytestmark = [pytest.mark.fuzz, pytest.mark.browser]

FUZZ = fuzz_settings(30, 300)

VALUES = st.sampled_from([
    "{{ who }}", "x", "", " ", "Red", "silver", "Bronze", "A1", "\u202e", "{{ none }}",
    "{{ who[0] }}", "{{ [1, 2] }}", "{{ r }}", "{{ r.code }}", "{{ loop }}", "{{ lipsum(2) }}",
    "{{ '%(a)s' % {} }}", "{{ '{0}'.format() }}", "{{ r | dictsort }}", "{{ 10 ** 4400 }}",
    "{{ 'x' * 70000 }}",
])  # fmt: skip
LOCATORS = st.sampled_from([
    "{label: Note}", "{label: Colour}", "{label: Plan}", "{label: Email me}", "{label: Nope}",
    "{css: '#more'}", "{css: table}", "{role: table}", "{role: status}", "{text: 'Reference:'}",
    "{xpath: '//h1'}", "{text: '{{ who }}'}", "{css: '{{ who }}'}", "{css: p, nth: 2}",
    "{role: link, name: More results}", "{css: 'tbody tr'}", "{css: '[id]', nth: 99}",
])  # fmt: skip
CONDITIONS = st.sampled_from([
    "true", "false", "r", "not r", "r == 1", "r | length > 1", "'%(a)s' % {}",
    "who is matching('(?i)jane')", "r is matching('x')", "none > 3", "(r or [])[0]",
])  # fmt: skip
EXPRESSIONS = st.sampled_from([
    "[1, 2]", "r", "who", "10 ** 4400", "lipsum", "cycler(1, 2)", "{'a': r}", "(r or '') ~ 'x'",
    "namespace(a=1)", "range(5)", "r | dictsort", "'{a}'.format()",
])  # fmt: skip


def _steps(depth: int) -> st.SearchStrategy[str]:
    """One step, as YAML lines of a list item; below ``depth`` levels of `if`, `while` and
    `for_each`."""
    extract_kinds = st.sampled_from(["text", "table", "pairs", "exists", "count"])
    extract_options = st.sampled_from(["", ", pattern: 'REF-(\\\\d+)'", ", default: none"])
    simple = st.one_of(
        VALUES.map(lambda v: f'- fill: {{label: Note, value: "{v}"}}'),
        VALUES.map(lambda v: f'- select: {{label: Colour, option: "{v}"}}\n  timeout_s: 1'),
        VALUES.map(lambda v: f'- wait_for: {{text: "{v}"}}\n  timeout_s: 1'),
        VALUES.map(lambda v: f'- screenshot: "{v}"'),
        LOCATORS.map(lambda loc: f"- click: {loc}\n  timeout_s: 1"),
        LOCATORS.map(lambda loc: f"- dismiss_if_present: {loc}"),
        LOCATORS.map(lambda loc: f"- extract: {{into: r, attribute: href, from: {loc}}}\n"
                                 "  timeout_s: 1"),
        st.builds(lambda kind, loc, more: f"- extract: {{into: r, {kind}: {loc}{more}}}\n"
                                          "  timeout_s: 1", extract_kinds, LOCATORS,
                  extract_options),
        st.builds(lambda kind, loc: f"- wait_for: {{{kind}: {loc}}}\n  timeout_s: 1",
                  st.sampled_from(["visible", "gone"]), LOCATORS),
        st.builds(lambda loc, v: f"- end_if: {{visible: {loc}, status: completed_with_issues,"
                                 f' notes: "{v} {{{{ seen }}}}"}}', LOCATORS, VALUES),
        EXPRESSIONS.map(lambda e: f'- set: {{r: "{e}"}}'),
        st.sampled_from(["#x", "/playground.html", "{{ who }}", "?q={{ r }}"]).map(
            lambda url: f'- goto: "{url}"'),
        st.sampled_from(["all", "*.pdf", "[", "{{ who }}"]).map(
            lambda files: f'- upload: {{label: Document, files: "{files}"}}'),
    )  # fmt: skip
    if depth == 0:
        return simple
    body = st.lists(_steps(depth - 1), min_size=1, max_size=2).map(
        lambda steps: "\n".join("    " + line for s in steps for line in s.splitlines())
    )
    return st.one_of(
        simple,
        st.builds(lambda c, b: f'- if: "{c}"\n  then:\n{b}', CONDITIONS, body),
        st.builds(lambda c, b: f'- while: "{c}"\n  max: 3\n  do:\n{b}', CONDITIONS, body),
        st.builds(lambda e, b: f'- for_each: "{e}"\n  as: r\n  do:\n{b}', EXPRESSIONS, body),
        st.builds(lambda s, c: f'{s}\n  when: "{c}"', simple, CONDITIONS),
        simple.map(lambda s: f"{s}\n  optional: true"),
    )


def test_any_sop_ends_with_an_outcome_or_a_step_that_says_why(driver, page_url):  # noqa: F811
    @FUZZ
    @given(steps=st.lists(_steps(2), min_size=1, max_size=4), notes=VALUES)
    def run_one(steps: list[str], notes: str) -> None:
        text = "\n".join("  " + line for s in steps for line in s.splitlines()) + "\n"
        # refused when stored, or a step failed saying why: the SOP's fault, said so
        with contextlib.suppress(SopInvalid, AgentError):
            run(driver, page_url, text, outcomes=f'  - {{status: completed, notes: "{notes}"}}')

    run_one()
