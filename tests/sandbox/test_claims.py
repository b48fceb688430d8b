"""The five-step New Claim wizard and its outcomes."""

from __future__ import annotations

import io
import re
from typing import Any

from flask.testing import FlaskClient

from .helpers import Page, read, submit

JANE = {
    "Member ID": "W100000001",
    "Patient First Name": "Jane",
    "Patient Last Name": "Doe",
    "Date of Birth": "01/15/1990",
}
JOHN = {
    "Member ID": "W200000002",
    "Patient First Name": "John",
    "Patient Last Name": "Roe",
    "Date of Birth": "06/30/1985",
}
LINE_1 = {
    "Service Date 1": "03/01/2025",
    "CPT Code 1": "99213",
    "ICD-10 Code 1": "J20.9",
    "Charge 1": "125.00",
}


def step(client: FlaskClient, n: int, by_label: dict[str, Any], **kw: Any) -> Page:
    page = read(client.get(f"/claims/new/step/{n}"))
    return submit(client, page, f"/claims/new/step/{n}", by_label, **kw)


def to_review(client: FlaskClient, patient: dict[str, str]) -> Page:
    client.get("/claims/new")
    step(client, 1, patient)
    step(client, 2, {"Provider NPI": "1234567890"})
    page = read(client.get("/claims/new/step/3"))
    # Line 2 is what "Add service line" reveals in the browser: same labels, number 2.
    data = page.form(LINE_1)
    data.update(
        {
            k.replace("_1", "_2"): v
            for k, v in page.form(
                {
                    "Service Date 1": "3/2/2025",
                    "CPT Code 1": "87880",
                    "ICD-10 Code 1": "j02.0",
                    "Charge 1": "$40",
                }
            ).items()
        }
    )
    page = read(client.post("/claims/new/step/3", data=data, follow_redirects=True))
    assert page.heading == "New Claim — Step 4 of 5: Attachments"
    return step(
        client,
        4,
        {
            "Attachments": [
                (io.BytesIO(b"x" * 120), "superbill.pdf"),
                (io.BytesIO(b"y" * 30), "notes.txt"),
            ]
        },
        content_type="multipart/form-data",
    )


def test_step_headings_and_buttons(portal: FlaskClient) -> None:
    page = read(portal.get("/claims/new"))
    assert page.heading == "New Claim — Step 1 of 5: Patient"
    assert list(page.r.labels) == list(JANE)
    assert page.buttons == ["Next"]
    page = step(portal, 1, JANE)
    assert page.heading == "New Claim — Step 2 of 5: Provider"
    assert list(page.r.labels) == ["Provider NPI"]
    page = step(portal, 2, {"Provider NPI": "1234567890"})
    assert page.heading == "New Claim — Step 3 of 5: Service Lines"
    assert list(page.r.labels) == list(LINE_1)  # the line template is not shown
    assert page.buttons == ["Add service line", "Next"]
    assert "Service Date __N__" in page.html  # what the script clones
    page = step(portal, 3, LINE_1)
    assert page.heading == "New Claim — Step 4 of 5: Attachments"
    assert page.r.controls[page.id_of("Attachments")]["type"] == "file"
    assert "multiple" in page.r.controls[page.id_of("Attachments")]
    page = step(portal, 4, {})
    assert page.heading == "New Claim — Step 5 of 5: Review"
    assert page.buttons == ["Submit claim"]


def test_accepted_claim(portal: FlaskClient) -> None:
    page = to_review(portal, JANE)
    assert page.heading == "New Claim — Step 5 of 5: Review"
    assert page.table()["Total Billed"] == "$165.00"
    assert "superbill.pdf" in page.html
    page = read(portal.post("/claims/new/step/5", follow_redirects=True))
    assert page.heading == "Claim submitted"
    number = page.table()["Confirmation Number"]
    assert re.fullmatch(r"CLM-\d+", number)

    [claim] = portal.get("/__sandbox/submissions").get_json()["claims"]
    assert claim["reference"] == number
    assert claim["status"] == "Received"
    assert claim["member_id"] == "W100000001"
    assert claim["provider_npi"] == "1234567890"
    assert claim["payer"] == "sandbox-health"
    assert claim["service_lines"] == [
        {
            "service_date": "03/01/2025",
            "cpt_code": "99213",
            "icd10_code": "J20.9",
            "charge": "125.00",
        },
        {
            "service_date": "03/02/2025",
            "cpt_code": "87880",
            "icd10_code": "J02.0",
            "charge": "40.00",
        },
    ]
    assert claim["attachments"] == [
        {"filename": "superbill.pdf", "size": 120},
        {"filename": "notes.txt", "size": 30},
    ]

    # It shows in claim status as Received.
    status = read(portal.get("/claim-status", query_string={"claim_number": number}))
    assert status.rows[1][:4] == [number, "W100000001", "03/01/2025", "Received"]
    # Submitting again (e.g. browser back) does not make a second claim.
    assert portal.post("/claims/new/step/5").location == "/claims/new"


def test_inactive_member_claim_is_rejected(portal: FlaskClient) -> None:
    to_review(portal, JOHN)
    page = read(portal.post("/claims/new/step/5", follow_redirects=True))
    assert page.heading == "Claim rejected"
    assert page.alerts == ["Coverage inactive on the date of service."]
    [claim] = portal.get("/__sandbox/submissions").get_json()["claims"]
    assert claim["status"] == "Rejected"
    assert claim["reference"] is None
    assert claim["rejection_reason"] == "Coverage inactive on the date of service."


def test_unknown_member_stops_at_step_1(portal: FlaskClient) -> None:
    portal.get("/claims/new")
    page = step(portal, 1, {**JANE, "Member ID": "W300000003"})
    assert page.heading == "New Claim — Step 1 of 5: Patient"
    assert page.alerts == ["No member found matching the criteria."]
    page = step(portal, 1, {**JANE, "Date of Birth": "02/02/1990"})
    assert page.alerts == ["Date of birth does not match our records."]


def test_error_member_gives_http_500(portal: FlaskClient) -> None:
    portal.get("/claims/new")
    page = step(portal, 1, {**JANE, "Member ID": "W500000005"})
    assert page.status == 500
    assert page.heading == "Internal Server Error"


def test_validation_of_provider_and_lines(portal: FlaskClient) -> None:
    portal.get("/claims/new")
    step(portal, 1, JANE)
    page = step(portal, 2, {"Provider NPI": "12345"})
    assert page.alerts == ["Provider NPI must be 10 digits."]
    step(portal, 2, {"Provider NPI": "1234567890"})
    for change, message in [
        ({"Charge 1": ""}, "Complete every field of service line 1."),
        ({"Service Date 1": "2025/03/01"}, "Enter Service Date 1 as MM/DD/YYYY."),
        ({"CPT Code 1": "99"}, "CPT Code 1 must be 5 characters."),
        ({"ICD-10 Code 1": "123"}, "ICD-10 Code 1 is not a valid ICD-10 code."),
        ({"Charge 1": "lots"}, "Charge 1 must be an amount such as 125.00."),
    ]:
        page = step(portal, 3, {**LINE_1, **change})
        assert page.heading == "New Claim — Step 3 of 5: Service Lines"
        assert page.alerts == [message]


def test_steps_cannot_be_skipped(portal: FlaskClient) -> None:
    portal.get("/claims/new")
    assert portal.get("/claims/new/step/3").location == "/claims/new"
    assert portal.post("/claims/new/step/5").location == "/claims/new"
    assert portal.get("/claims/new/step/9").status_code == 404
