"""Property-based SOP expressions (hypothesis): whatever an author writes, a template or a
condition gives a value or raises jinja2.TemplateError, never another Python error.

The agent turns a template error into a failed step that blames the SOP, and in an outcome's
notes keeps the status the rule gave; any other error would end the task as the agent's internal
error, after the work was done. The expressions are built from the filters, tests and methods an
SOP can reach, over values of every kind, so a filter given the wrong kind of value is tried.
"""

from __future__ import annotations

import jinja2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.sop.expressions import evaluate, render_leniently, template_env
from tests.fuzzing import fuzz_settings

# (Python warns of a constant subscripted, `1[0]`, as it compiles such a template.)
pytestmark = [pytest.mark.fuzz, pytest.mark.filterwarnings("ignore::SyntaxWarning")]

FUZZ = fuzz_settings(5000, 30000)

# What a run's context holds: extracted rows, a text, a number.
CONTEXT = {
    "rows": [{"a": "1", "b": "$2.00"}, {"a": None}],
    "row": {"a": "x"},
    "s": "Jane Doe",
    "n": 3,
}
LITERALS = [
    "''", "'abc'", "'{0}'", "'{a}'", "'%s'", "'%(a)s'", "'%d'", "'{}'", "'{0:>{1}}'", "'{:x}'",
    "'{!r}'", "'{a.b}'", "'{0[1]}'", "'1,234.50'", "'2025-03-20'", "'x\\ny'", "0", "1", "-1", "2",
    "1.5", "10**3", "none", "true", "false", "[]", "[1, 2]", "['a', 'b']", "{}", "{'a': 1}",
    "(1,)", "range(3)", "rows", "row", "s", "n", "today()", "dict(a=1)", "namespace(a=1)",
    "lipsum", "cycler(1, 2)", "joiner()",
]  # fmt: skip
OPERATORS = ["+", "-", "*", "/", "//", "%", "~", "==", "<", "in", "and", "or", "**"]
METHODS = [
    "format", "split", "replace", "join", "strip", "upper", "startswith", "find", "index",
    "count", "center", "zfill", "partition", "splitlines", "format_map", "translate",
    "removeprefix", "get", "items", "keys", "copy",
]  # fmt: skip
ATTRIBUTES = ["a", "b", "items", "real", "__class__", "mro", "format"]


def _call(name: str, args: list[str]) -> str:
    return f"{name}({', '.join(args)})" if args else name


def expressions(depth: int) -> st.SearchStrategy[str]:
    """Expressions nested ``depth`` deep: operators, filters, tests, methods, items, slices."""
    if depth == 0:
        return st.sampled_from(LITERALS)
    inner = expressions(depth - 1)
    args = st.lists(inner, max_size=2)
    return st.one_of(
        st.sampled_from(LITERALS),
        st.builds(lambda a, op, b: f"({a} {op} {b})", inner, st.sampled_from(OPERATORS), inner),
        st.builds(lambda a, f, xs: f"({a} | {_call(f, xs)})",
                  inner, st.sampled_from(sorted(template_env().filters)), args),
        st.builds(lambda a, t, xs: f"({a} is {_call(t, xs[:1])})",
                  inner, st.sampled_from(sorted(template_env().tests)), args),
        st.builds(lambda a, m, xs: f"{a}.{m}({', '.join(xs)})",
                  inner, st.sampled_from(METHODS), args),
        st.builds(lambda a, key: f"{a}[{key}]", inner, inner),
        st.builds(lambda a, i, j: f"{a}[{i}:{j}]", inner, inner, inner),
        st.builds(lambda a, name: f"{a}.{name}", inner, st.sampled_from(ATTRIBUTES)),
        st.builds(lambda a, b, c: f"({a} if {b} else {c})", inner, inner, inner),
        inner.map(lambda a: f"[{a}, {a}]"),
        inner.map(lambda a: f"{{'k': {a}}}"),
    )  # fmt: skip


def test_any_expression_gives_a_value_or_a_template_error():
    @FUZZ
    @given(expression=expressions(3), in_notes=st.booleans())
    def run(expression: str, in_notes: bool) -> None:
        try:
            if in_notes:  # an outcome's notes: an unknown name is empty there
                render_leniently("{{ " + expression + " }}", CONTEXT)
            else:  # a condition or a `set` value
                evaluate(expression, CONTEXT)
        except jinja2.TemplateError:
            pass  # the SOP's fault, said as such

    run()
