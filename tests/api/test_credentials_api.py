"""/credentials and /portals: write-only secrets, validation, account scoping, no leaks."""

from __future__ import annotations

import dataclasses
import json

import pytest

from api import create_app
from shared.accounts import load_credentials

PASSWORD = "Zebra-Quokka-7731-pass"
TOTP = "KRSXG5CTMVRXEZLUKN2XAZLDNFSWG4TF"  # 160 bits, like most authenticator secrets


def _put_creds(client, account, portal="acme", **body):
    body = {"username": "billing@clinic", "password": PASSWORD, **body}
    return client.put(f"/credentials/{portal}", json=body, headers=account.headers)


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert body["error"]["code"] == code
    return body["error"]


# --- credentials -------------------------------------------------------------------------------


def test_put_stores_encrypted_and_answers_without_secrets(client, account, runtime):
    # given a login with a TOTP secret / when it is PUT
    response = _put_creds(client, account, totp_secret=TOTP)
    # then the answer names the portal and username only
    assert response.status_code == 200
    body = response.get_json()
    assert {k: body[k] for k in ("portal", "username", "has_totp")} == {
        "portal": "acme",
        "username": "billing@clinic",
        "has_totp": True,
    }
    assert body["updated_at"].endswith("Z")
    assert PASSWORD not in response.get_data(as_text=True)
    assert TOTP not in response.get_data(as_text=True)
    # and the row holds a Fernet token, not the password, that decrypts to the login
    with runtime.pool.connection() as conn:
        token = conn.execute(
            "SELECT secret_token FROM portal_credentials WHERE account_id = %s AND portal = 'acme'",
            (account.id,),
        ).fetchone()["secret_token"]
        creds = load_credentials(conn, runtime.fernet, account.id, "acme")
    assert PASSWORD.encode() not in bytes(token) and TOTP.encode() not in bytes(token)
    assert (creds.username, creds.password, creds.totp_secret) == ("billing@clinic", PASSWORD, TOTP)


def test_put_replaces_the_login(client, account, runtime):
    _put_creds(client, account, totp_secret=TOTP)
    response = _put_creds(client, account, username="new@clinic", password="other")
    assert response.get_json()["has_totp"] is False
    with runtime.pool.connection() as conn:
        creds = load_credentials(conn, runtime.fernet, account.id, "acme")
    assert (creds.username, creds.password, creds.totp_secret) == ("new@clinic", "other", None)


def test_totp_secret_as_an_app_shows_it_is_normalised(client, account, runtime):
    spaced = " ".join(TOTP[i : i + 4] for i in range(0, len(TOTP), 4)).lower()
    assert _put_creds(client, account, totp_secret=spaced).status_code == 200
    with runtime.pool.connection() as conn:
        assert load_credentials(conn, runtime.fernet, account.id, "acme").totp_secret == TOTP


@pytest.mark.parametrize("secret", ["not base32!", "JBSWY3DP18", "JBSWY3DP", ""])
def test_invalid_totp_secret_is_422_and_stores_nothing(client, account, secret):
    error = _error(_put_creds(client, account, totp_secret=secret), 422, "validation_failed")
    assert "totp_secret" in [d["field"] for d in error["details"]]
    listed = client.get("/credentials", headers=account.headers).get_json()["data"]
    assert [c["portal"] for c in listed] == ["sandbox"]


def test_missing_or_unknown_fields_are_422(client, account):
    response = client.put("/credentials/acme", json={"username": "u"}, headers=account.headers)
    assert {"field": "password", "message": "Missing data for required field."} in _error(
        response, 422, "validation_failed"
    )["details"]
    response = _put_creds(client, account, totp=TOTP)  # misspelt: never silently dropped
    details = _error(response, 422, "validation_failed")["details"]
    assert "totp" in [d["field"] for d in details]


@pytest.mark.parametrize("portal", ["Acme", "-acme", "ac me", "a" * 64, "acme.com"])
def test_invalid_portal_name_is_422(client, account, portal):
    _error(_put_creds(client, account, portal=portal), 422, "validation_failed")
    _error(
        client.delete(f"/credentials/{portal}", headers=account.headers), 422, "validation_failed"
    )


