"""Claims, prior authorizations and appeals end to end, including the `verify` path."""

from __future__ import annotations

import pytest

from tests.worker.support import run_builtin, set_faults, submissions

CLAIM = (
    "member_id: W100000001\npatient: Jane Doe\ndob: 1990-01-15\nnpi: 1234567893\n"
    "line 1: 99213, J06.9, 125.00, 2025-03-20\nline 2: 87880, J02.0, $1,035.50, 03/20/2025"
)
INACTIVE_CLAIM = (
    "member_id: W200000002\npatient: John Roe\ndob: 1985-06-30\nnpi: 1234567893\n"
    "cpt: 99213\nicd10: J06.9\ncharge: 80\nservice_date: 2025-03-20"
)
PRIOR_AUTH = (
    "npi: 1234567893\ncpt: 70551\nicd10: G43.909\n"
    "clinical_notes: Persistent migraines for 3 months\n"
)
MEMBERS = {
    "W100000001": "patient: Jane Doe\ndob: 1990-01-15",
    "W600000006": "patient: Maria Garcia\ndob: 1975-03-02",
    "W700000007": "patient: Li Wei\ndob: 1968-11-20",
    "W800000008": "patient: Sam Patel\ndob: 2001-07-04",
}


def prior_auth(member_id: str) -> str:
    return f"member_id: {member_id}\n{MEMBERS[member_id]}\n{PRIOR_AUTH}"


# -- claims --


def test_claim_accepted_with_lines_and_attachments(driver, portal, recorder, task_files) -> None:
    # given a claim with two service lines and a file
    base_url = portal()
    files = task_files("superbill.pdf")

    # when it is submitted
    outcome = run_builtin(driver, "submit_claim", CLAIM, base_url, recorder=recorder, files=files)

    # then it is completed with the confirmation number, after one checkpoint
    assert outcome.status == "completed"
    number = outcome.result["claim"]["confirmation_number"]
    assert number.startswith("CLM-") and number in outcome.notes
    assert recorder.checkpoints == ["Submit the claim"]
    # and the portal received exactly what the task said
    (claim,) = submissions(base_url)["claims"]
    assert claim["reference"] == number and claim["total_billed"] == "1160.50"
    assert [x["cpt_code"] for x in claim["service_lines"]] == ["99213", "87880"]
    assert [a["filename"] for a in claim["attachments"]] == ["superbill.pdf"]


def test_claim_rejected(driver, portal) -> None:
    outcome = run_builtin(driver, "submit_claim", INACTIVE_CLAIM, portal())
    assert outcome.status == "completed_with_issues"
    assert "rejected" in outcome.notes and "Coverage inactive" in outcome.notes


def test_claim_for_unknown_member_stops_before_submitting(driver, portal, recorder) -> None:
    data = INACTIVE_CLAIM.replace("W200000002", "W300000003")
    base_url = portal()
    outcome = run_builtin(driver, "submit_claim", data, base_url, recorder=recorder)
    assert outcome.status == "completed_with_issues" and "not found" in outcome.notes
    assert recorder.checkpoints == [] and submissions(base_url)["claims"] == []


def test_claim_verify_finds_the_earlier_submission(driver, portal) -> None:
    # given a claim that an earlier attempt submitted
    base_url = portal()
    first = run_builtin(driver, "submit_claim", CLAIM, base_url)

    # when a retry runs the verify steps
    outcome = run_builtin(driver, "submit_claim", CLAIM, base_url, verify_only=True)

    # then it reports the claim found, without submitting it again
    assert outcome.status == "completed"
    assert (
        outcome.result["found_claim"]["claim_number"]
        == first.result["claim"]["confirmation_number"]
    )
    assert "not submitted again" in outcome.notes
    assert len(submissions(base_url)["claims"]) == 1


def test_claim_verify_without_a_submission_does_not_resubmit(driver, portal) -> None:
    base_url = portal()
    outcome = run_builtin(driver, "submit_claim", CLAIM, base_url, verify_only=True)
    assert outcome.status == "completed_with_issues"
    assert "not submitted again" in outcome.notes or "not" in outcome.notes
    assert submissions(base_url)["claims"] == []


