"""Both sandbox portals through the same engine: the first portal's built-in SOP, and Care Hub
(a single-page app: shadow-DOM fields, a custom dropdown, results in a frame, an email and
passcode sign-in) with the example profile and SOPs of docs/examples/care_hub, written from the
tutorial. Care Hub's profile is stored for the account and read back as the worker's runner reads
it, so its sign-in, its sign-in page rule and its error pages are the profile's: the SOPs hold
only their tasks' steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from shared.accounts import Credentials
from shared.inputs import parse_task_data
from shared.portals import active_profile, put_profile_version
from shared.sop.loader import load_sop
from shared.sop.model import LoginStep, flatten
from shared.sop.profile import Profile
from tests.worker.support import JANE, ListRecorder, run_builtin
from worker.agent.interpreter import Outcome, run_sop

pytestmark = pytest.mark.browser

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "care_hub"
# Care Hub has no password: the email, then the passcode (here, the TOTP code of the secret).
CARE = Credentials("care@sandbox", "", "GEZDGNBVGY3TQOJQ")


@pytest.fixture
def hub_profile(runtime, account) -> Profile:
    """Care Hub's profile as the runner gets it: the account's stored version, read back."""
    with runtime.pool.connection() as conn:
        put_profile_version(
            conn, account.id, "care_hub", (EXAMPLES / "profile.yaml").read_text(), max_versions=100
        )
        stored = active_profile(conn, account.id, "care_hub")
    assert stored is not None and stored.version == 1
    return stored.profile


def care_hub(driver, profile: Profile, base_url: str, sop: str, data: str, **kwargs) -> Outcome:
    document = load_sop((EXAMPLES / sop).read_text())
    # The SOP holds only its task: the profile signs in.
    assert not any(isinstance(step, LoginStep) for step in flatten(document.steps))
    return run_sop(
        driver,
        document,
        parse_task_data(data),
        base_url=f"{base_url}/hub",
        credentials=CARE,
        profile=profile,
        **kwargs,
    )


def test_the_first_portal_and_care_hub_run_on_one_engine(driver, portal, hub_profile) -> None:
    base_url = portal()
    first = run_builtin(driver, "check_eligibility", JANE, base_url)
    assert first.status == "completed", first.notes

    recorder = ListRecorder()
    coverage = care_hub(
        driver, hub_profile, base_url, "check_eligibility.yaml", JANE, recorder=recorder
    )
    assert (coverage.status, coverage.notes) == (
        "completed",
        "Coverage active for Jane Doe (W100000001): plan Sandbox Gold PPO, copay $25.00.",
    )
    # The profile signed in (the SOP has no login step), with the TOTP code for the passcode.
    assert recorder.steps[0].name == "Sign in to Care Hub"
    assert "signed in with a TOTP code" in recorder.steps[0].message

    # Signed in already (the same browser), the next task goes straight to its screen.
    recorder = ListRecorder()
    denied = care_hub(
        driver,
        hub_profile,
        base_url,
        "check_claim_status.yaml",
        "claim_number: clm-deny-0003",
        recorder=recorder,
    )
    assert (denied.status, denied.notes) == (
        "completed_with_issues",
        "Claim CLM-DENY-0003 was denied: Service not covered (billed $310.00).",
    )
    assert recorder.steps[0].message == "already signed in"


def test_care_hub_messages_end_the_task_through_end_if(driver, portal, hub_profile) -> None:
    base_url = portal()
    missing = care_hub(
        driver,
        hub_profile,
        base_url,
        "check_eligibility.yaml",
        "member_id: W300000003\npatient: Pat Nobody\ndob: 2000-01-01",
    )
    assert (missing.status, missing.notes) == (
        "completed_with_issues",
        "Care Hub shows no coverage for W300000003 (Pat Nobody): "
        "No member found matching the criteria.",
    )
    dental = care_hub(
        driver, hub_profile, base_url, "check_eligibility.yaml", JANE + "\ncoverage_type: Dental"
    )
    assert (dental.status, dental.notes) == (
        "completed_with_issues",
        "Dental coverage not covered for Jane Doe (W100000001).",
    )


def test_care_hub_session_that_ends_mid_task_signs_in_again(driver, portal, hub_profile) -> None:
    base_url = portal()
    recorder = ListRecorder()

    def expire_once(name: str) -> None:
        if 'Fill field "Claim number"' in name and not recorder.named("Session expired"):
            requests.post(f"{base_url}/__sandbox/hub/expire", timeout=5).raise_for_status()

    recorder.on_step = expire_once
    paid = care_hub(
        driver,
        hub_profile,
        base_url,
        "check_claim_status.yaml",
        "claim_number: CLM-PAID-0001",
        recorder=recorder,
    )
    assert (paid.status, paid.notes) == (
        "completed",
        "Claim CLM-PAID-0001 is Paid: billed $120.00, paid $96.00.",
    )
    assert recorder.named("Session expired"), recorder.text()
