"""New Portal User: a form with password fields, for SOPs that type a task's own secret."""

from __future__ import annotations

import hashlib

import pytest
from flask.testing import FlaskClient

from .helpers import read, submit

PASSWORD = "Tr0ub4dor&3-horse"


def test_form_contract(portal: FlaskClient) -> None:
    page = read(portal.get("/users/new"))
    assert page.heading == "New Portal User"
    assert list(page.r.labels) == ["New Username", "New Password", "Confirm Password"]
    assert page.r.controls[page.id_of("New Password")]["type"] == "password"
    assert page.r.controls[page.id_of("Confirm Password")]["type"] == "password"
    assert page.buttons == ["Create user"]
    assert "Users" in page.links


def test_a_user_is_created_and_only_a_digest_of_the_password_kept(portal: FlaskClient) -> None:
    page = read(portal.get("/users/new"))
    fields = {"New Username": "jdoe", "New Password": PASSWORD, "Confirm Password": PASSWORD}
    done = submit(portal, page, "/users/new", fields)
    assert done.heading == "User created" and "User jdoe was created." in done.html
    assert PASSWORD not in done.html
    [user] = portal.get("/__sandbox/submissions").get_json()["users"]
    assert user["username"] == "jdoe"
    assert user["password_sha256"] == hashlib.sha256(PASSWORD.encode()).hexdigest()


@pytest.mark.parametrize(
    ("password", "confirm", "message"),
    [
        ("short", "short", "Password must be at least 8 characters."),
        (PASSWORD, PASSWORD + "x", "Passwords do not match."),
        ("", "", "Enter Username, Password and Confirm Password."),
    ],
)
def test_a_refused_form_keeps_the_username_and_never_the_password(
    portal: FlaskClient, password: str, confirm: str, message: str
) -> None:
    page = read(portal.get("/users/new"))
    fields = {"New Username": "jdoe", "New Password": password, "Confirm Password": confirm}
    again = submit(portal, page, "/users/new", fields)
    assert again.heading == "New Portal User" and again.alerts == [message]
    assert 'value="jdoe"' in again.html
    assert not password or password not in again.html
    assert portal.get("/__sandbox/submissions").get_json()["users"] == []


def test_the_form_needs_a_signed_in_session(client: FlaskClient) -> None:
    assert client.get("/users/new").status_code == 302
