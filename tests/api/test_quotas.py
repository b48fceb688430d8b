"""What one account may keep is bounded (MAX_CUSTOM_TYPES, MAX_PORTALS, MAX_USERS, and the bytes
of its tasks' files, MAX_STORED_FILE_BYTES): one more is a 409 ``limit_exceeded`` (the console's
pages say the same) and nothing is stored; what exists may still change, and removing one (the
retention purge, for files) makes room. Against the real database, through the API."""

from __future__ import annotations

import contextlib
import io
from concurrent.futures import ThreadPoolExecutor

import pytest
from alembic import command

from api import create_app
from shared import retention, users
from shared import tasks as task_queries
from shared.db import _alembic_config
from shared.sop.library import builtin_sop_text
from tests.api.test_console import PASSWORD, make_user, page_token, sign_in


@contextlib.contextmanager
def limited(runtime, **limits):
    saved = runtime.settings
    runtime.settings = saved.replace(**limits)
    try:
        yield create_app(runtime=runtime).test_client()
    finally:
        runtime.settings = saved


def _own_type(name: str) -> str:
    text = builtin_sop_text("check_eligibility")
    return text.replace("task_type: check_eligibility", f"task_type: {name}")


def _count(runtime, sql: str, *params) -> int:
    with runtime.pool.connection() as conn:
        return conn.execute(f"SELECT count(*) AS n FROM {sql}", params).fetchone()["n"]


APPEAL = "claim_number: CLM-DENY-0003\nmember_id: W100000001\nreason: Medically necessary"


def _with_file(client, account, size: int, **headers):
    """An appeal sent with a letter of ``size`` bytes."""
    return client.post(
        "/tasks",
        data={"type": "submit_appeal", "data": APPEAL,
              "files": (io.BytesIO(b"%" * size), "letter.pdf")},
        headers={**account.headers, **headers}, content_type="multipart/form-data",
    )  # fmt: skip


def _stored(runtime, account_id: int) -> int | None:
    """The account's stored bytes of files, as its counter holds them (None: no row)."""
    with runtime.pool.connection() as conn:
        row = conn.execute(
            "SELECT file_bytes FROM account_storage WHERE account_id = %s", (account_id,)
        ).fetchone()
    return None if row is None else row["file_bytes"]


def _end_long_ago(runtime, task_id: int) -> None:
    """Fail the task, as if 100 days ago: past the retention of 90 days."""
    with runtime.pool.connection() as conn:
        assert task_queries.finish_task(conn, task_id, task_queries.TaskStatus.FAILED, "error")
        conn.execute(
            "UPDATE tasks SET failed_at = now() - interval '100 days' WHERE id = %s", (task_id,)
        )


def test_own_task_types_stop_at_the_limit_and_a_removal_makes_room(runtime, account):
    with limited(runtime, max_custom_types=2) as client:

        def put(name: str, text: str | None = None):
            body = {"sop": text or _own_type(name)}
            return client.put(f"/sops/{name}", json=body, headers=account.headers)

        assert put("first_type").status_code == 201
        assert put("second_type").status_code == 201
        sops_before = _count(runtime, "sops")
        # when a third is defined
        third = put("third_type")
        # then it is a 409 naming the setting, and nothing is stored
        assert third.status_code == 409, third.json
        assert third.json["error"]["code"] == "limit_exceeded"
        assert third.json["error"]["details"] == {"limit": "MAX_CUSTOM_TYPES", "max": 2}
        assert "remove one" in third.json["error"]["message"]
        assert _count(runtime, "sops") == sops_before
        assert "third_type" not in [t["name"] for t in client.get(
            "/task-types", headers=account.headers).json["data"]]  # fmt: skip
        # a type it has still takes new versions, and a built-in type's SOP is no type of its own
        edited = _own_type("first_type").replace("title: ", "title: Edited ", 1)
        assert put("first_type", edited).status_code == 201
        builtin = builtin_sop_text("check_eligibility").replace("title: ", "title: Own ", 1)
        assert put("check_eligibility", builtin).status_code == 201
        # once one is removed, the third fits
        assert client.delete("/sops/second_type", headers=account.headers).status_code == 200
        assert put("third_type").status_code == 201
        assert put("second_type").status_code == 409


def test_two_new_types_at_once_at_the_last_place_store_only_one(runtime, account):
    # (each parse at once: MAX_PARSES_IN_FLIGHT would answer some of them 429, to send again)
    with limited(runtime, max_custom_types=1, max_parses_in_flight=4):
        app = create_app(runtime=runtime)

        def put(name: str) -> int:
            client = app.test_client()
            body = {"sop": _own_type(name)}
            return client.put(f"/sops/{name}", json=body, headers=account.headers).status_code

        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(put, [f"racing_{i}" for i in range(4)]))
    assert sorted(codes) == [201, 409, 409, 409]
    assert _count(runtime, "custom_task_types WHERE account_id = %s", account.id) == 1


