"""An account keeps at most MAX_SOP_VERSIONS versions of each type's SOP and of each portal's
profile: storing one more drops the oldest that nothing needs, never the active one nor one a
kept task names; when every older one is named, the save is a 409 ``limit_exceeded`` and
nothing is stored. Against the real database, through the API and the console."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from shared import retention
from shared import tasks as task_queries
from shared.sop import store as sop_store
from shared.sop.library import builtin_sop_text
from shared.sop.profile import builtin_profile_text
from shared.tasks import TaskStatus
from shared.trajectories import record_step
from tests.api.test_console import form_token, make_user, sign_in
from tests.api.test_portal_profiles_api import ACME
from tests.api.test_quotas import limited

BUILTIN = builtin_sop_text("check_eligibility")
SANDBOX = builtin_profile_text("sandbox")
ELIGIBILITY = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"
YAML = {"Content-Type": "application/yaml"}
SOPS = "/sops/check_eligibility"
PROFILE = "/portals/acme/profile"


def _sop(n: int) -> str:
    return BUILTIN.replace("title: Check eligibility and benefits", f"title: Version {n}")


def _profile(n: int) -> str:
    return ACME.replace("title: Acme Health provider portal", f"title: Acme {n}")


def _sandbox(n: int) -> str:
    return re.sub(r"(?m)^title: (.*)$", rf"title: \1 {n}", SANDBOX, count=1)


def _put(client, account, url: str, text: str):
    return client.put(url, data=text.encode(), headers={**account.headers, **YAML})


def _listed(client, account, url: str) -> list[int]:
    response = client.get(f"{url}/versions", headers=account.headers)
    assert response.status_code == 200, response.json
    return [entry["version"] for entry in response.json["data"]]


def _rows(runtime, table: str) -> int:
    with runtime.pool.connection() as conn:
        sql = f"SELECT count(*) AS n FROM {table} WHERE account_id IS NOT NULL"
        return conn.execute(sql).fetchone()["n"]


def _task(client, account) -> dict:
    body = {"type": "check_eligibility", "data": ELIGIBILITY}
    response = client.post("/tasks", json=body, headers=account.headers)
    assert response.status_code == 200, response.json
    return response.json


def _ran_on_profile(runtime, task_id: int, version: int, portal: str = "acme") -> None:
    """What a worker's run records: the profile version it signed in with."""
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE tasks SET profile_portal = %s, profile_version = %s WHERE id = %s",
            (portal, version, task_id),
        )


def _ended_long_ago(runtime, account, task_id: int) -> None:
    """End the task, with a step in its trajectory, past the account's retention."""
    with runtime.pool.connection() as conn:
        record_step(
            conn, task_id=task_id, account_id=account.id, attempt=1, seq=1, name="login",
            status="ok", message="", started_at=datetime.now(UTC), duration_ms=5, screenshot=None,
        )  # fmt: skip
        assert task_queries.finish_task(conn, task_id, TaskStatus.COMPLETED, "done")
        conn.execute(
            "UPDATE tasks SET completed_at = completed_at - interval '400 days' WHERE id = %s",
            (task_id,),
        )


@pytest.mark.parametrize(
    ("url", "text"), [(SOPS, _sop), (PROFILE, _profile)], ids=["sop", "profile"]
)
def test_the_save_past_the_limit_drops_the_oldest_version(runtime, account, url, text):
    with limited(runtime, max_sop_versions=3) as client:
        for n in (1, 2, 3):
            assert _put(client, account, url, text(n)).status_code == 201
        # when a fourth version is stored
        fourth = _put(client, account, url, text(4))
        # then it is stored, and version 1 is gone: its read is a 404, the lists show 2 to 4
        assert fourth.status_code == 201 and fourth.json["version"] == 4
        assert client.get(f"{url}/versions/1", headers=account.headers).status_code == 404
        assert client.get(f"{url}/versions/2", headers=account.headers).status_code == 200
        assert _listed(client, account, url) == [4, 3, 2]
        assert [entry["version"] for entry in fourth.json["history"]] == [4, 3, 2]
        # and the next is numbered 5 (never a number given before), dropping 2
        fifth = _put(client, account, url, text(1))
        assert fifth.status_code == 201 and fifth.json["version"] == 5
        assert fifth.json["title"] in ("Version 1", "Acme 1")
        assert _listed(client, account, url) == [5, 4, 3]
        # and the same text again stores and drops nothing
        assert _put(client, account, url, text(1)).status_code == 200
        assert _listed(client, account, url) == [5, 4, 3]


def test_the_active_version_is_never_dropped(runtime, account):
    with limited(runtime, max_sop_versions=2) as client:
        # given a revert to the built-in SOP (stored as the account's version 2)
        assert _put(client, account, SOPS, _sop(1)).status_code == 201
        reverted = client.delete(SOPS, headers=account.headers)
        assert reverted.status_code == 200 and reverted.json["version"] == 2
        # when more are stored, each is active and the one it succeeds is kept, not older ones
        for n in (3, 4):
            saved = _put(client, account, SOPS, _sop(n))
            assert saved.status_code == 201 and saved.json["version"] == n
            assert _listed(client, account, SOPS) == [n, n - 1]
        assert client.get(SOPS, headers=account.headers).json["title"] == "Version 4"
        # and a revert at the limit drops the oldest too, and is active
        reverted = client.delete(SOPS, headers=account.headers)
        assert reverted.status_code == 200 and reverted.json["version"] == 5
        assert reverted.json["body"] == BUILTIN
        assert _listed(client, account, SOPS) == [5, 4]


