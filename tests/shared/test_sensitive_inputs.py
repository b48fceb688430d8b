"""Sensitive SOP inputs: declared, kept out of templates, masked in the stored task data."""

from __future__ import annotations

import json
import textwrap

import pytest

from shared.inputs import mask_task_data, parse_task_data
from shared.sop.errors import SopInvalid
from shared.sop.loader import load_sop
from shared.tasks import stored_data

SOP = """\
task_type: submit_appeal
title: Create a portal user
portal: sandbox
inputs:
  - name: new_username
    required: true
  - name: new_user_password
    required: true
    sensitive: true
    aliases: [initial_password]
steps:
  - login: {}
  - fill: {label: New Password, secret: new_user_password}
outcomes:
  - status: completed
    notes: done
"""


def _errors(text: str) -> list[dict]:
    with pytest.raises(SopInvalid) as exc:
        load_sop(textwrap.dedent(text))
    return exc.value.errors


def test_a_sensitive_input_is_declared_and_typed_with_fill_secret():
    sop = load_sop(SOP)
    [spec] = [i for i in sop.inputs if i.sensitive]
    assert spec.name == "new_user_password"
    assert sop.sensitive_keys() == {"new_user_password", "initial_password"}
    assert "new_user_password (text, required, sensitive)" in sop.summary()
    assert "Type the sensitive input `new_user_password` into field" in sop.summary()


@pytest.mark.parametrize(
    ("line", "where"),
    [
        ('  - fill: {label: Name, value: "{{ new_user_password | reverse }}"}', "steps[2]"),
        ("  - set: {x: \"initial_password ~ '!'\"}", "steps[2]"),
        ("  - if: new_user_password == 'x'\n    then: [{click: {button: A}}]", "steps[2]"),
        ('  - goto: "/users?q={{ new_user_password }}"', "steps[2]"),
        ('  - click: {button: "{{ new_user_password }}"}', "steps[2]"),
    ],
)
def test_a_template_or_condition_naming_a_sensitive_input_is_refused_with_its_line(line, where):
    text = SOP.replace("outcomes:", f"{line}\noutcomes:")
    errors = _errors(text)
    [error] = [e for e in errors if "sensitive input" in e["message"]]
    assert error["path"].startswith(where)
    assert error["line"] == text.splitlines().index(line.splitlines()[0]) + 1
    assert "fill: {label: ..., secret: new_user_password}" in error["message"]


def test_notes_naming_a_sensitive_input_are_refused():
    errors = _errors(
        SOP.replace("notes: done", "notes: '{% for c in new_user_password %}{% endfor %}'")
    )
    assert any(e["path"] == "outcomes[0].notes" and "sensitive" in e["message"] for e in errors)


def test_fill_secret_must_name_a_declared_sensitive_input():
    errors = _errors(SOP.replace("secret: new_user_password", "secret: new_username"))
    assert {"line": 13, "path": "steps[1].fill.secret"}.items() <= errors[0].items()
    assert "not a declared sensitive input" in errors[0]["message"]
    both = _errors(SOP.replace("secret: new_user_password", "secret: new_user_password, value: x"))
    assert "give 'value' (text) or 'secret'" in both[0]["message"]


def test_sensitive_inputs_are_split_from_the_template_inputs():
    sop = load_sop(SOP)
    data = parse_task_data("new_username: jdoe\nInitial Password: s3cret-pw\nnote: s3cret-pw!")
    values, errors = sop.validate_inputs(data)
    assert errors == []
    plain, secret = sop.split_inputs(values)
    # the alias is not passed through to templates as an undeclared field, nor the value elsewhere
    assert plain == {"new_username": "jdoe", "note": "***!"}
    assert secret == {"new_user_password": "s3cret-pw"}


def test_a_malformed_sensitive_input_is_not_echoed_in_the_error():
    sop = load_sop(SOP.replace("    sensitive: true", "    sensitive: true\n    format: npi"))
    _values, errors = sop.validate_inputs({"new_username": "a", "new_user_password": "hunter2"})
    assert errors == [
        {"field": "new_user_password", "message": "new_user_password is not a valid npi"}
    ]


def test_text_data_keeps_its_wording_with_the_value_masked():
    text = (
        "new_username: jdoe\r\nInitial-Password: s3cret pw\n  more of it\nnote: s3cret pw again\n"
    )
    stored = stored_data(text, {"initial_password"}, ["s3cret pw"])
    assert stored == "new_username: jdoe\r\nInitial-Password: ***\nnote: *** again\n"


def test_json_data_keeps_its_keys_with_the_value_masked():
    raw = {"New Username": "jdoe", "initial_password": "pw-1", "other": None}
    assert json.loads(mask_task_data(raw, {"initial_password"})) == {
        "New Username": "jdoe",
        "initial_password": "***",
        "other": None,
    }
    as_text = '{"initial_password": "pw-1"}'
    assert json.loads(mask_task_data(as_text, {"initial_password"})) == {"initial_password": "***"}
    assert mask_task_data("a: b", set()) == "a: b"


@pytest.mark.parametrize(
    ("locator", "kind"),
    [
        ("{css: \"input[value^='s']\"}", "css"),
        ("{css: 'input[v\\\\61lue^=s]'}", "css"),
        ("{xpath: \"//input[@*[starts-with(., 's')]]\"}", "xpath"),
        ("{xpath: '//input[@VALUE]'}", "xpath"),
    ],
)
def test_a_selector_that_tests_what_a_field_holds_is_refused_with_its_line(locator, kind):
    text = SOP.replace("outcomes:", f"  - extract: {{into: hit, exists: {locator}}}\noutcomes:")
    errors = _errors(text)
    assert errors[0]["path"] == f"steps[2].extract.exists.{kind}"
    assert errors[0]["line"] == 14
    assert "may not test what a field holds" in errors[0]["message"]


def test_a_step_name_naming_a_sensitive_input_is_refused():
    text = SOP.replace(
        "  - fill: {label", "  - name: 'Type {{ new_user_password }}'\n    fill: {label"
    )
    [error] = _errors(text)
    assert error["path"] == "steps[1].name" and "sensitive input" in error["message"]
