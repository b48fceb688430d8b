"""/portals/{name}/profile: read, store and validate portal profiles, with line-numbered 422s,
the same limits as SOPs, and the portal's address set from the profile."""

from __future__ import annotations

import pytest

from shared.sop.profile import builtin_profile_text

YAML = {"Content-Type": "application/yaml"}

ACME = """\
portal: acme
title: Acme Health provider portal
base_url: https://portal.acme.test
allowed_origins: [https://sso.acme.test]
sign_in:
  url: /signin
  page: {url: /signin, shows: {role: heading, name: Provider sign-in}}
  username: {label: Email}
  password: {label: Password}
  button: {button: Continue}
errors:
  - heading: Something went wrong
dismiss:
  - {button: Close, within: {role: dialog}}
prelude:
  - goto: /home
"""


def _put(client, account, text: str, name: str = "acme", **headers):
    return client.put(
        f"/portals/{name}/profile",
        data=text.encode(),
        headers={**account.headers, **YAML, **headers},
    )


def _validate(client, account, text: str):
    return client.post(
        "/portals/profiles/validate", data=text.encode(), headers={**account.headers, **YAML}
    )


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert body["error"]["code"] == code
    return body["error"]


def _profile_rows(runtime) -> int:
    with runtime.pool.connection() as conn:
        return conn.execute("SELECT count(*) AS n FROM portal_profiles").fetchone()["n"]


def test_the_sandbox_has_a_builtin_profile(client, account, runtime):
    # given a new account / when it reads the sandbox's profile
    response = client.get("/portals/sandbox/profile", headers=account.headers)
    # then it is the built-in document, at the operator's address, with its sign-in page rule
    assert response.status_code == 200
    profile = response.get_json()
    assert profile["builtin"] is True and profile["version"] is None
    assert profile["body"] == builtin_profile_text("sandbox")
    assert profile["base_url"] == runtime.settings.sandbox_url
    assert "the sign-in page is the one where its address matches" in profile["summary"]
    assert "p3.1. Choose the payer" in profile["summary"]
    assert profile["history"] == []


def test_put_stores_versions_and_sets_the_portals_address(client, account):
    # given a new portal's profile, stored twice with a change in between
    first = _put(client, account, ACME)
    second = _put(client, account, ACME.replace("Acme Health", "Acme"))
    again = _put(client, account, ACME.replace("Acme Health", "Acme"))
    # then each new text is a numbered version (201), the same text again stores nothing (200)
    assert first.status_code == 201 and first.get_json()["version"] == 1
    assert second.status_code == 201 and second.get_json()["version"] == 2
    assert again.status_code == 200 and again.get_json()["version"] == 2
    read = client.get("/portals/acme/profile", headers=account.headers).get_json()
    assert read["title"] == "Acme provider portal" and read["builtin"] is False
    assert [h["version"] for h in read["history"]] == [2, 1]
    # and the portal is registered at the profile's address, for the egress boundary
    assert read["base_url"] == "https://portal.acme.test"
    assert read["allowed_origins"] == ["https://sso.acme.test"]
    listed = client.get("/portals", headers=account.headers).get_json()["data"]
    acme = next(p for p in listed if p["name"] == "acme")
    assert acme["base_url"] == "https://portal.acme.test" and acme["has_profile"] is True
    assert acme["allowed_origins"] == ["https://sso.acme.test"]
    assert next(p for p in listed if p["name"] == "sandbox")["has_profile"] is True


def test_every_stored_profile_version_stays_readable_with_its_text(client, account, make_account):
    # given two versions of a portal's profile
    _put(client, account, ACME)
    _put(client, account, ACME.replace("Acme Health", "Acme"))
    # when the first is read by its number
    response = client.get("/portals/acme/profile/versions/1", headers=account.headers)
    # then it is that version's document, though the second is in force
    assert response.status_code == 200
    first = response.get_json()
    assert first["portal"] == "acme" and first["version"] == 1 and first["builtin"] is False
    assert first["body"] == ACME and first["title"] == "Acme Health provider portal"
    assert "Provider sign-in" in first["summary"] and first["created_at"].endswith("Z")
    # and a version never stored, another account's, or a bad name is a 404 or 422, never a 500
    for missing in ("3", "0", "2147483648", "999999999999999999"):
        url = f"/portals/acme/profile/versions/{missing}"
        _error(client.get(url, headers=account.headers), 404, "not_found")
    other = make_account()
    url = "/portals/acme/profile/versions/1"
    _error(client.get(url, headers=other.headers), 404, "not_found")
    url = "/portals/BAD!/profile/versions/1"
    _error(client.get(url, headers=account.headers), 422, "validation_failed")
    assert client.get("/portals/acme/profile/versions/1").status_code == 401


