"""SOP templates are sandboxed and bounded: output, time and the size of any one value."""

from __future__ import annotations

import time

import jinja2
import pytest
from jinja2.exceptions import SecurityError

from shared.sop.expressions import evaluate, render, render_leniently, template_env
from shared.template_sandbox import BoundedSandbox, TemplateLimitExceeded


@pytest.mark.parametrize(
    ("source", "limit"),
    [
        ("{% for i in range(60000) %}{{ 'x' * 20 }}{% endfor %}", "MAX_TEMPLATE_OUTPUT_BYTES"),
        ("{% for i in range(10**9) %}x{% endfor %}", "MAX_TEMPLATE_OUTPUT_BYTES"),
        ("{{ 'x' * 10**9 }}", "MAX_TEMPLATE_OUTPUT_BYTES"),
        ("{{ 10 ** (10 ** 8) }}", "more than 4300 digits"),
        ("{{ '%999999999d' % 1 }}", "MAX_TEMPLATE_OUTPUT_BYTES"),
        ("{{ '{:>999999999}'.format(1) }}", "MAX_TEMPLATE_OUTPUT_BYTES"),
        ("{{ '%999999999d' | format(1) }}", "MAX_TEMPLATE_OUTPUT_BYTES"),
        ("{{ 'x' | center(10**9) }}", "MAX_TEMPLATE_OUTPUT_BYTES"),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(60) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
            "MAX_TEMPLATE_OUTPUT_BYTES",
        ),
        (
            "{% for i in range(60000) %}{% for j in range(60000) %}{% endfor %}{% endfor %}",
            "TEMPLATE_TIMEOUT_S",
        ),
    ],
    ids=[
        "megabytes",
        "range-1e9",
        "repeat",
        "power",
        "percent-width",
        "format-width",
        "format-filter",
        "center",
        "doubling",
        "nested-loops",
    ],
)
def test_a_hostile_template_is_stopped_quickly(source, limit):
    # given the sandbox every SOP template runs in
    env = template_env()
    # when a template tries to render megabytes, loop for ever or build a huge value
    t0 = time.monotonic()
    with pytest.raises(TemplateLimitExceeded, match=limit):
        env.from_string(source).render()
    # then it is stopped, by its output, its time or its value size, within a bound
    assert time.monotonic() - t0 < env.timeout_s + 5


def test_the_limit_error_is_a_template_error():
    # Callers (the agent) already turn template errors into a failed step with a note.
    assert issubclass(TemplateLimitExceeded, jinja2.TemplateError)


def test_ordinary_templates_render_as_before():
    out = render(
        "{{ name }} {{ '%05d' % 3 }} {{ 'a' | center(5) }} {{ '{:>4}'.format(1) }} {{ [1] * 2 }}",
        {"name": "Jane"},
    )
    assert out == "Jane 00003   a      1 [1, 1]"


def test_the_bounds_come_from_settings():
    env = BoundedSandbox(max_output_chars=10, timeout_s=1.0)
    with pytest.raises(TemplateLimitExceeded, match="10 characters"):
        env.from_string("{{ 'x' * 11 }}").render()
    assert env.from_string("{{ 'x' * 10 }}").render() == "x" * 10


ESCAPE = "''.__class__.__mro__[1].__subclasses__()"


@pytest.mark.parametrize(
    "run",
    [
        lambda: render("{{ " + ESCAPE + " }}", {}),
        lambda: render_leniently("{{ " + ESCAPE + " }}", {}),
        lambda: evaluate(ESCAPE, {}),
        lambda: evaluate("{{ " + ESCAPE + " }}", {}),
    ],
    ids=["step-template", "outcome-notes", "condition", "condition-in-braces"],
)
def test_an_escape_is_refused_wherever_a_template_runs(run):
    # given the one environment that validates and runs every template and condition
    # when a template reaches for Python's classes, in each place the agent evaluates one
    # then the sandbox refuses it
    with pytest.raises(SecurityError, match="unsafe"):
        run()


