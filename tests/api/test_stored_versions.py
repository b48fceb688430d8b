"""A stored version (an SOP, a portal profile) that a later, stricter release refuses: it stays
readable with its problems stated, a task on it is refused with a 422 that says what to do, and
nothing answers 500.

Such a version is written here with SQL, as an earlier release would have stored it.
"""

from __future__ import annotations

import hashlib

from shared.sop.library import builtin_sop_text
from shared.sop.profile import builtin_profile_text
from tests.api.test_console import make_user, sign_in

DATA = "member_id: W100000001\npatient: Jane Doe\ndob: 1990-01-15"

# The built-in SOP with a step of a kind this release does not know (a release may drop one).
REFUSED_SOP = builtin_sop_text("check_eligibility").replace(
    "steps:\n", "steps:\n  - hover: {button: Search}\n", 1
)
# The sandbox's built-in profile with a value of the wrong type.
REFUSED_PROFILE = builtin_profile_text("sandbox").replace(
    "portal: sandbox\n", "portal: sandbox\nmax_sessions: many\n", 1
)


def store_as_an_earlier_release(runtime, account_id: int, table: str, name: str, text: str):
    """Write ``text`` as the account's next version of an SOP (``table`` sops, ``name`` a task
    type) or a profile (portal_profiles, a portal), past every check of this release."""
    column = "task_type" if table == "sops" else "portal"
    with runtime.pool.connection() as conn:
        conn.execute(
            f"INSERT INTO {table} (account_id, {column}, version, body, digest)"
            f" SELECT %(a)s, %(n)s, COALESCE(MAX(version), 0) + 1, %(b)s, %(d)s FROM {table}"
            f" WHERE account_id = %(a)s AND {column} = %(n)s",
            {"a": account_id, "n": name, "b": text, "d": hashlib.sha256(text.encode()).hexdigest()},
        )


def _count(runtime, table: str) -> int:
    with runtime.pool.connection() as conn:
        return conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]


def test_a_stored_sop_version_the_current_rules_refuse_reads_with_its_problems(
    runtime, client, account
):
    # given a task created on the account's version 1, then that version as an earlier release
    # stored it (a step of a kind this release refuses), and a version 2 stored the same way
    assert client.put(
        "/sops/check_eligibility", json={"sop": builtin_sop_text("check_eligibility")},
        headers=account.headers,
    ).status_code == 201  # fmt: skip
    task = client.post(
        "/tasks", json={"type": "check_eligibility", "data": DATA}, headers=account.headers
    ).get_json()
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE sops SET body = %s, digest = 'earlier-' || digest WHERE account_id = %s",
            (REFUSED_SOP, account.id),
        )
    store_as_an_earlier_release(runtime, account.id, "sops", "check_eligibility", REFUSED_SOP)

    # when the SOP, its versions, the list and the task's SOP are read
    answers = {
        path: client.get(path, headers=account.headers)
        for path in (
            "/sops/check_eligibility",
            "/sops/check_eligibility/versions/1",
            "/sops/check_eligibility/versions/2",
            f"/tasks/{task['id']}/sop",
            "/sops",
            "/task-types",
        )
    }

    # then each is a 200 with the stored text and what this release refuses in it
    assert {p: a.status_code for p, a in answers.items()} == dict.fromkeys(answers, 200)
    for path in list(answers)[:4]:
        sop = answers[path].get_json()
        assert sop["body"] == REFUSED_SOP, path
        [problem] = sop["problems"]
        assert "a step needs exactly one action" in problem["message"], (path, problem)
        assert problem["line"] == REFUSED_SOP.splitlines().index("steps:") + 2
    assert answers["/sops/check_eligibility"].get_json()["version"] == 2
    listed = {s["task_type"]: s for s in answers["/sops"].get_json()["data"]}
    assert listed["check_eligibility"]["problems"] and not listed["submit_claim"]["problems"]
    types = {t["name"]: t for t in answers["/task-types"].get_json()["data"]}
    assert types["check_eligibility"]["problems"] and not types["submit_claim"]["problems"]