def test_put_portals_json_still_sets_the_address_alone(client, account):
    # given a portal with a profile / when a client of today's API moves it with PUT /portals
    _put(client, account, ACME)
    moved = client.put(
        "/portals/acme", json={"base_url": "https://new.acme.test"}, headers=account.headers
    )
    # then the address in force is the new one, and the profile is unchanged
    assert moved.status_code == 200 and moved.get_json()["has_profile"] is True
    read = client.get("/portals/acme/profile", headers=account.headers).get_json()
    assert read["base_url"] == "https://new.acme.test" and read["version"] == 1


def test_json_body_with_the_yaml_in_profile(client, account):
    response = client.put("/portals/acme/profile", json={"profile": ACME}, headers=account.headers)
    assert response.status_code == 201 and response.get_json()["body"] == ACME
    _error(
        client.put("/portals/acme/profile", json={"sop": ACME}, headers=account.headers),
        422,
        "validation_failed",
    )


def test_a_portal_without_a_profile_is_404(client, account):
    client.put("/portals/legacy", json={"base_url": "https://legacy.test"}, headers=account.headers)
    _error(client.get("/portals/legacy/profile", headers=account.headers), 404, "not_found")
    _error(client.get("/portals/BAD!/profile", headers=account.headers), 422, "validation_failed")


def test_invalid_profile_is_422_listing_every_problem_with_its_line(client, account, runtime):
    # given a profile whose sign-in page is recognised by nothing, with a typo and a bad step
    text = """\
portal: acme
title: Acme
base_url: https://portal.acme.test
sign_in:
  username: {label: Email}
  password: {label: Password}
  buton: {button: Continue}
prelude:
  - clik: {button: Home}
"""
    # when it is stored or validated
    for response in (_put(client, account, text), _validate(client, account, text)):
        error = _error(response, 422, "validation_failed")
        # then every problem is listed, each with its line and path
        found = [(d["line"], d["path"], d["message"]) for d in error["details"]]
        assert (7, "sign_in.buton", "unknown key 'buton'") in found
        assert (4, "sign_in", "'button' (a locator) is required") in found
        assert any(
            (line, path) == (4, "sign_in") and "how to recognise the sign-in page" in message
            for line, path, message in found
        )
        assert any((line, path) == (9, "prelude[0]") for line, path, _ in found)
    assert _profile_rows(runtime) == 0


def test_a_sign_in_page_rule_needs_url_or_shows_and_a_valid_regex(client, account):
    text = ACME.replace(
        "  page: {url: /signin, shows: {role: heading, name: Provider sign-in}}",
        "  page: {}\n  mfa: {code: {label: Code}, button: {button: Go}, page: {url: '(['}}",
    )
    error = _error(_validate(client, account, text), 422, "validation_failed")
    messages = {d["path"]: (d["line"], d["message"]) for d in error["details"]}
    assert messages["sign_in.page"] == (7, "give url (a regular expression of the address), "
                                           "shows, or both")  # fmt: skip
    assert messages["sign_in.mfa.page.url"][0] == 8
    assert "bad regular expression" in messages["sign_in.mfa.page.url"][1]


def test_the_document_must_name_the_portal_of_the_url(client, account):
    error = _error(_put(client, account, ACME, name="other"), 422, "validation_failed")
    assert [(d["line"], d["path"], d["message"]) for d in error["details"]] == [
        (1, "portal", "must be other, not 'acme'")
    ]


def test_the_sandbox_profile_can_be_overridden_but_not_moved(client, account):
    # given the built-in sandbox profile with a different prelude
    text = builtin_profile_text("sandbox").replace(
        "option: \"{{ payer or 'Sandbox Health' }}\"", "option: Acme Mutual"
    )
    stored = _put(client, account, text, name="sandbox")
    assert stored.status_code == 201 and stored.get_json()["builtin"] is False
    # but an address in it is refused: the sandbox's address is the operator's
    moved = _put(client, account, text + "base_url: https://evil.test\n", name="sandbox")
    error = _error(moved, 422, "validation_failed")
    assert [d["path"] for d in error["details"]] == ["base_url"]
    # and DELETE goes back to the built-in text, as a new version
    reverted = client.delete("/portals/sandbox/profile", headers=account.headers)
    assert reverted.status_code == 200
    assert reverted.get_json()["body"] == builtin_profile_text("sandbox")
    assert reverted.get_json()["version"] == 2
    _error(client.delete("/portals/acme/profile", headers=account.headers), 422, "not_builtin")


def test_a_goto_or_sign_in_off_the_portal_is_422(client, account, runtime):
    # given a prelude, then a sign-in, that opens another host than the portal's
    offsite = ACME.replace("  - goto: /home", "  - goto: https://elsewhere.test/x")
    error = _error(_put(client, account, offsite), 422, "validation_failed")
    assert error["details"][0]["path"] == "prelude[0].goto"
    assert error["details"][0]["line"] == 16
    sign_in_off = ACME.replace("  url: /signin", "  url: https://elsewhere.test/signin")
    error = _error(_put(client, account, sign_in_off), 422, "validation_failed")
    assert [d["path"] for d in error["details"]] == ["sign_in.url"]
    assert _profile_rows(runtime) == 0