def test_instructions_fill_in_the_task_inputs_as_the_sandbox_renders_them():
    from shared.inputs import norm_name
    from shared.sop.expressions import fill_instructions

    inputs = {
        "member_id": "W1",
        "true": "an input named like a literal",
        "count": 3,
        "patient": {"first": "Jane", "items": "a key named like a dict method"},
    }
    text = (
        "Check {{ member_id }}, {{member_id|lower}}, {{ count }}, {{ true }}, {{ plan }},"
        " {{ member_id ~ '!' }}, {{ patient.first }}, {{ patient.last }}"
    )
    assert fill_instructions(text, inputs) == (
        "Check W1, w1, 3, {{ true }}, {{ plan }}, W1!, Jane, {{ patient.last }}"
    )
    source = "{{ member_id }} {{ count }} {{ patient.first }} {{ patient.items }} {{ name.last }}"
    named = {**inputs, "name": norm_name("DOE, JANE")}
    assert fill_instructions(source, named) == render(source, named)
    assert fill_instructions("{{ name }}: {{ name.last }}", named) == "Jane Doe: Doe"
    # and through Understudy's own filters, as the sandbox renders them (None when unreadable)
    dated = {**named, "dob": "1990-01-15", "odd": "not a date", "fee": "$1,234.5"}
    source = (
        "{{ dob | us_date }} {{dob|iso_date}} {{ odd | us_date }} {{ fee | money }}"
        " {{ member_id | digits }} {{ patient.first | squash }} {{ dob | upper }}"
    )
    assert fill_instructions(source, dated) == render(source, dated)
    assert fill_instructions("{{ dob | us_date }}", dated) == "01/15/1990"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("'NaN' | float", "nan"),
        ("'-Infinity' | float", "-inf"),
        ("1e999", "inf"),
        ("['nan' | float, 1.5]", "[nan, 1.5]"),
        ("('inf' | float,)", "(inf,)"),
        ("{'ratio': 'nan' | float}", "{'ratio': nan}"),
        ("'1.5' | float", "1.5"),
    ],
)
def test_a_constant_json_has_no_number_for_is_a_value_not_an_error(source, expected):
    # Jinja2 computes such a constant when it compiles the template, and wrote it as a name
    # Python does not know (NameError, which no caller expects of a template)
    assert repr(evaluate(source, {})) == expected
    assert render(f"{{{{ {source} }}}}", {}) == expected.strip("'")


# Each builds 144 million characters from parts within the bound; none may run.
GROWING = "'x' * 12000"


@pytest.mark.parametrize(
    "source",
    [
        f"range(12000) | join({GROWING})",
        "range(12000) | map('string') | map('center', 12000) | join",
        f"[{GROWING}] * 12000",
        f"({GROWING}) | replace('x', {GROWING})",
        "('\\n' * 12000) | indent(12000)",
        f"range(3) | batch(12000, {GROWING}) | list",
        f"range(3) | slice(12000, {GROWING}) | list",
        "range(12000) | map('string') | map('center', 12000) | list",
        "lipsum(12000, min=100, max=120)",
    ],
    ids=[
        "join-separator",
        "join-items",
        "repeat-list",
        "replace",
        "indent",
        "batch",
        "slice",
        "map",
        "lipsum",
    ],
)
def test_a_filter_whose_result_outgrows_what_it_was_given_is_refused_before_it_runs(source):
    with pytest.raises(TemplateLimitExceeded, match="MAX_TEMPLATE_OUTPUT_BYTES"):
        evaluate(source, {})
    with pytest.raises(TemplateLimitExceeded, match="MAX_TEMPLATE_OUTPUT_BYTES"):
        render(f"{{{{ {source} }}}}", {})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("rows | join(', ', attribute='member')", "M1, M2"),
        ("rows | map(attribute='member') | join('-')", "M1-M2"),
        ("rows | map(attribute='member') | map('lower') | list", ["m1", "m2"]),
        ("'a-b-c' | replace('-', '+', 1)", "a+b-c"),
        ("'a\\nb' | indent(2, first=true)", "  a\n  b"),
        ("range(5) | batch(2, 0) | list", [[0, 1], [2, 3], [4, 0]]),
        ("range(5) | slice(2, fill_with=0) | list", [[0, 1, 2], [3, 4, 0]]),
        ("['ab'] * 3", ["ab", "ab", "ab"]),
        ("('x' * 60000) | length", 60000),
    ],
)
def test_those_filters_within_the_bound_work_as_before(source, expected):
    assert evaluate(source, {"rows": [{"member": "M1"}, {"member": "M2"}]}) == expected


