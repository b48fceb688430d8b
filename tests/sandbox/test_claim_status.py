"""Claim Status: the test claims, pagination, the slow page."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from .helpers import Page, read, sign_in, submit

COLUMNS = ["Claim Number", "Member ID", "Service Date", "Status", "Billed", "Paid", "Details"]


def search(client: FlaskClient, **by_label: str) -> Page:
    page = read(client.get("/claim-status"))
    return submit(client, page, "/claim-status", by_label, method="get")


def test_form_contract(portal: FlaskClient) -> None:
    page = read(portal.get("/claim-status"))
    assert page.heading == "Claim Status"
    assert list(page.r.labels) == ["Claim Number", "Member ID"]
    assert page.buttons == ["Search"]
    assert page.rows == [] and page.alerts == []


@pytest.mark.parametrize(
    ("claim", "row"),
    [
        (
            "CLM-PAID-0001",
            ["W100000001", "03/10/2025", "Paid", "$120.00", "$96.00", "Payment issued"],
        ),
        (
            "clm-proc-0002",
            ["W100000001", "02/20/2025", "In Process", "$250.00", "$0.00", "Pending review"],
        ),
        (
            "CLM-DENY-0003",
            ["W100000001", "02/03/2025", "Denied", "$310.00", "$0.00", "Service not covered"],
        ),
    ],
)
def test_test_claims(portal: FlaskClient, claim: str, row: list[str]) -> None:
    page = search(portal, **{"Claim Number": claim, "Member ID": ""})
    assert page.rows == [COLUMNS, [claim.upper(), *row]]
    assert "Page 1 of 1" in page.html


def test_member_history_is_paginated(portal: FlaskClient) -> None:
    page = search(portal, **{"Member ID": "W100000001"})
    assert page.rows[0] == COLUMNS
    assert len(page.rows) == 11
    assert [r[0] for r in page.rows[1:4]] == ["CLM-PAID-0001", "CLM-PROC-0002", "CLM-DENY-0003"]
    assert "Page 1 of 3" in page.html
    assert "Previous page" not in page.links

    seen = {r[0] for r in page.rows[1:]}
    page = read(portal.get(page.links["Next page"]))
    assert "Page 2 of 3" in page.html
    assert "Previous page" in page.links
    seen |= {r[0] for r in page.rows[1:]}
    page = read(portal.get(page.links["Next page"]))
    assert "Page 3 of 3" in page.html
    assert "Next page" not in page.links
    assert len(page.rows) == 4
    seen |= {r[0] for r in page.rows[1:]}
    assert len(seen) == 23
    page = read(portal.get(page.links["Previous page"]))
    assert "Page 2 of 3" in page.html


@pytest.mark.parametrize(
    "by_label",
    [
        {"Claim Number": "CLM-NOPE-0000"},
        {"Member ID": "W300000003"},
        {"Claim Number": "CLM-PAID-0001", "Member ID": "W200000002"},
    ],
)
def test_no_claims_found(portal: FlaskClient, by_label: dict[str, str]) -> None:
    page = search(portal, **by_label)
    assert page.alerts == ["No claims found."]
    assert page.rows == []


def test_empty_search(portal: FlaskClient) -> None:
    page = search(portal, **{"Claim Number": "", "Member ID": ""})
    assert page.alerts == ["Enter a Claim Number or Member ID."]


def test_error_member_gives_http_500(portal: FlaskClient) -> None:
    page = search(portal, **{"Member ID": "W500000005"})
    assert page.status == 500
    assert page.heading == "Internal Server Error"


def test_search_is_slow(make_app: Callable[..., Flask]) -> None:
    # A wide gap between slow and quick, so a loaded machine cannot blur the two.
    client = make_app(slow_page_s=3.0).test_client()
    sign_in(client)
    start = time.monotonic()
    client.get("/claim-status")
    assert time.monotonic() - start < 2.0  # the empty form is quick
    start = time.monotonic()
    search(client, **{"Claim Number": "CLM-PAID-0001"})
    assert time.monotonic() - start >= 3.0
