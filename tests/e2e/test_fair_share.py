"""Fair share on the whole stack: one clinic's batch does not make another clinic's task wait
for the whole batch (2 workers, real queue, real browsers)."""

from __future__ import annotations

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


def test_another_clinics_task_starts_at_a_free_worker_not_after_the_batch(
    e2e, runtime, make_account
):
    # given a clinic that sends a batch of 8 checks, and then another clinic that sends one
    e2e.sandbox_faults(modal="never")
    batch_clinic, other_clinic = make_account("Batch clinic"), make_account("Other clinic")
    batch = [e2e.post_task(batch_clinic, "check_eligibility", JANE)["id"] for _ in range(8)]
    single = e2e.post_task(other_clinic, "check_eligibility", JANE)["id"]

    # when the two workers have run them all
    finals = {task_id: e2e.wait_for_task(batch_clinic, task_id, {"completed", "failed"},
                                         timeout_s=240) for task_id in batch}  # fmt: skip
    final = e2e.wait_for_task(other_clinic, single, {"completed", "failed"}, timeout_s=60)

    # then every task completed, the batch's that gave their turn away included
    assert final["status"] == "completed", final["notes"]
    assert {t["status"] for t in finals.values()} == {"completed"}, finals
    # and the other clinic's task started at the first worker that came free, not after the
    # batch: only the tasks the two workers had taken before it was sent started earlier
    with runtime.pool.connection() as conn:
        rows = conn.execute("SELECT id, started_at FROM tasks").fetchall()
    started = {row["id"]: row["started_at"] for row in rows}
    earlier = [task_id for task_id in batch if started[task_id] < started[single]]
    assert len(earlier) <= 3, (earlier, started)