def test_a_long_text_given_to_those_filters_is_not_refused_for_its_own_length():
    # a page's text read into a variable may be longer than the bound: what counts is what a
    # filter adds to it
    page = "line\n" * 40_000
    context = {"page": page, "lines": page.split("\n")}
    assert evaluate("page | replace('\\n', ' ') | length", context) == len(page)
    assert evaluate("page | indent(1) | length", context) == len(page) + 40_000 - 1
    assert evaluate("lines | join(' ') | length", context) == len(page)
    assert evaluate("([page] * 1) | length", context) == 1
    assert evaluate("(page + '\\n') | length", context) == len(page) + 1
    assert evaluate("(lines + ['end']) | length", context) == 40_002
    assert evaluate("lines | map('upper') | map('trim') | list | length", context) == 40_001


@pytest.mark.parametrize("source", ["page + page", "lines + lines", "(lines + lines) | join"])
def test_adding_more_than_the_bound_to_a_text_or_a_list_is_refused(source):
    # (the step after would double it again: `+` in a loop)
    page = "line\n" * 40_000
    context = {"page": page, "lines": page.split("\n")}
    with pytest.raises(TemplateLimitExceeded, match="a sum would pass"):
        evaluate(source, context)


@pytest.mark.parametrize(
    "source",
    [
        "{% set l = ['x'] %}{{ l.extend(l) }}",
        "{% set l = [] %}{{ l.append(1) }}",
        "{% set d = {} %}{{ d.update(a=1) }}",
        "{% set d = {'a': 1} %}{{ d.pop('a') }}",
        "{{ ('x'.encode() * 10**9) | length }}",
    ],
    ids=["extend", "append", "update", "pop", "bytes"],
)
def test_a_list_or_dict_cannot_be_changed_in_place_nor_a_text_made_bytes(source):
    # `l.extend(l)` thirty times is a list of a billion items (8 GB) without a character of
    # output: a list grows only through the operations that are bounded (`l + [x]`); bytes
    # would escape every bound on texts (`'x'.encode() * 10**9` is a gigabyte)
    with pytest.raises(SecurityError, match="is unsafe"):
        render(source, {})


# A namespace's list that holds 50 references to one text of 12,000 characters: 12 KB to
# hold in memory, 600,000 characters to write.
SHARED = (
    "{% set s = 'x' * 12000 %}{% set ns = namespace(l=[]) %}"
    "{% for i in range(50) %}{% set ns.l = ns.l + [s] %}{% endfor %}"
)


@pytest.mark.parametrize(
    "shown",
    [
        "{{ ns.l }}",
        "{{ ns.l ~ '' }}",
        "{{ ns }}",
        "{{ ns.l | string | length }}",
        "{{ ns.l | tojson | length }}",
        "{{ ns.l | digits | length }}",
        "{{ ns.l is matching('y') }}",
        "{{ ns.l is lower }}",
        "{{ ('%s' % ns.l) | length }}",
        "{{ '{}'.format(ns.l) | length }}",
        "{{ ns.l | xmlattr | length }}",
    ],
    ids=[
        "shown",
        "concat",
        "namespace",
        "string",
        "tojson",
        "own-filter",
        "own-test",
        "test",
        "percent",
        "format",
        "xmlattr",
    ],
)
def test_a_list_written_as_text_past_the_bound_is_refused_before_it_is_written(shown):
    with pytest.raises(TemplateLimitExceeded, match="a list or dict written as text would pass"):
        render(SHARED + shown, {})


