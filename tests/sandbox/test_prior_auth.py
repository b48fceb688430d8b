"""Prior authorizations: decisions per test member, the list and its search."""

from __future__ import annotations

import io
import re

import pytest
from flask.testing import FlaskClient

from .helpers import Page, read, submit

LABELS = [
    "Member ID",
    "Patient First Name",
    "Patient Last Name",
    "Date of Birth",
    "Provider NPI",
    "Procedure Code (CPT)",
    "Diagnosis Code (ICD-10)",
    "Clinical Notes",
    "Clinical Attachments",
]
PATIENTS = {
    "W100000001": ("Jane", "Doe", "01/15/1990"),
    "W200000002": ("John", "Roe", "06/30/1985"),
    "W600000006": ("Maria", "Garcia", "03/02/1975"),
    "W700000007": ("Li", "Wei", "11/20/1968"),
    "W800000008": ("Sam", "Patel", "07/04/2001"),
}


def request_pa(
    client: FlaskClient,
    member: str,
    patient: tuple[str, str, str] | None = None,
    **overrides: object,
) -> Page:
    first, last, dob = patient or PATIENTS.get(member, ("Any", "Body", "01/01/1980"))
    page = read(client.get("/prior-auth/new"))
    fields: dict[str, object] = {
        "Member ID": member,
        "Patient First Name": first,
        "Patient Last Name": last,
        "Date of Birth": dob,
        "Provider NPI": "1234567890",
        "Procedure Code (CPT)": "72148",
        "Diagnosis Code (ICD-10)": "M54.5",
        "Clinical Notes": "Low back pain, 8 weeks.",
        "Clinical Attachments": (io.BytesIO(b"%PDF" * 10), "mri-order.pdf"),
        **overrides,
    }
    return submit(client, page, "/prior-auth/new", fields, content_type="multipart/form-data")


def test_form_contract(portal: FlaskClient) -> None:
    page = read(portal.get("/prior-auth/new"))
    assert page.heading == "New Prior Authorization"
    assert list(page.r.labels) == LABELS
    assert page.r.controls[page.id_of("Clinical Notes")]["tag"] == "textarea"
    assert page.r.controls[page.id_of("Clinical Attachments")]["type"] == "file"
    assert page.buttons == ["Submit request"]


@pytest.mark.parametrize(
    ("member", "decision", "details"),
    [
        ("W100000001", "Approved", "Approved as requested."),
        ("W600000006", "Pended", "Under clinical review"),
        ("W700000007", "More Information Needed", "Submit recent imaging results"),
        ("W800000008", "Denied", "Not medically necessary"),
        ("W200000002", "Denied", "Coverage inactive."),
    ],
)
def test_decisions(portal: FlaskClient, member: str, decision: str, details: str) -> None:
    page = request_pa(portal, member)
    assert page.heading == "Prior Authorization"
    table = page.table()
    assert re.fullmatch(r"PA-\d+", table["Reference Number"])
    assert (table["Decision"], table["Details"]) == (decision, details)

    [item] = portal.get("/__sandbox/submissions").get_json()["prior_auths"]
    assert item["reference"] == table["Reference Number"]
    assert item["member_id"] == member
    assert item["decision"] == decision
    assert item["procedure_code"] == "72148"
    assert item["diagnosis_code"] == "M54.5"
    assert item["clinical_notes"] == "Low back pain, 8 weeks."
    assert item["attachments"] == [{"filename": "mri-order.pdf", "size": 40}]


@pytest.mark.parametrize(
    ("member", "patient", "message"),
    [
        ("W300000003", None, "No member found matching the criteria."),
        ("W100000001", ("Jane", "Doe", "12/31/1999"), "Date of birth does not match our records."),
    ],
)
def test_member_not_matched(
    portal: FlaskClient, member: str, patient: tuple[str, str, str] | None, message: str
) -> None:
    page = request_pa(portal, member, patient)
    assert page.heading == "New Prior Authorization"
    assert page.alerts == [message]
    assert portal.get("/__sandbox/submissions").get_json()["prior_auths"] == []


def test_error_member_gives_http_500(portal: FlaskClient) -> None:
    page = request_pa(portal, "W500000005")
    assert page.status == 500
    assert page.heading == "Internal Server Error"


def test_code_validation(portal: FlaskClient) -> None:
    page = request_pa(portal, "W100000001", **{"Provider NPI": "12"})
    assert page.alerts == ["Provider NPI must be 10 digits."]
    page = request_pa(portal, "W100000001", **{"Procedure Code (CPT)": ""})
    assert page.alerts == ["Procedure Code (CPT) must be 5 characters."]
    page = request_pa(portal, "W100000001", **{"Diagnosis Code (ICD-10)": "??"})
    assert page.alerts == ["Diagnosis Code (ICD-10) is not a valid ICD-10 code."]


def test_list_and_search(portal: FlaskClient) -> None:
    page = read(portal.get("/prior-auth"))
    assert page.heading == "Prior Authorizations"
    assert "No prior authorizations found." in page.html
    assert "New Prior Authorization" in page.links
    first = request_pa(portal, "W100000001").table()["Reference Number"]
    second = request_pa(portal, "W600000006").table()["Reference Number"]

    page = read(portal.get("/prior-auth"))
    assert page.rows[0] == ["Reference Number", "Member ID", "Procedure", "Decision", "Submitted"]
    assert [r[0] for r in page.rows[1:]] == [second, first]  # newest first
    assert page.rows[1][1:4] == ["W600000006", "72148", "Pended"]
    assert re.fullmatch(r"\d\d/\d\d/\d{4}", page.rows[1][4])

    page = submit(portal, page, "/prior-auth", {"Member ID": "w100000001"}, method="get")
    assert [r[0] for r in page.rows[1:]] == [first]
    assert read(portal.get("/prior-auth?member_id=W500000005")).status == 500
