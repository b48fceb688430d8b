"""Staff pages: an add form labelled like the sign-in form, and a report that answers 500."""

from __future__ import annotations

import hashlib

from flask.testing import FlaskClient

from .helpers import read, submit

PASSWORD = "Correct-Horse-9"


def test_the_add_form_is_labelled_like_the_sign_in_form(portal: FlaskClient) -> None:
    page = read(portal.get("/staff/new"))
    assert page.heading == "Add Staff Member"
    assert list(page.r.labels) == ["Full Name:", "Username:", "Password:"]
    assert page.r.controls[page.id_of("Password:")]["type"] == "password"
    assert page.buttons == ["Save"]


def test_a_staff_member_is_added_and_only_a_digest_of_the_password_kept(
    portal: FlaskClient,
) -> None:
    page = read(portal.get("/staff/new"))
    fields = {"Full Name:": "Ada Byron", "Username:": "ada", "Password:": PASSWORD}
    done = submit(portal, page, "/staff/new", fields)
    assert done.heading == "Staff member added" and "Ada Byron was added." in done.html
    assert PASSWORD not in done.html
    [staff] = portal.get("/__sandbox/submissions").get_json()["staff"]
    assert (staff["full_name"], staff["username"]) == ("Ada Byron", "ada")
    assert staff["password_sha256"] == hashlib.sha256(PASSWORD.encode()).hexdigest()
    assert "Ada Byron" in portal.get("/staff").get_data(as_text=True)


def test_a_missing_field_keeps_the_form_without_the_password(portal: FlaskClient) -> None:
    page = read(portal.get("/staff/new"))
    again = submit(portal, page, "/staff/new", {"Username:": "ada", "Password:": PASSWORD})
    assert again.heading == "Add Staff Member"
    assert "Enter Full Name, Username and Password." in again.html
    assert PASSWORD not in again.html


def test_the_report_answers_500_in_its_own_words(portal: FlaskClient) -> None:
    response = portal.get("/staff/report")
    assert response.status_code == 500
    text = response.get_data(as_text=True)
    assert "<h1>Oops!</h1>" in text and "Internal Server Error" not in text