@pytest.mark.parametrize(
    "source",
    [
        "('{0}' * 3000).format(s)",
        "'{:>{}}'.format('x', 10**8)",
        "('%(a)s' * 3000) % {'a': s}",
        "('%(a)s' * 3000) | format(a=s)",
        "('%s' * 8) % (s, s, s, s, s, s, s, s)",
        "s ~ s ~ s ~ s ~ s ~ s ~ s ~ s",
        "s.replace('x', s)",
        "'x'.center(10**8)",
        "('\\t' * 3000).expandtabs(12000)",
        "s.translate({120: s})",
        "'-'.join([s, s, s, s, s, s, s, s])",
        "[[s] * 5, [s] * 5] | join",
        "('x ' * 3000) | wordwrap(1, wrapstring=s)",
        "('a.co ' * 3000) | urlize(rel=s)",
        "([1] * 3000) | tojson(indent=12000)",
    ],
    ids=[
        "format-same-field",
        "format-nested-width",
        "percent-same-key",
        "format-filter-same-key",
        "percent-many-values",
        "concat-many-sides",
        "replace-method",
        "center-method",
        "expandtabs",
        "translate",
        "join-method",
        "join-of-lists",
        "wordwrap",
        "urlize",
        "tojson-indent",
    ],
)
def test_an_operation_that_writes_one_value_many_times_is_refused_before_it_runs(source):
    # each is one operation (a format string's fields, a text's method, `~` of many sides)
    # that writes a text of 12,000 characters again and again: up to 36 million characters
    t0 = time.monotonic()
    with pytest.raises(TemplateLimitExceeded, match="MAX_TEMPLATE_OUTPUT_BYTES"):
        render(f"{{{{ ({source}) | length }}}}", {"s": "x" * 12_000})
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize(
    "source",
    [
        "10 ** 4300",
        "(10 ** 3000) * (10 ** 2000)",
        "(10 ** 4299) * 9 + (10 ** 4299)",
        "(10 ** 4299) * 9 - (0 - (10 ** 4299) * 9)",
        "[(10 ** 4299) * 9, (10 ** 4299) * 9] | sum",
        "(2 ** 14000) * (2 ** 14000)",
    ],
    ids=["power", "product", "sum", "difference", "sum-filter", "squared"],
)
def test_a_whole_number_too_long_to_write_is_refused_where_it_is_made(source):
    # Python writes at most 4,300 digits of a number as text (else ValueError): a longer one
    # could be neither shown, nor kept in a `set` step's value or the task's result
    with pytest.raises(TemplateLimitExceeded, match="more than 4300 digits"):
        evaluate(source, {})
    # (squaring a number at each round of a loop, one multiplication of numbers of millions of
    # bits ran in C for seconds, out of the clock's reach)
    t0 = time.monotonic()
    with pytest.raises(TemplateLimitExceeded, match="more than 4300 digits"):
        render(
            "{% set ns = namespace(n=3) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}"
            "{% endfor %}{{ ns.n | length }}",
            {},
        )
    assert time.monotonic() - t0 < 5


