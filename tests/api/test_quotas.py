"""What one account may keep is bounded (MAX_CUSTOM_TYPES, MAX_PORTALS, MAX_USERS): one more is a
409 ``limit_exceeded`` (the console's pages say the same) and nothing is stored; what exists may
still change, and removing one makes room. Against the real database, through the API."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from api import create_app
from shared import users
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


@pytest.mark.parametrize("page", ["portal", "users"])
def test_the_console_says_the_limit_on_the_page(runtime, account, page):
    with limited(runtime, max_portals=1, max_users=2) as browser:
        make_user(runtime, account.id, "admin@c.test", "admin")
        sign_in(browser, "admin@c.test", PASSWORD)
        if page == "portal":

            def add(name: str):
                return browser.post("/console/portals/edit", data={
                    "name": name, "base_url": "https://x.example", "allowed_origins": "",
                    "csrf_token": page_token(browser, "/console/portals/edit")})  # fmt: skip

            assert add("payer_a").status_code == 303
            refused, setting = add("payer_b"), "MAX_PORTALS"
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