def test_wrong_media_type_is_415_and_malformed_json_400(client, account):
    response = client.put(
        "/credentials/acme",
        data="username=u&password=p",
        headers={**account.headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    _error(response, 415, "unsupported_media_type")
    response = client.put(
        "/credentials/acme",
        data='{"username": ',
        headers={**account.headers, "Content-Type": "application/json"},
    )
    _error(response, 400, "malformed_json")
    response = client.put("/credentials/acme", json=["u", "p"], headers=account.headers)
    _error(response, 400, "malformed_json")


def test_list_shows_portals_and_usernames_of_this_account_only(client, make_account):
    owner, other = make_account("Owner"), make_account("Other", sandbox=False)
    _put_creds(client, owner, totp_secret=TOTP)
    listed = client.get("/credentials", headers=owner.headers).get_json()["data"]
    assert [(c["portal"], c["username"], c["has_totp"]) for c in listed] == [
        ("acme", "billing@clinic", True),
        ("sandbox", "provider@sandbox", True),
    ]
    assert client.get("/credentials", headers=other.headers).get_json()["data"] == []


def test_delete_is_204_then_404_and_never_touches_another_account(client, make_account):
    owner, other = make_account("Owner"), make_account("Other")
    _put_creds(client, owner)
    _error(client.delete("/credentials/acme", headers=other.headers), 404, "not_found")
    assert client.delete("/credentials/acme", headers=owner.headers).status_code == 204
    _error(client.delete("/credentials/acme", headers=owner.headers), 404, "not_found")
    listed = client.get("/credentials", headers=owner.headers).get_json()["data"]
    assert [c["portal"] for c in listed] == ["sandbox"]


# --- portals -----------------------------------------------------------------------------------


def test_portals_list_the_builtin_sandbox_and_the_accounts_own(client, account, runtime):
    # given a registered portal
    response = client.put(
        "/portals/acme", json={"base_url": "https://portal.acme.test/app"}, headers=account.headers
    )
    assert response.status_code == 200
    assert response.get_json()["base_url"] == "https://portal.acme.test/app"
    # when the portals are listed / then the sandbox comes first, built in, at the configured URL
    listed = client.get("/portals", headers=account.headers).get_json()["data"]
    assert [(p["name"], p["builtin"], p["has_credentials"]) for p in listed] == [
        ("sandbox", True, True),
        ("acme", False, False),
    ]
    assert listed[0]["base_url"] == runtime.settings.sandbox_url


def test_put_portal_updates_the_address(client, account):
    client.put("/portals/acme", json={"base_url": "http://old.test"}, headers=account.headers)
    client.put("/portals/acme", json={"base_url": "http://new.test"}, headers=account.headers)
    listed = client.get("/portals", headers=account.headers).get_json()["data"]
    assert [p["base_url"] for p in listed if p["name"] == "acme"] == ["http://new.test"]


@pytest.mark.parametrize(
    "base_url",
    [
        "ftp://acme.test",
        "acme.test",
        "https://",
        "https://user:pw@acme.test",
        "http://a.test:99999",
        7,
    ],
)
def test_invalid_base_url_is_422(client, account, base_url):
    response = client.put("/portals/acme", json={"base_url": base_url}, headers=account.headers)
    details = _error(response, 422, "validation_failed")["details"]
    assert [d["field"] for d in details] == ["base_url"]


def test_the_sandbox_portal_cannot_be_changed(client, account):
    response = client.put(
        "/portals/sandbox", json={"base_url": "https://evil.test"}, headers=account.headers
    )
    _error(response, 422, "builtin_portal")
    _error(client.delete("/portals/sandbox", headers=account.headers), 422, "builtin_portal")


def test_portals_are_per_account(client, make_account):
    owner, other = make_account("Owner"), make_account("Other")
    client.put("/portals/acme", json={"base_url": "https://acme.test"}, headers=owner.headers)
    names = [p["name"] for p in client.get("/portals", headers=other.headers).get_json()["data"]]
    assert names == ["sandbox"]
    _error(client.delete("/portals/acme", headers=other.headers), 404, "not_found")
    assert client.delete("/portals/acme", headers=owner.headers).status_code == 204
    _error(client.delete("/portals/acme", headers=owner.headers), 404, "not_found")


def test_put_portal_wants_json(client, account):
    response = client.put(
        "/portals/acme",
        data="https://acme.test",
        headers={**account.headers, "Content-Type": "text/plain"},
    )
    _error(response, 415, "unsupported_media_type")


# --- no secret ever comes back -----------------------------------------------------------------


def test_no_response_contains_a_stored_secret(client, account):
    # given a login with a distinctive password and TOTP secret, and an SOP on that portal
    put = _put_creds(client, account, portal="sandbox", totp_secret=TOTP)
    client.put("/portals/acme", json={"base_url": "https://acme.test"}, headers=account.headers)
    _put_creds(client, account, portal="acme", totp_secret=TOTP.lower())
    # when every read endpoint is called
    responses = [put] + [
        client.get(path, headers=account.headers)
        for path in ("/credentials", "/portals", "/sops", "/sops/check_eligibility")
    ]
    # then none of them contains the password or the secret, in any case
    for response in responses:
        assert response.status_code == 200
        text = response.get_data(as_text=True).lower()
        assert PASSWORD.lower() not in text and TOTP.lower() not in text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/credentials"),
        ("put", "/credentials/acme"),
        ("delete", "/credentials/acme"),
        ("get", "/portals"),
        ("put", "/portals/acme"),
        ("delete", "/portals/acme"),
    ],
)
def test_credential_and_portal_endpoints_need_a_key(client, method, path):
    response = getattr(client, method)(path, json={"username": "u", "password": "p"})
    _error(response, 401, "unauthorized")


