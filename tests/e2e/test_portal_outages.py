"""A payer portal down for a while, on the whole stack (2 workers, real browsers): a clinic's
batch waits for it instead of failing, and runs when it is back."""

from __future__ import annotations

import time

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


def test_a_batch_sent_while_the_portal_is_down_completes_when_it_is_back(
    e2e, make_account, receiver
):
    # given the portal is down when a clinic sends its batch of checks
    account = make_account(webhook_url=receiver.url)
    e2e.sandbox_faults(modal="never", down=True)
    batch = [e2e.post_task(account, "check_eligibility", JANE)["id"] for _ in range(4)]
    # when the workers have taken them all
    for task_id in batch:
        waiting = e2e.wait_for_task(account, task_id, {"waiting_for_portal", "failed"}, 60)
        assert waiting["status"] == "waiting_for_portal", waiting["notes"]
    # then none failed, and no webhook went out: they wait for the portal
    time.sleep(2)  # a few probes, each finding the portal still down
    assert receiver.payloads() == []
    # and when the portal is back, every task completes, each with its one webhook
    e2e.sandbox_faults(down=False)
    finals = [e2e.wait_for_task(account, t, {"completed", "failed"}, 120) for t in batch]
    assert [t["status"] for t in finals] == ["completed"] * 4, [t["notes"] for t in finals]
    receiver.wait_for(4)
    assert sorted(p["data"]["id"] for p in receiver.payloads()) == sorted(batch)
