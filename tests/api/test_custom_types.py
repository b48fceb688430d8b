"""Custom task types: an account defines one by uploading an SOP for a new snake_case name."""

from __future__ import annotations

from shared.sop.task_types import TASK_TYPES

# A type of the account's own: sign in and read the member's plan on the eligibility page.
CHECK_MEMBER_PLAN = """
task_type: check_member_plan
title: Read a member's plan
portal: {name: sandbox}
inputs:
  - {name: member_id, format: member_id, required: true}
  - {name: patient, format: name, required: true}
  - {name: dob, format: date, required: true}
steps:
  - login: {url: /dashboard}
  - click: {link: Eligibility & Benefits}
outcomes: [{status: completed, notes: "ok"}]
"""
DATA = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


def _put(client, account, text: str = CHECK_MEMBER_PLAN, task_type: str = "check_member_plan"):
    return client.put(f"/sops/{task_type}", json={"sop": text}, headers=account.headers)


def _task(client, account, task_type: str = "check_member_plan", data: str = DATA):
    return client.post("/tasks", json={"type": task_type, "data": data}, headers=account.headers)


def _types(client, account) -> dict[str, dict]:
    response = client.get("/task-types", headers=account.headers)
    assert response.status_code == 200
    return {entry["name"]: entry for entry in response.get_json()["data"]}


def test_task_types_lists_the_builtin_ones_with_their_inputs(client, account):
    types = _types(client, account)
    assert list(types) == list(TASK_TYPES)
    eligibility = types["check_eligibility"]
    assert eligibility["builtin"] is True and eligibility["portal"] == "sandbox"
    member_id = next(i for i in eligibility["inputs"] if i["name"] == "member_id")
    assert member_id["required"] is True and member_id["format"] == "member_id"
    # each input's aliases are other keys, each named once
    for task_type in types.values():
        for spec in task_type["inputs"]:
            aliases = spec["aliases"]
            assert spec["name"] not in aliases and len(set(aliases)) == len(aliases), spec


def test_an_sop_for_a_new_name_defines_a_type_of_the_account(client, account):
    validated = client.post(
        "/sops/validate", json={"sop": CHECK_MEMBER_PLAN}, headers=account.headers
    )
    assert validated.status_code == 200 and validated.get_json()["task_type"] == "check_member_plan"
    response = _put(client, account)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["task_type"] == "check_member_plan"
    assert response.get_json()["builtin"] is False and response.get_json()["version"] == 1
    types = _types(client, account)
    assert types["check_member_plan"]["builtin"] is False
    assert types["check_member_plan"]["title"] == "Read a member's plan"
    assert [
        (i["name"], i["required"], i["format"]) for i in types["check_member_plan"]["inputs"]
    ] == [
        ("member_id", True, "member_id"),
        ("patient", True, "name"),
        ("dob", True, "date"),
    ]
    listed = client.get("/sops", headers=account.headers).get_json()["data"]
    assert "check_member_plan" in [entry["task_type"] for entry in listed]
    read = client.get("/sops/check_member_plan", headers=account.headers)
    assert read.status_code == 200 and read.get_json()["body"] == CHECK_MEMBER_PLAN


def test_its_inputs_are_checked_at_post_tasks(client, account):
    _put(client, account)
    missing = _task(client, account, data="patient: Jane Doe\nDOB: the day after")
    assert missing.status_code == 422
    assert {p["field"] for p in missing.get_json()["error"]["details"]} == {"member_id", "dob"}
    created = _task(client, account)
    assert created.status_code == 200, created.get_json()
    task = client.get(f"/tasks/{created.get_json()['id']}", headers=account.headers).get_json()
    assert task["type"] == "check_member_plan" and task["title"] == "Read a member's plan"
    assert task["status"] in {"pending", "dispatching"}


def test_another_account_cannot_use_it(client, account, make_account):
    _put(client, account)
    other = make_account("Other Clinic")
    refused = _task(client, other)
    assert refused.status_code == 422
    error = refused.get_json()["error"]
    assert (
        error["code"] == "validation_failed"
        and error["details"][0]["field"] == "type"
        and "Unknown task type" in error["details"][0]["message"]
    )
    assert "check_member_plan" not in error["details"][0]["message"]
    assert "check_member_plan" not in _types(client, other)
    assert client.get("/sops/check_member_plan", headers=other.headers).status_code == 404
    assert client.delete("/sops/check_member_plan", headers=other.headers).status_code == 404
    assert _task(client, account).status_code == 200  # still the owner's


def test_delete_removes_the_type_and_keeps_its_history(client, account, runtime):
    _put(client, account)
    task_id = _task(client, account).get_json()["id"]
    removed = client.delete("/sops/check_member_plan", headers=account.headers)
    assert removed.status_code == 200
    assert removed.get_json() == {"task_type": "check_member_plan", "removed": True}
    assert "check_member_plan" not in _types(client, account)
    assert _task(client, account).status_code == 422
    assert client.get("/sops/check_member_plan", headers=account.headers).status_code == 404
    # The task that ran it, and the version it points at, stay.
    assert client.get(f"/tasks/{task_id}", headers=account.headers).status_code == 200
    listed = client.get("/tasks?type=check_member_plan", headers=account.headers)
    assert [t["id"] for t in listed.get_json()["data"]] == [task_id]
    with runtime.pool.connection() as conn:
        kept = conn.execute(
            "SELECT count(*) AS n FROM sops WHERE account_id = %s AND task_type = %s",
            (account.id, "check_member_plan"),
        ).fetchone()["n"]
    assert kept == 1
    # Defined again, its history goes on.
    again = _put(client, account, CHECK_MEMBER_PLAN.replace("Read a member's", "Read the"))
    assert again.status_code == 201 and again.get_json()["version"] == 2


def test_a_type_name_must_be_short_snake_case_and_match_the_document(client, account):
    for name in ("Check-Plan", "CheckPlan", "x" * 65, "9lives"):
        text = CHECK_MEMBER_PLAN.replace("check_member_plan", name)
        response = _put(client, account, text, task_type=name)
        assert response.status_code == 422, (name, response.get_json())
        validated = client.post("/sops/validate", json={"sop": text}, headers=account.headers)
        assert validated.status_code == 422
        [problem] = validated.get_json()["error"]["details"]
        assert problem["path"] == "task_type" and problem["line"] == 2
    mismatch = _put(client, account, task_type="check_other_plan")
    assert mismatch.status_code == 422
    assert "check_other_plan" in mismatch.get_json()["error"]["details"][0]["message"]
    assert "check_other_plan" not in _types(client, account)
    # Names no type can have are answered (a NUL is refused before any route), never a 500.
    for path in ("/sops/%00", "/sops/a%00b", "/sops/%C2%B2", "/sops/" + "y" * 65):
        assert client.get(path, headers=account.headers).status_code in (400, 404)
        assert client.delete(path, headers=account.headers).status_code in (400, 404)
        put = client.put(path, json={"sop": CHECK_MEMBER_PLAN}, headers=account.headers)
        assert put.status_code in (400, 422)
    # A built-in type's SOP stays an override of the built-in type, not a new type.
    assert _put(client, account, task_type="check_eligibility").status_code == 422