def test_portals_stop_at_the_limit_however_they_are_added(runtime, account, make_account):
    login = {"username": "u", "password": "p"}
    with limited(runtime, max_portals=2) as client:
        headers = account.headers
        portal = {"base_url": "https://portal-a.example"}
        assert client.put("/portals/payer_a", json=portal, headers=headers).status_code == 200
        assert client.put("/credentials/payer_b", json=login, headers=headers).status_code == 200
        # the built-in sandbox never counts, and what exists may change
        assert client.put("/credentials/sandbox", json=login, headers=headers).status_code == 200
        assert client.put("/credentials/payer_a", json=login, headers=headers).status_code == 200
        moved = {"base_url": "https://portal-b.example"}
        assert client.put("/portals/payer_b", json=moved, headers=headers).status_code == 200
        # when a third portal comes by an address, a login or a profile
        third = [
            client.put("/portals/payer_c", json=portal, headers=headers),
            client.put("/credentials/payer_c", json=login, headers=headers),
            client.put(
                "/portals/payer_c/profile",
                json={"profile": "portal: payer_c\ntitle: Payer C\n"},
                headers=headers,
            ),  # fmt: skip
        ]
        # then each is a 409 naming the setting, and nothing of it is stored
        for answer in third:
            assert answer.status_code == 409, answer.json
            assert answer.json["error"]["details"] == {"limit": "MAX_PORTALS", "max": 2}
        names = [p["name"] for p in client.get("/portals", headers=headers).json["data"]]
        assert names == ["sandbox", "payer_a", "payer_b"]
        assert _count(runtime, "portal_credentials WHERE portal = 'payer_c'") == 0
        assert _count(runtime, "portal_profiles WHERE portal = 'payer_c'") == 0
        # once one's address and login are deleted, the third fits
        assert client.delete("/portals/payer_b", headers=headers).status_code == 204
        assert client.delete("/credentials/payer_b", headers=headers).status_code == 204
        assert client.put("/portals/payer_c", json=portal, headers=headers).status_code == 200
        # another account counts its own
        other = make_account("Other clinic")
        assert client.put("/portals/payer_d", json=portal, headers=other.headers)\
            .status_code == 200  # fmt: skip


def test_files_stop_at_the_stored_bytes_limit_and_the_retention_makes_room(
    runtime, account, make_account
):
    with limited(runtime, max_stored_file_bytes=100) as client:
        # given an account whose tasks hold 60 of its 100 bytes of files
        first = _with_file(client, account, 60)
        assert first.status_code == 200, first.json
        tasks, files = _count(runtime, "tasks"), _count(runtime, "task_files")
        # when files that would put it over are sent, with an Idempotency-Key or without
        for headers in ({}, {"Idempotency-Key": "over-1"}):
            over = _with_file(client, account, 41, **headers)
            # then it is a 409 naming the setting, saying what is stored, and nothing is stored
            assert over.status_code == 409, over.json
            assert over.json["error"]["code"] == "limit_exceeded"
            assert over.json["error"]["details"] == {"limit": "MAX_STORED_FILE_BYTES", "max": 100}
            message = over.json["error"]["message"]
            assert "hold 60 bytes" in message and "retention_days" in message, message
        assert (_count(runtime, "tasks"), _count(runtime, "task_files")) == (tasks, files)
        assert _stored(runtime, account.id) == 60
        # and files that fit, up to the limit, are taken
        assert _with_file(client, account, 40).status_code == 200
        # and a task without files goes through at the limit, as does another account's files
        bare = client.post("/tasks", json={"type": "submit_appeal", "data": APPEAL},
                           headers=account.headers)  # fmt: skip
        assert bare.status_code == 200, bare.json
        other = make_account("Other clinic")
        assert _with_file(client, other, 100).status_code == 200
        # when the retention purges the first task, then its 60 bytes are free again
        _end_long_ago(runtime, first.json["id"])
        assert retention.purge(runtime).tasks == 1
        assert _stored(runtime, account.id) == 40
        assert _with_file(client, account, 60).status_code == 200
        assert _with_file(client, account, 1).status_code == 409


def test_files_sent_at_once_at_the_last_room_store_only_what_fits(runtime, account):
    with limited(runtime, max_stored_file_bytes=100):
        app = create_app(runtime=runtime)

        def send(_: int) -> int:
            return _with_file(app.test_client(), account, 40).status_code

        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(send, range(4)))
    assert sorted(codes) == [200, 200, 409, 409]
    assert _count(runtime, "task_files") == 2
    assert _stored(runtime, account.id) == 80


