"""An SOP's regular expressions run on RE2: one it cannot run is refused where it is written,
and one built from a task's data that does not compile leaves the instructions as written."""

from __future__ import annotations

# A type of the account's own whose instructions test a text input against a pattern, with an
# extract pattern, a portal error pattern and an outcome condition for the 422s below.
SOP = """\
task_type: read_note
title: Read a note
description: "Is it short? {{ note is matching('^.{0,5}$') }}"
portal: {name: sandbox}
inputs:
  - {name: note, format: text, required: true}
portal_errors:
  - {text: "error code [0-9]+", regex: true}
steps:
  - login: {url: /dashboard}
  - extract: {into: plan, text: {label: Plan}, pattern: "Plan: (.*)"}
outcomes:
  - {when: "plan is matching('(?i)gold')", status: completed, notes: "gold"}
  - {status: completed, notes: "{{ plan }}"}
"""


def _put(client, account, text: str):
    return client.put("/sops/read_note", json={"sop": text}, headers=account.headers)


def _sops(runtime) -> int:
    with runtime.pool.connection() as conn:
        return conn.execute("SELECT count(*) AS n FROM sops").fetchone()["n"]


def test_patterns_re2_cannot_run_are_422_naming_each_line(client, account, runtime):
    # given the SOP with a lookbehind, a backreference and a lookahead in its three patterns
    text = (
        SOP.replace('"error code [0-9]+"', '"(?<=error) code"')
        .replace('"Plan: (.*)"', '"(Plan): (.*) \\\\1"')
        .replace("'(?i)gold'", "'(?i)gold(?! plus)'")
    )
    before = _sops(runtime)

    # when it is stored, or validated
    for response in (
        _put(client, account, text),
        client.post("/sops/validate", json={"sop": text}, headers=account.headers),
    ):
        # then each is named by its line, with why: RE2's syntax
        assert response.status_code == 422, response.get_json()
        details = response.get_json()["error"]["details"]
        found = {d["line"]: d["message"] for d in details}
        assert set(found) == {8, 11, 13}, details
        assert all("RE2 syntax: no lookaround and no backreferences" in m for m in found.values())
        assert "matching: bad regular expression" in found[13]
    # and nothing was stored
    assert _sops(runtime) == before

    # while the same SOP with patterns RE2 runs is accepted
    assert _put(client, account, SOP).status_code == 201


def test_a_pattern_from_the_tasks_data_that_does_not_compile_is_left_as_written(client, account):
    # given instructions that test the note against a pattern the note itself gives
    text = SOP.replace("note is matching('^.{0,5}$')", "'x' is matching(note)")
    assert _put(client, account, text).status_code == 201

    # when a client sends a note that is no regular expression
    response = client.post(
        "/tasks", json={"type": "read_note", "data": {"note": "(unclosed"}},
        headers=account.headers,
    )  # fmt: skip

    # then the task is created, with that part of its instructions as written (it was a 500)
    assert response.status_code == 200, response.get_json()
    assert "Is it short? {{ 'x' is matching(note) }}" in response.get_json()["instructions"]
