"""A creation is validated against what the type's last creation read, and its INSERT checks
that it still holds: whatever changed in between (a new SOP version, a login removed) is what
the next task is held to, and a creation caught by the check leaves no trace."""

from __future__ import annotations

from shared.sop.library import builtin_sop_text

ELIGIBILITY = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"
WITHOUT_DOB = "member_id: W100000001\npatient: Jane Doe"
BUILTIN = builtin_sop_text("check_eligibility")
# The built-in SOP with its own title and the date of birth optional.
RELAXED = BUILTIN.replace("title: Check eligibility and benefits", "title: Relaxed", 1).replace(
    "  - name: dob\n    format: date\n    required: true",
    "  - name: dob\n    format: date\n    required: false",
    1,
)


def _create(client, account, data: str = ELIGIBILITY):
    return client.post(
        "/tasks", json={"type": "check_eligibility", "data": data}, headers=account.headers
    )


def _put_sop(client, account, text: str):
    response = client.put(
        "/sops/check_eligibility",
        data=text.encode(),
        headers={**account.headers, "Content-Type": "application/yaml"},
    )
    assert response.status_code in (200, 201), response.get_json()


def _task_calls(client, account) -> int:
    entries = client.get("/audit-log", headers=account.headers).get_json()["data"]
    return sum(e["action"] == "POST /tasks" for e in entries)


def test_the_relaxed_sop_version_put_between_two_creations_accepts_what_the_old_refused(
    client, account
):
    # given a creation under the built-in SOP, which refuses a task without a date of birth
    assert _create(client, account).status_code == 200
    assert _create(client, account, WITHOUT_DOB).status_code == 422
    # when the account puts a version where the date of birth is optional
    _put_sop(client, account, RELAXED)
    # then the same request is accepted, and runs the new version
    task = _create(client, account, WITHOUT_DOB)
    assert task.status_code == 200, task.get_json()
    assert task.get_json()["title"] == "Relaxed"
    assert task.get_json()["sop"] == {**task.get_json()["sop"], "version": 1, "builtin": False}


def test_relaxed_is_the_builtin_sop_with_an_optional_date_of_birth():
    assert RELAXED.count("required: false") == BUILTIN.count("required: false") + 1


def test_a_new_version_between_two_creations_is_the_one_the_second_runs_and_nothing_is_lost(
    client, account, make_account
):
    # given a first task, numbered 1, under the built-in SOP
    first = _create(client, account).get_json()
    assert first["task_number"] == 1 and first["sop"]["builtin"] is True
    # when a version is put and the same request is sent again
    _put_sop(client, account, RELAXED)
    second = _create(client, account).get_json()
    # then it runs the new version, numbered 2: the check that caught the change used no number
    assert second["title"] == "Relaxed" and second["sop"]["version"] == 1
    assert second["task_number"] == 2
    # and each creation is in the audit log once
    assert _task_calls(client, account) == 2
    # and another account, creating the same type, still runs the built-in SOP
    other = make_account("Other clinic")
    assert _create(client, other).get_json()["sop"]["builtin"] is True


def test_a_login_removed_between_two_creations_refuses_the_second(client, account, runtime):
    # given a created task
    assert _create(client, account).status_code == 200
    # when the portal's login is removed and another task is sent
    removed = client.delete("/credentials/sandbox", headers=account.headers)
    assert removed.status_code == 204
    refused = _create(client, account)
    # then it is refused as it would be in a fresh process, and nothing is stored for it
    assert refused.status_code == 422
    assert refused.get_json()["error"]["code"] == "credentials_missing"
    with runtime.pool.connection() as conn:
        count = conn.execute(
            "SELECT count(*) AS n FROM tasks WHERE account_id = %s", (account.id,)
        ).fetchone()["n"]
    assert count == 1
    assert _task_calls(client, account) == 1