def test_a_task_on_a_refused_sop_version_is_a_422_that_says_to_store_a_new_version(
    runtime, client, account
):
    # given a task created on the built-in SOP (this process now validates against it), then
    # the account's version 1 as an earlier release stored it
    first = client.post(
        "/tasks", json={"type": "check_eligibility", "data": DATA}, headers=account.headers
    )
    assert first.status_code == 200, first.get_json()
    store_as_an_earlier_release(runtime, account.id, "sops", "check_eligibility", REFUSED_SOP)
    tasks = _count(runtime, "tasks")

    # when a task of the type is created, alone, in a batch and as a retry of a canceled one
    canceled = client.post(f"/tasks/{first.get_json()['id']}/cancel", headers=account.headers)
    assert canceled.status_code == 200, canceled.get_json()
    alone = client.post(
        "/tasks", json={"type": "check_eligibility", "data": DATA}, headers=account.headers
    )
    batch = client.post(
        "/tasks/batch",
        json={"tasks": [{"type": "submit_claim", "data": {}},
                        {"type": "check_eligibility", "data": DATA}]},
        headers=account.headers,
    )  # fmt: skip
    retry = client.post(f"/tasks/{first.get_json()['id']}/retry", headers=account.headers)

    # then each is a 422 naming the type, the version and the problem, and nothing is stored
    assert alone.status_code == 422, alone.get_json()
    error = alone.get_json()["error"]
    assert error["code"] == "sop_refused"
    for text in ("check_eligibility", "version 1", "a step needs exactly one action",
                 "PUT /sops/check_eligibility"):  # fmt: skip
        assert text in error["message"], error
    [detail] = error["details"]
    assert detail["field"] == "type" and detail["version"] == 1
    assert batch.status_code == 422, batch.get_json()
    refused = [p for p in batch.get_json()["error"]["details"] if p["task"] == 1]
    assert [p["code"] for p in refused] == ["sop_refused"]
    assert "version 1" in refused[0]["message"]
    assert retry.status_code == 422, retry.get_json()
    assert retry.get_json()["error"]["code"] == "sop_refused"
    assert _count(runtime, "tasks") == tasks


def test_a_refused_profile_version_reads_with_its_problems(runtime, client, account):
    # given the account's sandbox profile as an earlier release stored it
    store_as_an_earlier_release(runtime, account.id, "portal_profiles", "sandbox", REFUSED_PROFILE)

    # when the profile and its version are read
    active = client.get("/portals/sandbox/profile", headers=account.headers)
    version = client.get("/portals/sandbox/profile/versions/1", headers=account.headers)

    # then both are a 200 with the stored text and the problem
    for answer in (active, version):
        assert answer.status_code == 200, answer.get_json()
        profile = answer.get_json()
        assert profile["body"] == REFUSED_PROFILE and profile["version"] == 1
        [problem] = profile["problems"]
        assert problem["path"] == "max_sessions", problem


def test_the_console_shows_refused_versions_with_their_problems(runtime, app, account):
    # given an SOP and a profile version as an earlier release stored them
    store_as_an_earlier_release(runtime, account.id, "sops", "check_eligibility", REFUSED_SOP)
    store_as_an_earlier_release(runtime, account.id, "portal_profiles", "sandbox", REFUSED_PROFILE)
    make_user(runtime, account.id, "a@c.test", "admin")
    browser = app.test_client()
    sign_in(browser, "a@c.test")

    # when an admin opens the pages that show them
    pages = {
        path: browser.get(path)
        for path in (
            "/console/sops",
            "/console/sops/check_eligibility",
            "/console/sops/check_eligibility/versions/1",
            "/console/sops/check_eligibility/edit",
            "/console/portals/sandbox/profile",
            "/console/portals/sandbox/profile/edit",
            "/console/settings",
        )
    }

    # then each is shown, the active versions with what this release refuses in them
    assert {p: a.status_code for p, a in pages.items()} == dict.fromkeys(pages, 200)
    assert "hover" in pages["/console/sops/check_eligibility/edit"].text
    for path in ("/console/sops/check_eligibility", "/console/sops/check_eligibility/versions/1",
                 "/console/sops/check_eligibility/edit"):  # fmt: skip
        assert "a step needs exactly one action" in pages[path].text, path
    assert "max_sessions" in pages["/console/portals/sandbox/profile"].text
    assert "max_sessions: many" in pages["/console/portals/sandbox/profile/edit"].text