def test_session_expiry_after_submit_verifies_instead_of_resubmitting(
    driver, portal, recorder
) -> None:
    # given a session that expires right after the claim is posted
    base_url = portal()

    def on_checkpoint(_: str) -> None:
        set_faults(base_url, expire_after_requests=1)

    def on_step(name: str) -> None:
        if name.startswith("Session expired"):
            set_faults(base_url, expire_after_requests=None)

    recorder.on_checkpoint, recorder.on_step = on_checkpoint, on_step

    # when the claim is submitted
    outcome = run_builtin(driver, "submit_claim", CLAIM, base_url, recorder=recorder)

    # then the agent signed in again and found the claim instead of submitting twice
    assert "verifying" in recorder.named("Session expired")[0].message
    assert outcome.status == "completed" and outcome.result.get("found_claim")
    assert len(submissions(base_url)["claims"]) == 1


# -- prior authorizations --


@pytest.mark.parametrize(
    ("member_id", "status", "words"),
    [
        ("W100000001", "completed", ["approved"]),
        ("W600000006", "completed_with_issues", ["pended", "Under clinical review"]),
        (
            "W700000007",
            "completed_with_issues",
            ["more information needed", "Submit recent imaging results"],
        ),
        ("W800000008", "completed_with_issues", ["denied", "Not medically necessary"]),
    ],
    ids=["approved", "pended", "more-info", "denied"],
)
def test_prior_auth_decisions(driver, portal, member_id, status, words) -> None:
    outcome = run_builtin(driver, "submit_prior_authorization", prior_auth(member_id), portal())
    assert outcome.status == status
    reference = outcome.result["pa"]["reference_number"]
    assert reference.startswith("PA-") and reference in outcome.notes
    for word in words:
        assert word in outcome.notes


def test_prior_auth_uploads_attachments(driver, portal, task_files) -> None:
    base_url = portal()
    run_builtin(
        driver,
        "submit_prior_authorization",
        prior_auth("W100000001"),
        base_url,
        files=task_files("mri.pdf", "notes.pdf"),
    )
    (pa,) = submissions(base_url)["prior_auths"]
    assert sorted(a["filename"] for a in pa["attachments"]) == ["mri.pdf", "notes.pdf"]


def test_prior_auth_verify_reads_the_earlier_decision(driver, portal) -> None:
    base_url = portal()
    first = run_builtin(driver, "submit_prior_authorization", prior_auth("W600000006"), base_url)
    outcome = run_builtin(
        driver, "submit_prior_authorization", prior_auth("W600000006"), base_url, verify_only=True
    )
    assert outcome.status == "completed_with_issues" and "pended" in outcome.notes
    assert outcome.result["pa"]["reference_number"] == first.result["pa"]["reference_number"]
    assert len(submissions(base_url)["prior_auths"]) == 1


# -- appeals --

APPEAL = "claim_number: {claim}\nmember_id: W100000001\nreason: Service was medically necessary"


def test_appeal_received_with_letter(driver, portal, task_files) -> None:
    base_url = portal()
    outcome = run_builtin(
        driver,
        "submit_appeal",
        APPEAL.format(claim="CLM-DENY-0003"),
        base_url,
        files=task_files("letter.pdf"),
    )
    assert outcome.status == "completed"
    reference = outcome.result["appeal"]["appeal_reference"]
    assert reference.startswith("APL-") and reference in outcome.notes
    (appeal,) = submissions(base_url)["appeals"]
    assert [a["filename"] for a in appeal["attachments"]] == ["letter.pdf"]


@pytest.mark.parametrize(
    ("claim", "reason"),
    [("CLM-PAID-0001", "not eligible for appeal"), ("CLM-NOPE-9999", "Claim not found")],
)
def test_appeal_not_accepted(driver, portal, claim, reason) -> None:
    outcome = run_builtin(driver, "submit_appeal", APPEAL.format(claim=claim), portal())
    assert outcome.status == "completed_with_issues"
    assert "not accepted" in outcome.notes and reason in outcome.notes


def test_appeal_verify(driver, portal) -> None:
    base_url = portal()
    data = APPEAL.format(claim="CLM-DENY-0003")
    first = run_builtin(driver, "submit_appeal", data, base_url)
    outcome = run_builtin(driver, "submit_appeal", data, base_url, verify_only=True)
    assert outcome.status == "completed"
    assert (
        outcome.result["appeal"]["appeal_reference"] == first.result["appeal"]["appeal_reference"]
    )
    assert len(submissions(base_url)["appeals"]) == 1