def test_a_version_a_kept_task_names_is_kept_until_retention_deletes_the_task(runtime, account):
    with limited(runtime, max_sop_versions=3) as client:
        # given a task created on version 1
        assert _put(client, account, SOPS, _sop(1)).status_code == 201
        task = _task(client, account)
        assert task["sop"]["version"] == 1
        # when three more versions are stored
        for n in (2, 3, 4):
            assert _put(client, account, SOPS, _sop(n)).status_code == 201
        # then version 1 is kept and the oldest other one, 2, is dropped
        assert _listed(client, account, SOPS) == [4, 3, 1]
        assert client.get(f"{SOPS}/versions/1", headers=account.headers).json["title"] == (
            "Version 1"
        )
        # and the task reads as before: itself, its SOP, its trajectory, and what a run reads
        read = client.get(f"/tasks/{task['id']}", headers=account.headers)
        assert read.status_code == 200 and read.json["sop"]["version"] == 1
        ran = client.get(f"/tasks/{task['id']}/sop", headers=account.headers)
        assert ran.status_code == 200 and ran.json["body"] == _sop(1)
        trajectory = client.get(f"/tasks/{task['id']}/trajectory", headers=account.headers)
        assert trajectory.status_code == 200
        with runtime.pool.connection() as conn:
            sop_id = conn.execute("SELECT sop_id FROM tasks WHERE id = %s", (task["id"],))
            stored = sop_store.sop_by_id(conn, sop_id.fetchone()["sop_id"])
        assert stored.version == 1 and stored.sop.title == "Version 1"
        # and once retention deletes the task, the next save drops version 1
        _ended_long_ago(runtime, account, task["id"])
        assert retention.purge(runtime).tasks == 1
        assert _put(client, account, SOPS, _sop(5)).status_code == 201
        assert _listed(client, account, SOPS) == [5, 4, 3]


def test_a_profile_version_a_kept_task_signed_in_with_is_kept(runtime, account):
    with limited(runtime, max_sop_versions=3) as client:
        # given a task whose run signed in with version 1 of the portal's profile
        assert _put(client, account, PROFILE, _profile(1)).status_code == 201
        task = _task(client, account)
        _ran_on_profile(runtime, task["id"], 1)
        # when three more versions are stored
        for n in (2, 3, 4):
            assert _put(client, account, PROFILE, _profile(n)).status_code == 201
        # then version 1 is kept, the task still names it and it reads
        assert _listed(client, account, PROFILE) == [4, 3, 1]
        read = client.get(f"/tasks/{task['id']}", headers=account.headers).json
        assert read["profile"] == {"portal": "acme", "version": 1, "builtin": False}
        one = client.get(f"{PROFILE}/versions/1", headers=account.headers)
        assert one.status_code == 200 and one.json["title"] == "Acme 1"


@pytest.mark.parametrize("what", ["sop", "profile"])
def test_when_every_older_version_is_named_the_save_is_409_and_stores_nothing(
    runtime, account, what
):
    url, text, table = (SOPS, _sop, "sops")
    if what == "profile":
        url, text, table = PROFILE, _profile, "portal_profiles"
    with limited(runtime, max_sop_versions=2) as client:
        # given two versions, a task naming the older one (the newer one is active)
        assert _put(client, account, url, text(1)).status_code == 201
        task = _task(client, account)
        if what == "profile":
            _ran_on_profile(runtime, task["id"], 1)
        assert _put(client, account, url, text(2)).status_code == 201
        stored = _rows(runtime, table)
        # when a third is stored
        refused = _put(client, account, url, text(3))
        # then it is a 409 naming the setting, and nothing is stored or dropped
        assert refused.status_code == 409, refused.json
        assert refused.json["error"]["code"] == "limit_exceeded"
        assert refused.json["error"]["details"] == {"limit": "MAX_SOP_VERSIONS", "max": 2}
        assert "MAX_SOP_VERSIONS" in refused.json["error"]["message"]
        assert _rows(runtime, table) == stored
        assert _listed(client, account, url) == [2, 1]
        # and the text already active still answers 200, storing nothing
        assert _put(client, account, url, text(2)).status_code == 200


@pytest.mark.parametrize(
    ("editor", "api", "field", "text"),
    [
        ("/console/sops/check_eligibility/edit", SOPS, "sop", _sop),
        ("/console/portals/sandbox/profile/edit", "/portals/sandbox/profile", "profile", _sandbox),
    ],
    ids=["sop", "profile"],
)
def test_the_console_editor_drops_the_oldest_and_says_the_limit(
    runtime, app, account, editor, api, field, text
):
    with limited(runtime, max_sop_versions=2) as client:
        make_user(runtime, account.id, "ed@c.test", "admin")
        browser = app.test_client()
        sign_in(browser, "ed@c.test")

        def save(n: int):
            page = browser.get(editor).text
            opened_at = re.search(r'name="opened_at" value="([^"]*)"', page).group(1)
            form = {field: text(n), "csrf_token": form_token(page), "opened_at": opened_at}
            return browser.post(editor, data=form)

        # given three versions saved in the editor: the first is dropped
        for n in (1, 2, 3):
            assert save(n).status_code == 303
        assert _listed(client, account, api) == [3, 2]
        # and a task that names version 3, the active one
        task = _task(client, account)
        if field == "profile":
            _ran_on_profile(runtime, task["id"], 3, "sandbox")
        assert save(4).status_code == 303
        assert _listed(client, account, api) == [4, 3]
        # when a fifth is saved, the page says the limit, with the text kept; nothing is stored
        refused = save(5)
        assert refused.status_code == 409
        assert "MAX_SOP_VERSIONS" in refused.text
        assert _listed(client, account, api) == [4, 3]