def test_a_whole_number_of_4300_digits_is_made_and_written():
    assert len(render("{{ 10 ** 4299 }}", {})) == 4300
    assert len(str(evaluate("[(10 ** 4299) * 4, (10 ** 4299) * 5] | sum", {}))) == 4300


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ '{} and {}'.format('a', 'b') }} {{ '{0}-{0}'.format('ab') }}", "a and b ab-ab"),
        ("{{ '{:>{}}'.format('x', 3) }}|{{ '%(a)s/%(a)s' % {'a': 'q'} }}", "  x|q/q"),
        ("{{ '%s-%s' % ('a', 'b') }} {{ '%d%%' % 5 }} {{ '%s' | format('z') }}", "a-b 5% z"),
        ("{{ {'a': [1, 'x']} | tojson }} {{ [1] | tojson(indent=1) }}", '{"a": [1, "x"]} [\n 1\n]'),
        ("{{ [1, 'a'] }} {{ {'a': 1} }} {{ 'x' ~ [1] ~ none }}", "[1, 'a'] {'a': 1} x[1]None"),
        ("{% set ns = namespace(a=1) %}{{ ns }}", "<Namespace {'a': 1}>"),
        (
            "{{ '-'.join('xyz') }} {{ 'a\\tb'.expandtabs(2) }} {{ 'ab'.translate({97: 'zz'}) }}",
            "x-y-z a b zzb",
        ),  # fmt: skip
        (
            "{{ 'hello world' | wordwrap(5, wrapstring='|') }} {{ 'a' | urlize(rel='r') }}",
            "hello|world a",
        ),  # fmt: skip
        ("{{ 'abc' is lower }} {{ ['x', 'Y'] | select('upper') | list }}", "True ['Y']"),
        ("{{ 'ab'.center(6, '.') }} {{ 'a,b'.replace(',', '; ') }}", "..ab.. a; b"),
    ],
)
def test_those_operations_within_the_bound_work_as_before(source, expected):
    assert render(source, {}) == expected


def test_a_long_list_read_from_a_page_is_not_refused_where_it_is_not_written_as_text():
    # 1,000 rows of 200 characters: past the bound as text, and a list the filters that pick
    # from a list, count it or sort it take as it is
    rows = [{"member": f"M{i}", "note": "n" * 200} for i in range(1000)]
    context = {"rows": rows}
    assert evaluate("rows | length", context) == 1000
    assert evaluate("rows | selectattr('member', 'equalto', 'M7') | list", context) == [rows[7]]
    assert evaluate("rows | map(attribute='member') | first", context) == "M0"
    assert evaluate("(rows | sort(attribute='member', reverse=true))[0].member", context) == "M999"
    assert evaluate("rows | rejectattr('note') | list | length", context) == 0
    assert evaluate("(rows + [{'member': 'new'}]) | last", context) == {"member": "new"}
    assert render("{% for r in rows if r.member == 'M3' %}{{ r.member }}{% endfor %}", context) == (
        "M3"
    )


@pytest.mark.parametrize(
    "kept",
    [
        "{% set ns.l = ns.l + [s ~ i] %}",
        "{% set ns.l = [ns.l, s ~ i] %}",
        "{% set ns.d = dict(ns.d, **{i | string: s ~ i}) %}",
        "{% set ns.t = ns.t + (s ~ i,) %}",
    ],
    ids=["list", "nested", "dict", "tuple"],
)
def test_values_piling_up_in_a_namespace_are_refused_past_the_bound_of_what_it_keeps(kept):
    # a namespace is what a template keeps from one round of a loop to the next: each round
    # adds a new text of 12,000 characters (65,536 rounds of 60,000 were gigabytes)
    source = (
        "{% set ns = namespace(l=[], d={}, t=()) %}{% for i in range(200) %}"
        + kept
        + "{% endfor %}{{ 'kept' }}"
    )
    with pytest.raises(TemplateLimitExceeded, match="namespace's value would hold more than"):
        render(source, {"s": "x" * 12_000})


def test_a_namespace_is_refused_a_value_past_the_bound_from_the_start():
    with pytest.raises(TemplateLimitExceeded, match="namespace's value would hold more than"):
        render("{% set ns = namespace(l=pages) %}{{ 'kept' }}", {"pages": ["x" * 600_000] * 2})


