"""The SOP language: strict validation with line numbers, inputs, summaries, built-ins."""

from __future__ import annotations

import json
import textwrap

import pytest

from shared.inputs import parse_task_data
from shared.sop.errors import SopInvalid
from shared.sop.expressions import evaluate, render
from shared.sop.library import builtin_sop, builtin_sop_text
from shared.sop.loader import load_sop
from shared.sop.model import OutcomeStatus
from shared.sop.task_types import TASK_TYPES

MINIMAL = """\
task_type: check_eligibility
title: Minimal
portal: sandbox
inputs:
  - {name: member_id, format: member_id, required: true}
steps:
  - login: {}
  - goto: /eligibility
outcomes:
  - status: completed
    notes: done
"""


def errors_of(text: str) -> list[dict]:
    with pytest.raises(SopInvalid) as exc:
        load_sop(textwrap.dedent(text))
    return exc.value.errors


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_every_builtin_sop_validates(task_type: str) -> None:
    sop = builtin_sop(task_type)
    assert sop.task_type == task_type
    assert sop.portal == "sandbox"
    assert sop.outcomes[-1].when is None
    assert load_sop(builtin_sop_text(task_type)).summary() == sop.summary()


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_builtin_sops_hold_only_their_tasks_steps(task_type: str) -> None:
    # The sandbox's sign-in, its modal, the payer choice and its error pages are its profile's
    sop = builtin_sop(task_type)
    assert sop.login() is None
    assert sop.portal_errors == ()
    text = builtin_sop_text(task_type)
    assert "Dismiss" not in text and "label: Payer" not in text


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_builtin_sops_locate_by_label_button_role_text_only(task_type: str) -> None:
    # The sandbox's alt layout renames ids and names; only human-visible locators survive it.
    for step in builtin_sop(task_type).all_steps():
        loc = getattr(step, "locator", None)
        while loc is not None:
            assert loc.kind in ("label", "button", "link", "role", "text"), step.path
            loc = loc.within


@pytest.mark.parametrize(
    "task_type", ["submit_claim", "submit_prior_authorization", "submit_appeal"]
)
def test_submissions_are_irreversible_with_a_verify_section(task_type: str) -> None:
    sop = builtin_sop(task_type)
    irreversible = [s for s in sop.all_steps() if s.irreversible]
    assert len(irreversible) == 1 and irreversible[0].kind == "click"
    assert sop.verify


def test_minimal_sop_loads() -> None:
    sop = load_sop(MINIMAL)
    assert [s.kind for s in sop.steps] == ["login", "goto"]
    assert sop.outcomes[0].status is OutcomeStatus.COMPLETED
    assert sop.steps[1].line == 8


def test_yaml_syntax_error_has_a_line() -> None:
    errors = errors_of("task_type: x\nsteps:\n  - goto: [unclosed\n")
    assert errors[0]["line"] == 4 or errors[0]["line"] == 3
    assert errors[0]["message"].startswith("YAML")


def test_every_problem_is_reported_with_line_and_path() -> None:
    # given an SOP with several mistakes
    errors = errors_of(
        """\
        task_type: check_eligibility
        title: Broken
        portal: sandbox
        inputs:
          - {name: dob, format: birthday}
        steps:
          - login: {}
          - fill: {label: Member ID}
          - click: {bogus: Search}
          - frobnicate: {}
          - wait_for: {text: "{{ unclosed"}
          - if: "a ==="
            then: []
        outcomes:
          - status: done
            notes: x
        """
    )
    # then each one names its place
    where = {(e["path"], e["line"]) for e in errors}
    assert ("inputs[0].format", 5) in where
    assert ("steps[1].fill", 8) in where  # 'value' is required
    assert ("steps[2].click.bogus", 9) in where
    assert ("steps[3]", 10) in where
    assert ("steps[4].wait_for.text", 11) in where
    assert ("steps[5].if", 12) in where
    assert any(e["path"] == "outcomes[0].status" and e["line"] == 15 for e in errors)


