"""Eligibility & Benefits: every test member's outcome, the spinner and the JSON behind it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from .helpers import Page, read, sign_in, submit

LABELS = ["Member ID", "Patient First Name", "Patient Last Name", "Date of Birth"]


def search(client: FlaskClient, member: str, first: str, last: str, dob: str) -> Page:
    page = read(client.get("/eligibility"))
    return submit(
        client, page, "/eligibility", dict(zip(LABELS, (member, first, last, dob), strict=True))
    )


def result(client: FlaskClient, page: Page) -> dict[str, Any]:
    """What the spinner page's script fetches."""
    assert page.path.startswith("/eligibility/results/")
    resp = client.get(page.path + "/data")
    assert resp.status_code == 200
    return resp.get_json()


def test_form_contract(portal: FlaskClient) -> None:
    page = read(portal.get("/eligibility"))
    assert page.heading == "Eligibility & Benefits"
    assert list(page.r.labels) == LABELS
    assert page.buttons == ["Search"]
    assert page.r.controls[page.id_of("Date of Birth")]["placeholder"] == "MM/DD/YYYY"


def test_results_page_shows_spinner_first(make_app: Callable[..., Flask]) -> None:
    client = make_app(spinner_s=1.0).test_client()
    sign_in(client)
    page = search(client, "W100000001", "Jane", "Doe", "01/15/1990")
    assert page.heading == "Eligibility & Benefits"
    assert page.r.statuses == ["Loading…"]
    assert 'data-delay-ms="1000"' in page.html
    assert page.rows == []  # the table arrives later, via the script


@pytest.mark.parametrize("dob", ["01/15/1990", "1/15/1990", "1990-01-15"])
def test_active_member(portal: FlaskClient, dob: str) -> None:
    data = result(portal, search(portal, "W100000001", "JANE", "doe", dob))
    assert data == {
        "rows": [
            ["Member ID", "W100000001"],
            ["Patient", "Jane Doe"],
            ["Coverage Status", "Active"],
            ["Plan", "Sandbox Gold PPO"],
            ["Copay", "$25.00"],
            ["Coverage End", "12/31/2026"],
        ]
    }


def test_inactive_member(portal: FlaskClient) -> None:
    rows = dict(result(portal, search(portal, "W200000002", "John", "Roe", "06/30/1985"))["rows"])
    assert rows["Coverage Status"] == "Inactive"
    assert rows["Coverage End"] == "12/31/2024"


@pytest.mark.parametrize(
    ("member", "first", "last", "dob", "message"),
    [
        ("W300000003", "Any", "Body", "02/02/1980", "No member found matching the criteria."),
        ("W999999999", "Jane", "Doe", "01/15/1990", "No member found matching the criteria."),
        ("W100000001", "Janet", "Doe", "01/15/1990", "No member found matching the criteria."),
        ("W100000001", "Jane", "Doe", "01/16/1990", "Date of birth does not match our records."),
    ],
)
def test_member_not_matched(
    portal: FlaskClient, member: str, first: str, last: str, dob: str, message: str
) -> None:
    assert result(portal, search(portal, member, first, last, dob)) == {"error": message}


@pytest.mark.parametrize(
    ("member", "name", "plan"),
    [
        ("W600000006", "Maria Garcia 03/02/1975", "Sandbox Bronze EPO"),
        ("W700000007", "Li Wei 11/20/1968", "Sandbox Gold PPO"),
        ("W800000008", "Sam Patel 07/04/2001", "Sandbox Silver HMO"),
    ],
)
def test_other_members_are_active(portal: FlaskClient, member: str, name: str, plan: str) -> None:
    first, last, dob = name.split()
    rows = dict(result(portal, search(portal, member, first, last, dob))["rows"])
    assert rows["Coverage Status"] == "Active"
    assert rows["Plan"] == plan


def test_error_member_gives_http_500(portal: FlaskClient) -> None:
    page = search(portal, "W500000005", "Any", "Body", "01/01/1970")
    assert page.status == 500
    assert page.heading == "Internal Server Error"
    assert "The portal encountered an unexpected error." in page.html


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            ("W100000001", "Jane", "", "01/15/1990"),
            "Enter Member ID, Patient First Name, Patient Last Name and Date of Birth.",
        ),
        (("W100000001", "Jane", "Doe", "15.01.1990"), "Enter Date of Birth as MM/DD/YYYY."),
    ],
)
def test_input_mistakes_stay_on_the_form(
    portal: FlaskClient, values: tuple[str, ...], message: str
) -> None:
    page = search(portal, *values)
    assert page.path == "/eligibility"
    assert page.alerts == [message]
    assert page.r.controls[page.id_of("Member ID")]["value"] == "W100000001"


def test_results_json_needs_the_same_user_and_a_session(portal: FlaskClient, app: Flask) -> None:
    page = search(portal, "W100000001", "Jane", "Doe", "01/15/1990")
    other = app.test_client()
    resp = other.get(page.path + "/data", headers={"X-Page-Path": page.path})
    assert resp.status_code == 401
    assert resp.get_json() == {"login": "/login?next=" + page.path.replace("/", "%2F")}
    assert portal.get("/eligibility/results/unknown").status_code == 404
