"""The built-in SOPs run unchanged on the sandbox's alternative layout, behind the modal."""

from __future__ import annotations

import pytest

from tests.worker.support import JANE, run_builtin, submissions
from tests.worker.test_submissions import APPEAL, CLAIM, prior_auth


@pytest.mark.parametrize(
    ("task_type", "data", "result_key"),
    [
        ("check_eligibility", JANE, "coverage"),
        ("submit_claim", CLAIM, "claim"),
        ("submit_prior_authorization", prior_auth("W100000001"), "pa"),
        ("submit_appeal", APPEAL.format(claim="CLM-DENY-0003"), "appeal"),
        ("check_claim_status", "claim_number: CLM-PAID-0001", "claim"),
    ],
)
def test_builtin_sop_on_alt_layout(driver, portal, task_type, data, result_key) -> None:
    # given the alt layout (new ids, names, order and wrappers) and the modal after sign-in
    base_url = portal(layout="alt", modal="always")

    # when the unchanged built-in SOP runs
    outcome = run_builtin(driver, task_type, data, base_url)

    # then it completes as on the default layout
    assert outcome.status == "completed", outcome.notes
    assert outcome.result[result_key]
    if task_type == "submit_claim":
        (claim,) = submissions(base_url)["claims"]
        assert [x["charge"] for x in claim["service_lines"]] == ["125.00", "1035.50"]