WITH_NUMBERS = """\
task_type: check_eligibility
title: Numbers
portal: sandbox
inputs:
  - {{name: member_id, format: member_id, required: true}}
settings:
  step_timeout_s: {settings}
  max_relogins: {relogins}
steps:
  - login: {{}}
  - wait_for: {{text: Member}}
    timeout_s: {step}
  - while: "false"
    max: {rounds}
    do:
      - goto: /eligibility
outcomes:
  - status: completed
    notes: done
"""
NUMBERS_OK = {"settings": 10, "relogins": 2, "step": 5, "rounds": 20}


@pytest.mark.parametrize(
    ("field", "value", "path", "line"),
    [
        ("settings", ".nan", "settings.step_timeout_s", 7),
        ("settings", ".inf", "settings.step_timeout_s", 7),
        ("settings", "3601", "settings.step_timeout_s", 7),
        ("step", ".NaN", "steps[1].timeout_s", 12),
        ("step", "-.inf", "steps[1].timeout_s", 12),
        ("step", "86400.0", "steps[1].timeout_s", 12),
        ("relogins", "11", "settings.max_relogins", 8),
        ("relogins", "1000000000", "settings.max_relogins", 8),
        ("rounds", "10001", "steps[2].max", 14),
        ("rounds", "0", "steps[2].max", 14),
    ],
)
def test_a_wait_or_a_count_that_is_not_finite_or_past_its_limit_is_refused_with_its_line(
    field: str, value: str, path: str, line: int
) -> None:
    # given an SOP with one number YAML reads as not a number, as endless, or past its limit
    errors = errors_of(WITH_NUMBERS.format(**{**NUMBERS_OK, field: value}))
    # then storing it names the place and the limit
    assert [(e["path"], e["line"]) for e in errors] == [(path, line)]
    assert "at most" in errors[0]["message"] or " to " in errors[0]["message"]


def test_a_wait_or_a_count_at_its_limit_is_stored() -> None:
    sop = load_sop(WITH_NUMBERS.format(settings=3600, relogins=10, step=0.5, rounds=10000))
    assert sop.settings.step_timeout_s == 3600.0
    assert sop.settings.max_relogins == 10
    assert sop.steps[1].timeout_s == 0.5
    assert sop.steps[2].max_rounds == 10000


def test_default_outcome_must_be_last() -> None:
    errors = errors_of(MINIMAL + "  - when: x\n    status: failed\n    notes: y\n")
    messages = " ".join(e["message"] for e in errors)
    assert "must be the last" in messages and "default outcome" in messages


def test_missing_top_level_keys() -> None:
    errors = errors_of("task_type: x\n")
    assert {e["path"] for e in errors} >= {"title", "portal", "steps", "outcomes"}


def test_unknown_top_level_key_and_duplicate_key() -> None:
    assert errors_of(MINIMAL + "colour: blue\n")[0]["path"] == "colour"
    dup = errors_of(MINIMAL.replace("title: Minimal\n", "title: Minimal\ntitle: Again\n"))
    assert dup[0]["line"] == 3 and "duplicate" in dup[0]["message"]


def test_irreversible_step_needs_verify() -> None:
    text = MINIMAL.replace(
        "  - goto: /eligibility\n", "  - click: {button: Submit}\n    irreversible: true\n"
    )
    errors = errors_of(text)
    assert errors[0]["path"] == "steps[1].click" and "verify" in errors[0]["message"]


def test_locator_options_are_checked() -> None:
    errors = errors_of(
        MINIMAL.replace(
            "  - goto: /eligibility\n",
            "  - click: {label: A, button: B}\n"
            "  - click: {button: B, name: x, nth: 0}\n"
            "  - click: {role: dialog, within: {}}\n",
        )
    )
    messages = {e["path"]: e["message"] for e in errors}
    assert "exactly one locator" in messages["steps[1].click"]
    assert "role" in messages["steps[2].click.name"]
    assert "1 or more" in messages["steps[2].click.nth"]
    assert "steps[3].click.within" in messages


def test_yes_no_are_not_silently_booleans() -> None:
    errors = errors_of(MINIMAL.replace("goto: /eligibility", "fill: {label: Smoker, value: no}"))
    assert errors[0]["path"] == "steps[1].fill.value" and "quote" in errors[0]["message"]


