"""check_claim_status end to end: the slow, paginated search page."""

from __future__ import annotations

import pytest

from tests.worker.support import run_builtin


@pytest.mark.parametrize(
    ("claim", "status", "words"),
    [
        ("CLM-PAID-0001", "completed", ["Paid", "$120.00", "$96.00"]),
        ("CLM-PROC-0002", "completed", ["In Process"]),
        ("CLM-DENY-0003", "completed_with_issues", ["Denied", "Service not covered"]),
    ],
    ids=["paid", "in-process", "denied"],
)
def test_claim_by_number(driver, portal, claim, status, words) -> None:
    outcome = run_builtin(driver, "check_claim_status", f"claim_number: {claim}", portal())
    assert outcome.status == status
    for word in words:
        assert word in outcome.notes


def test_member_claims_over_every_page(driver, portal) -> None:
    # given a member with 23 claims, 10 a page
    outcome = run_builtin(driver, "check_claim_status", "member_id: W100000001", portal())

    # then all three pages were read
    assert outcome.status == "completed"
    assert len(outcome.result["claims"]) == 23
    assert "23 claim(s)" in outcome.notes and "CLM-DENY-0003" in outcome.notes


def test_no_claims_found(driver, portal) -> None:
    outcome = run_builtin(driver, "check_claim_status", "claim_number: CLM-NONE-0000", portal())
    assert outcome.status == "completed_with_issues" and "No claims found" in outcome.notes


def test_alt_layout(driver, portal) -> None:
    outcome = run_builtin(
        driver,
        "check_claim_status",
        "claim_number: CLM-PAID-0001",
        portal(layout="alt", modal="always"),
    )
    assert outcome.status == "completed" and "Paid" in outcome.notes
