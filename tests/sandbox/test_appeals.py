"""Appeals: outcomes per test claim, the list and its search."""

from __future__ import annotations

import io
import re

import pytest
from flask.testing import FlaskClient

from .helpers import Page, read, submit


def appeal(
    client: FlaskClient,
    claim: str,
    member: str = "W100000001",
    reason: str = "Service was medically necessary.",
) -> Page:
    page = read(client.get("/appeals/new"))
    return submit(
        client,
        page,
        "/appeals/new",
        {
            "Claim Number": claim,
            "Member ID": member,
            "Reason for Appeal": reason,
            "Appeal Letter": (io.BytesIO(b"letter"), "appeal-letter.pdf"),
        },
        content_type="multipart/form-data",
    )


def test_form_contract(portal: FlaskClient) -> None:
    page = read(portal.get("/appeals/new"))
    assert page.heading == "New Appeal"
    assert list(page.r.labels) == [
        "Claim Number",
        "Member ID",
        "Reason for Appeal",
        "Appeal Letter",
    ]
    assert page.r.controls[page.id_of("Reason for Appeal")]["tag"] == "textarea"
    assert page.r.controls[page.id_of("Appeal Letter")]["type"] == "file"
    assert page.buttons == ["Submit appeal"]


def test_denied_claim_appeal_is_received(portal: FlaskClient) -> None:
    page = appeal(portal, "clm-deny-0003")
    assert page.heading == "Appeal received"
    ref = page.table()["Appeal Reference"]
    assert re.fullmatch(r"APL-\d+", ref)
    [item] = portal.get("/__sandbox/submissions").get_json()["appeals"]
    assert item == {
        **item,
        "reference": ref,
        "claim_number": "CLM-DENY-0003",
        "member_id": "W100000001",
        "status": "Received",
        "reason_for_appeal": "Service was medically necessary.",
        "attachments": [{"filename": "appeal-letter.pdf", "size": 6}],
    }


@pytest.mark.parametrize(
    ("claim", "member", "message"),
    [
        ("CLM-PAID-0001", "W100000001", "Claim is not eligible for appeal."),
        ("CLM-PROC-0002", "W100000001", "Claim is not eligible for appeal."),
        ("CLM-NOPE-0009", "W100000001", "Claim not found."),
        ("CLM-DENY-0003", "W200000002", "Claim not found."),
    ],
)
def test_appeal_not_accepted(portal: FlaskClient, claim: str, member: str, message: str) -> None:
    page = appeal(portal, claim, member)
    assert page.heading == "Appeal not accepted"
    assert page.alerts == [message]
    [item] = portal.get("/__sandbox/submissions").get_json()["appeals"]
    assert (item["status"], item["reference"], item["rejection_reason"]) == (
        "Not accepted",
        None,
        message,
    )


def test_required_fields(portal: FlaskClient) -> None:
    page = appeal(portal, "CLM-DENY-0003", reason="")
    assert page.heading == "New Appeal"
    assert page.alerts == ["Enter Claim Number, Member ID and Reason for Appeal."]


def test_error_member_gives_http_500(portal: FlaskClient) -> None:
    page = appeal(portal, "CLM-DENY-0003", "W500000005")
    assert page.status == 500
    assert page.heading == "Internal Server Error"


def test_list_and_search(portal: FlaskClient) -> None:
    page = read(portal.get("/appeals"))
    assert page.heading == "Appeals"
    assert "No appeals found." in page.html
    assert "New Appeal" in page.links
    ref = appeal(portal, "CLM-DENY-0003").table()["Appeal Reference"]
    appeal(portal, "CLM-PAID-0001")  # not accepted: not listed

    page = read(portal.get("/appeals"))
    assert page.rows[0] == ["Appeal Reference", "Claim Number", "Status", "Submitted"]
    assert page.rows[1][:3] == [ref, "CLM-DENY-0003", "Received"]
    assert len(page.rows) == 2
    page = submit(portal, page, "/appeals", {"Claim Number": "CLM-PAID-0001"}, method="get")
    assert len(page.rows) == 0
    page = submit(portal, page, "/appeals", {"Claim Number": "CLM-DENY-0003"}, method="get")
    assert page.rows[1][0] == ref