def test_yaml_anchors_and_merge_keys_work() -> None:
    text = MINIMAL.replace(
        "  - goto: /eligibility\n",
        "  - &w\n    wait_for: {text: A}\n    timeout_s: 3\n  - <<: *w\n    wait_for: {text: B}\n",
    )
    sop = load_sop(text)
    assert sop.steps[2].condition["text"] == "B" and sop.steps[2].timeout_s == 3


def test_validate_inputs_normalises_and_reports_every_field() -> None:
    sop = builtin_sop("submit_claim")
    good, errors = sop.validate_inputs(
        parse_task_data(
            "Member ID: w100000001\nPatient: DOE, JANE\nDOB: January 15, 1990\n"
            "NPI: 1234567893\nline 1: 99213, j069, $125, 3/20/2025"
        )
    )
    assert errors == []
    assert good["member_id"] == "W100000001" and good["dob"] == "1990-01-15"
    assert (good["patient"].first, good["patient"].last) == ("Jane", "Doe")
    assert good["service_lines"] == [
        {"cpt": "99213", "icd10": "J06.9", "charge": "125.00", "service_date": "2025-03-20"}
    ]

    _, errors = sop.validate_inputs(parse_task_data("patient: Jane\nnpi: 1234567890"))
    fields = {e["field"]: e["message"] for e in errors}
    assert set(fields) == {"member_id", "patient", "dob", "provider_npi", "service_lines"}
    assert "required" in fields["member_id"] and "check digit" in fields["provider_npi"]


def test_flat_fields_make_one_service_line() -> None:
    good, errors = builtin_sop("submit_claim").validate_inputs(
        parse_task_data(
            "member_id: W1\npatient: Jane Doe\ndob: 1990-01-15\nnpi: 1234567893\n"
            "cpt: 99213\nicd10: J06.9\ncharge: 125\nservice_date: 2025-03-20"
        )
    )
    assert errors == [] and len(good["service_lines"]) == 1


def test_require_one_of() -> None:
    sop = builtin_sop("check_claim_status")
    assert sop.validate_inputs({"member_id": "W1"})[1] == []
    assert sop.validate_inputs({"claim_number": "CLM-1"})[1] == []
    errors = sop.validate_inputs({})[1]
    assert errors == [
        {
            "field": "claim_number or member_id",
            "message": "give at least one of: claim_number or member_id",
        }
    ]


def test_summary_is_numbered_and_mentions_irreversible_and_verify() -> None:
    summary = builtin_sop("submit_claim").summary()
    # signing in and choosing the payer are the sandbox profile's, not the SOP's
    assert '1. Click link "Claims"' in summary and "Sign in" not in summary
    assert '14.2. Fill field "Service Date {{ loop.index }}"' in summary
    assert "[irreversible]" in summary and "V1." in summary
    assert "Outcome:" in summary and "- otherwise: completed_with_issues" in summary


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("//example.test/x", "names a host"),
        ("  //x", "names a host"),
        ("\\\\example.test\\x", "backslash"),
        ("/\\example.test/x", "backslash"),
        ("http:/\\127.0.0.1:8210/healthz", "backslash"),
        ("http:/example.test/x", "write a full URL as http://host/path"),
        ("HTTPS:example.test", "write a full URL as https://host/path"),
    ],
)
def test_a_goto_that_names_a_host_without_a_scheme_is_refused_with_its_line(
    url: str, said: str
) -> None:
    # a browser reads each as another host ("/\\host" and "http:/host" as "//host"), where
    # the agent would open the portal's own path
    text = MINIMAL.replace("goto: /eligibility", f"goto: {json.dumps(url)}")
    [error] = errors_of(text)
    assert (error["line"], error["path"]) == (8, "steps[1].goto")
    assert said in error["message"]
    assert load_sop(MINIMAL.replace("goto: /eligibility", 'goto: "/x//y"')).steps


def test_an_else_branch_is_numbered_in_the_summary_as_in_the_trajectory() -> None:
    text = MINIMAL.replace(
        "  - goto: /eligibility\n",
        '  - if: "1 == 1"\n    then: [{goto: /a}]\n    else: [{goto: /b}, {goto: /c}]\n',
    )
    summary = load_sop(text).summary()
    assert "2.1. Go to /a" in summary and "2.else.2. Go to /c" in summary