def test_a_portal_on_a_private_address_is_refused_unless_allowed(runtime, account):
    # given an operator who does not allow private portal addresses
    from api import create_app

    strict = runtime.settings.replace(portal_allow_private=False)
    client = create_app(runtime=dataclasses.replace(runtime, settings=strict)).test_client()
    # when an account registers a portal on the cloud metadata address, then it is refused
    response = client.put(
        "/portals/internal", json={"base_url": "http://169.254.169.254/"}, headers=account.headers
    )
    assert response.status_code == 422
    assert "link-local" in str(response.get_json()["error"]["details"])
    loopback = client.put(
        "/portals/internal", json={"base_url": "http://127.0.0.1:8080/"}, headers=account.headers
    )
    assert loopback.status_code == 422


# --- origins a portal declares ------------------------------------------------------------------


def test_a_portal_declares_the_other_origins_its_pages_need(client, account):
    response = client.put(
        "/portals/acme",
        json={
            "base_url": "https://portal.acme.test/app",
            "allowed_origins": ["https://Login.Acme.test/", "https://cdn.acme.test:8443"],
        },
        headers=account.headers,
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["allowed_origins"] == [
        "https://cdn.acme.test:8443",
        "https://login.acme.test",
    ]
    listed = client.get("/portals", headers=account.headers).get_json()["data"]
    assert [p["allowed_origins"] for p in listed] == [[], response.get_json()["allowed_origins"]]


@pytest.mark.parametrize(
    "origin",
    [
        "file:///etc",
        "javascript:alert(1)",
        "https://acme.test/a/path",
        "https://acme.test/?q=1",
        "https://user:pw@acme.test",
        "acme.test",
        "https://[::1",  # an unclosed IPv6 host: urlsplit raises ValueError
        7,
    ],
)
def test_a_declared_origin_that_is_not_an_http_origin_is_422(client, account, origin):
    response = client.put(
        "/portals/acme",
        json={"base_url": "https://acme.test", "allowed_origins": [origin]},
        headers=account.headers,
    )
    details = _error(response, 422, "validation_failed")["details"]
    assert [d["field"] for d in details] == ["allowed_origins.0"]


def test_declared_origins_follow_the_private_address_rule(account, runtime):
    # With private portals refused, a declared loopback origin is refused like a base URL
    strict = runtime.settings.replace(portal_allow_private=False)
    strict_app = create_app(runtime=dataclasses.replace(runtime, settings=strict))
    response = strict_app.test_client().put(
        "/portals/acme",
        json={"base_url": "https://93.184.215.14", "allowed_origins": ["http://127.0.0.1:6379"]},
        headers=account.headers,
    )
    details = _error(response, 422, "validation_failed")["details"]
    assert "loopback" in json.dumps(
        [d for d in details if d["field"].startswith("allowed_origins")]
    )
