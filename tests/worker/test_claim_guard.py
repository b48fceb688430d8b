"""A worker acts on a task only while it holds the claim: never a submit after losing it."""

from __future__ import annotations

import pytest

from shared import tasks as task_queries
from worker.errors import ClaimLost
from worker.runner import DbRecorder

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


def _claimed_task(client, account, runtime, worker: str) -> dict:
    response = client.post(
        "/tasks", json={"type": "check_eligibility", "data": JANE}, headers=account.headers
    )
    assert response.status_code == 200
    with runtime.pool.connection() as conn:
        claimed = task_queries.claim_task(conn, response.get_json()["id"], worker, 30)
    assert claimed is not None
    return claimed


def _irreversible_at(runtime, task_id: int):
    with runtime.pool.connection() as conn:
        return conn.execute(
            "SELECT irreversible_at FROM tasks WHERE id = %s", (task_id,)
        ).fetchone()["irreversible_at"]


def test_the_checkpoint_before_a_submit_passes_while_the_claim_is_live(client, account, runtime):
    claimed = _claimed_task(client, account, runtime, "worker-a")
    recorder = DbRecorder(runtime, claimed["id"], account.id, 1, "worker-a")
    recorder.checkpoint("Submit claim")
    assert recorder.irreversible_passed
    assert _irreversible_at(runtime, claimed["id"]) is not None


def test_a_worker_whose_lease_ran_out_may_not_submit(client, account, runtime):
    # given a worker whose lease expired (a database outage kept it from renewing it)
    claimed = _claimed_task(client, account, runtime, "worker-a")
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE tasks SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
            (claimed["id"],),
        )
    recorder = DbRecorder(runtime, claimed["id"], account.id, 1, "worker-a")
    # when it reaches a submit step, then it stops before the click, and records nothing
    with pytest.raises(ClaimLost):
        recorder.checkpoint("Submit claim")
    assert not recorder.irreversible_passed
    assert _irreversible_at(runtime, claimed["id"]) is None


def test_a_worker_that_was_taken_over_may_not_submit(client, account, runtime):
    claimed = _claimed_task(client, account, runtime, "worker-b")
    stale = DbRecorder(runtime, claimed["id"], account.id, 1, "worker-a")
    with pytest.raises(ClaimLost):
        stale.checkpoint("Submit claim")
    assert _irreversible_at(runtime, claimed["id"]) is None