def test_a_loop_that_keeps_a_thousand_rows_works_as_before():
    # what an SOP keeps as it goes through a table: each round's size is carried, not counted
    # again through the whole list
    rows = [{"member": f"M{i}", "status": "active", "plan": "Gold PPO"} for i in range(1000)]
    source = (
        "{% set ns = namespace(l=[], d={}, last={}) %}{% for r in rows %}"
        "{% set ns.l = ns.l + [r] %}{% set ns.d = dict(ns.d, **{r.member: r.status}) %}"
        "{% set ns.last = dict(ns.last, row=r.member ~ (' ' * 2000)) %}"
        "{% endfor %}{{ ns.l | length }} {{ ns.d | length }} {{ ns.d.M999 }} {{ ns.last | length }}"
    )
    assert render(source, {"rows": rows}) == "1000 1000 active 1"


def test_a_condition_or_value_runs_under_the_same_clock_as_a_template():
    # each `wordwrap(1)` of a page's text runs for about a second inside the filter's own
    # loop; an expression can chain a hundred of them
    chain = " | ".join(["page"] + ["wordwrap(1)"] * 100)
    with pytest.raises(TemplateLimitExceeded, match="TEMPLATE_TIMEOUT_S"):
        evaluate(chain, {"page": "word " * 40_000})


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("1 / 0", "ZeroDivisionError"),
        ("'{member}'.format()", "KeyError"),
        ("'{0}'.format()", "IndexError"),
        ("'%(member)s' % {}", "KeyError"),
        ("'%(member)s' | format(other=1)", "KeyError"),
        ("rows | dictsort", "AttributeError"),
        ("3 | wordwrap", "AttributeError"),
        ("'Jane Doe' | truncate(2)", "AssertionError"),
    ],
)
def test_python_errors_in_a_template_condition_or_value_become_template_errors(expression, error):
    # (the agent fails the step, as the SOP's fault; in an outcome's notes, the status stands)
    with pytest.raises(jinja2.TemplateError, match=error):
        evaluate(expression, {"rows": [1, 2]})
    with pytest.raises(jinja2.TemplateError, match=error):
        render(f"{{{{ {expression} }}}}", {"rows": [1, 2]})


def test_a_long_value_read_from_a_page_is_read_through_an_attribute_or_an_item():
    # a table's cell may hold up to MAX_EXTRACT_CHARS; reading it is not building it
    rows = [{"note": "n" * 70_000}]
    assert evaluate("rows[0].note | length", {"rows": rows}) == 70_000
    assert render("{{ rows[0]['note'][:3] }}", {"rows": rows}) == "nnn"


def test_lists_summed_are_joined_in_one_pass_and_bounded_as_plus_is():
    # Python's sum copies the whole list at each item: 65,536 items ran for a minute in one C
    # call, which no clock can stop; joined in one pass, the same is an ordinary value
    env = BoundedSandbox(max_output_chars=100_000, max_kept_chars=1_000_000, timeout_s=60.0)
    joined = env.compile_expression("range(65536) | batch(1) | sum(start=[])")()
    assert joined == list(range(65536))
    # and a join past what a template may keep is refused, as `+` is
    small = BoundedSandbox(max_output_chars=1_000, max_kept_chars=100, timeout_s=60.0)
    with pytest.raises(TemplateLimitExceeded, match="a sum would hold more than 100"):
        small.compile_expression("range(200) | batch(1) | sum(start=[])")()
    # numbers, an attribute's lists, tuples, and a refused mix, as before
    assert evaluate("[1, 2, 3] | sum", {}) == 6
    assert evaluate("rows | sum(attribute='a', start=[])", {"rows": [{"a": [1]}, {"a": [2]}]}) == [
        1,
        2,
    ]
    assert evaluate("[(1,), (2,)] | sum(start=())", {}) == (1, 2)
    with pytest.raises(jinja2.TemplateError, match="can only add a list to a list"):
        evaluate("[[1], (2,)] | sum(start=[])", {})