def test_the_migration_counts_the_files_stored_before_it(runtime, client, account, make_account):
    # given files stored in two accounts, and an account with a task without files
    other, bare = make_account("Other clinic"), make_account("Bare clinic")
    for owner, size in ((account, 30), (account, 12), (other, 7)):
        assert _with_file(client, owner, size).status_code == 200
    body = {"type": "submit_appeal", "data": APPEAL}
    assert client.post("/tasks", json=body, headers=bare.headers).status_code == 200
    # when the schema is taken back to before the counter, then brought up to date
    config = _alembic_config(runtime.database_url)
    try:
        command.downgrade(config, "0035")
        assert _count(runtime, "pg_tables WHERE tablename = 'account_storage'") == 0
    finally:
        command.upgrade(config, "head")
    # then each account's counter holds the bytes of its files
    assert (_stored(runtime, account.id), _stored(runtime, other.id)) == (42, 7)
    assert _stored(runtime, bare.id) is None


def _created_by_the_previous_release(runtime, account, like: int, size: int) -> int:
    """A task with a file of ``size`` bytes stored as an API process of the release before
    MAX_STORED_FILE_BYTES does during a rollout: by the 15 arguments' ``insert_task``
    (migration 0015), with what the account's task ``like`` was validated against."""
    with runtime.pool.connection() as conn:
        return conn.execute(
            """
            SELECT i.id FROM tasks t JOIN sops s ON s.id = t.sop_id,
                   LATERAL (SELECT portal FROM portal_credentials
                             WHERE account_id = t.account_id LIMIT 1) p,
                   insert_task(t.account_id, t.type, t.title, t.instructions, t.sop_id,
                               s.digest, NULL::bigint, false, p.portal, t.data, t.inputs,
                               t.secret_inputs, ARRAY['scan.pdf'], ARRAY['application/pdf'],
                               ARRAY[%s::bytea]) i
             WHERE t.id = %s AND t.account_id = %s
            """,
            (b"%" * size, like, account.id),
        ).fetchone()["id"]


def test_files_stored_by_the_previous_release_during_a_rollout_are_counted(
    runtime, client, account
):
    # given a task with a 30-byte file, and one with 12 bytes stored by an API process of the
    # release before the counter, still running while the new one starts
    first = _with_file(client, account, 30)
    assert first.status_code == 200, first.json
    old = _created_by_the_previous_release(runtime, account, first.json["id"], 12)
    # then its bytes are counted too
    assert _stored(runtime, account.id) == 42
    # and when the retention purge deletes it, the counter holds the bytes still stored
    _end_long_ago(runtime, old)
    assert retention.purge(runtime).tasks == 1
    assert _stored(runtime, account.id) == 30 == _count_bytes(runtime, account.id)


def _count_bytes(runtime, account_id: int) -> int:
    with runtime.pool.connection() as conn:
        return conn.execute(
            "SELECT coalesce(sum(f.size_bytes), 0) AS n FROM task_files f"
            " JOIN tasks t ON t.id = f.task_id WHERE t.account_id = %s",
            (account_id,),
        ).fetchone()["n"]


@pytest.mark.parametrize("page", ["portal", "users", "send_again"])
def test_the_console_says_the_limit_on_the_page(runtime, account, page):
    limits = {"max_portals": 1, "max_users": 2, "max_stored_file_bytes": 20}
    with limited(runtime, **limits) as browser:
        make_user(runtime, account.id, "admin@c.test", "admin")
        sign_in(browser, "admin@c.test", PASSWORD)
        if page == "portal":

            def add(name: str):
                return browser.post("/console/portals/edit", data={
                    "name": name, "base_url": "https://x.example", "allowed_origins": "",
                    "csrf_token": page_token(browser, "/console/portals/edit")})  # fmt: skip

            assert add("payer_a").status_code == 303
            refused, setting = add("payer_b"), "MAX_PORTALS"
        elif page == "send_again":
            failed = _with_file(browser, account, 15).json["id"]
            _end_long_ago(runtime, failed)
            form = {"csrf_token": page_token(browser), "retries": "0"}
            refused = browser.post(f"/console/tasks/{failed}/retry", data=form)
            setting = "MAX_STORED_FILE_BYTES"
        else:

            def invite(email: str):
                token = page_token(browser)
                return browser.post("/console/users/invite", data={
                    "email": email, "role": "viewer", "csrf_token": token})  # fmt: skip

            assert invite("second@c.test").status_code == 200
            refused, setting = invite("third@c.test"), "MAX_USERS"
            # inviting an email the account has again still works
            assert invite("second@c.test").status_code == 200
        assert refused.status_code in (409, 422)
        assert setting in refused.text
    with runtime.pool.connection() as conn:
        listed = [u["email"] for u in users.list_users(conn, account.id)]
    assert "third@c.test" not in listed
    assert _count(runtime, "portals WHERE name = 'payer_b'") == 0