def test_a_name_no_input_or_step_gives_is_a_warning_with_its_line_and_the_likely_name() -> None:
    text = MINIMAL.replace(
        "  - goto: /eligibility\n",
        "  - goto: /eligibility\n"
        "  - fill: {label: Member ID, value: '{{ memberid }}'}\n"
        '  - if: "memberid and plan"\n    then: [{goto: /a}]\n',
    )
    sop = load_sop(text)  # valid: a task's undeclared data fields reach templates too
    assert [(w["line"], w["path"]) for w in sop.warnings] == [
        (9, "steps[2].fill.value"),
        (10, "steps[3].if"),
    ]
    first, second = (w["message"] for w in sop.warnings)
    assert first.startswith("'memberid' is no input") and "did you mean 'member_id'?" in first
    assert "read in 2 places" in first
    assert second.startswith("'plan' is no input") and "did you mean" not in second


def test_names_steps_set_and_the_agent_gives_are_no_warning() -> None:
    text = MINIMAL.replace(
        "  - goto: /eligibility\n",
        "  - goto: /eligibility\n"
        "  - extract: {into: plan, text: {css: '#plan'}}\n"
        "  - wait_for: {text: Done, into: shown}\n"
        '  - set: {total: "plan ~ shown ~ today()"}\n'
        '  - for_each: "files"\n'
        "    as: file\n"
        "    do: [{fill: {label: '{{ loop.index }}', value: '{{ file.name }} {{ total }}'}}]\n"
        '  - for_each: "[1, 2]"\n'
        '    do: [{fill: {label: X, value: "{% set n = item %}{{ n }} {{ member_id }}"}}]\n'
        "  - end_if: {text: Denied, status: failed, notes: '{{ seen }}'}\n",
    )
    # 'item' is for_each's name for its item when no `as` is given
    assert load_sop(text).warnings == ()


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_the_builtin_sops_read_no_unknown_name(task_type: str) -> None:
    assert builtin_sop(task_type).warnings == ()


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://a:99999", "Port out of range"),
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://a b", "invalid character"),
        ("https://a.test\\@b.test", "backslash"),
    ],
)
def test_a_pinned_address_that_is_no_usable_url_is_refused_with_its_line(
    url: str, said: str
) -> None:
    text = MINIMAL.replace(
        "portal: sandbox", f"portal: {{name: acme, base_url: {json.dumps(url)}}}"
    )
    [error] = errors_of(text)
    assert (error["line"], error["path"]) == (3, "portal.base_url") and said in error["message"]


def test_templates_are_sandboxed() -> None:
    assert render("{{ dob | us_date }}", {"dob": "1990-01-15"}) == "01/15/1990"
    assert evaluate("x | money == '1200.50'", {"x": "$1,200.5"}) is True
    with pytest.raises(Exception, match="unsafe|not safely"):
        render("{{ ''.__class__.__mro__ }}", {})


def test_a_template_that_changes_a_list_in_place_or_makes_bytes_is_refused_with_its_line() -> None:
    # the sandbox refuses `append` as the task runs; the SOP is refused when it is stored
    errors = errors_of(
        """\
        task_type: check_eligibility
        title: Appends
        portal: sandbox
        steps:
          - set: {seen: "[]"}
          - set: {added: "seen.append(1)"}
          - fill: {label: Note, value: "{{ seen.extend(seen) or '' }}"}
          - fill: {label: Note, value: "{{ (seen + [1]) | length }}"}
          - fill: {label: Note, value: "{{ 'x'.encode() }}"}
        outcomes:
          - status: completed
            notes: done
        """
    )
    where = {(e["path"], e["line"]): e["message"] for e in errors}
    assert set(where) == {
        ("steps[1].set.added", 6),
        ("steps[2].fill.value", 7),
        ("steps[4].fill.value", 9),
    }
    assert ".encode() would make bytes" in where[("steps[4].fill.value", 9)]
    assert ".append() would change a list, dict or set in place" in where[("steps[1].set.added", 6)]
    assert "build a new value instead" in where[("steps[2].fill.value", 7)]