def test_validate_stores_nothing_and_warns_what_is_missing(client, account, runtime):
    response = _validate(client, account, ACME.replace("base_url: https://portal.acme.test\n", ""))
    assert response.status_code == 200
    body = response.get_json()
    assert body["valid"] is True and body["portal"] == "acme"
    assert any("has no address" in w for w in body["warnings"])
    assert any("PUT /credentials/acme" in w for w in body["warnings"])
    assert _profile_rows(runtime) == 0


def test_one_accounts_profile_is_invisible_to_another(client, make_account):
    first, second = make_account(), make_account()
    assert _put(client, first, ACME).status_code == 201
    _error(client.get("/portals/acme/profile", headers=second.headers), 404, "not_found")


# -- hostile input: the same limits as SOPs ------------------------------------------------------


def test_an_oversized_profile_is_413(client, account, runtime):
    limit = runtime.settings.max_sop_bytes
    text = ACME + "description: " + "x" * limit + "\n"
    error = _error(_put(client, account, text), 413, "payload_too_large")
    assert error["details"]["limit"] == "MAX_SOP_BYTES"


def test_an_alias_bomb_is_refused_quickly_as_limit_exceeded(client, account):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)},"
        f" *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)},"
        f" *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    error = _error(_validate(client, account, bomb), 422, "limit_exceeded")
    assert error["details"]["limit"] == "MAX_SOP_NODES"


def test_deep_nesting_and_too_many_prelude_steps_are_limit_exceeded(client, account, runtime):
    depth = runtime.settings.max_sop_depth
    deep = ACME + "description: " + "[" * (depth + 2) + "]" * (depth + 2) + "\n"
    assert (
        _error(_validate(client, account, deep), 422, "limit_exceeded")["details"]["limit"]
        == "MAX_SOP_DEPTH"
    )
    steps = runtime.settings.max_sop_steps
    many = ACME + "".join("  - goto: /home\n" for _ in range(steps))
    assert (
        _error(_validate(client, account, many), 422, "limit_exceeded")["details"]["limit"]
        == "MAX_SOP_STEPS"
    )


@pytest.mark.parametrize(
    "body",
    [
        b'portal: acme\ntitle: "\\0"\n',  # an escaped NUL
        b"portal: acme\ntitle: \xff\xfe\n",  # not UTF-8
        b"portal: acme\ntitle: x\nn: 1" + b"9" * 200 + b"\n",  # a 200-digit number
        b"- just\n- a list\n",
        b"",
        b"portal: acme\ntitle: [unclosed\n",
    ],
)
def test_hostile_documents_are_a_clear_4xx_never_a_500(client, account, body):
    response = client.post(
        "/portals/profiles/validate", data=body, headers={**account.headers, **YAML}
    )
    assert response.status_code in (400, 422), response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] in ("validation_failed", "malformed_body",
                                                    "invalid_text")  # fmt: skip


def test_profile_endpoints_need_a_key(client):
    assert client.get("/portals/sandbox/profile").status_code == 401
    assert client.post("/portals/profiles/validate", data=ACME, headers=YAML).status_code == 401


def test_wrong_media_type_is_415(client, account):
    response = client.put(
        "/portals/acme/profile",
        data=ACME,
        headers={**account.headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    _error(response, 415, "unsupported_media_type")


def test_max_sessions_is_a_whole_number_from_1_to_100(client, account, runtime):
    # given a portal that allows one session per user
    stored = _put(client, account, ACME + "max_sessions: 1\n")
    assert stored.status_code == 201, stored.get_json()
    assert "One user may hold 1 session at once" in stored.get_json()["summary"]
    # when the limit is anything but a whole number from 1 to 100, then it is a 422 at its line
    for bad in ("0", "101", "1.5", "true", "two"):
        refused = _put(client, account, ACME + f"max_sessions: {bad}\n")
        error = _error(refused, 422, "validation_failed")
        assert [(d["path"], d["line"]) for d in error["details"]] == [("max_sessions", 17)], bad
    assert _profile_rows(runtime) == 1


def test_an_allowed_origin_with_an_unclosed_ipv6_host_is_422_and_stores_nothing(
    client, account, runtime
):
    text = ACME.replace("[https://sso.acme.test]", '["https://[::1"]')
    for response in (_validate(client, account, text), _put(client, account, text)):
        details = _error(response, 422, "validation_failed")["details"]
        assert [d["path"] for d in details] == ["allowed_origins[0]"], details
        assert details[0]["line"] == 4
    assert _profile_rows(runtime) == 0
