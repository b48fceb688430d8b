"""Fair share between accounts at the claim: a clinic's batch does not hold every worker while
another clinic's task waits (real Postgres; the whole path with workers is in tests/e2e)."""

from __future__ import annotations

from shared import tasks as task_queries

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


def _post(client, account) -> int:
    response = client.post(
        "/tasks", json={"type": "check_eligibility", "data": JANE}, headers=account.headers
    )
    assert response.status_code == 200
    return response.get_json()["id"]


def _claim(runtime, task_id: int, worker: str) -> dict | None:
    with runtime.pool.connection() as conn:
        return task_queries.claim_task(conn, task_id, worker, 30)


def _state(runtime, task_id: int) -> tuple[str, bool]:
    with runtime.pool.connection() as conn:
        row = conn.execute(
            "SELECT status, enqueued_at IS NOT NULL AS sent FROM tasks WHERE id = %s", (task_id,)
        ).fetchone()
    return row["status"], row["sent"]


def test_a_busy_accounts_message_goes_to_the_task_of_an_account_with_none_running(
    client, make_account, runtime
):
    # given a clinic with a batch, one of its tasks running, and another clinic's task waiting
    batch_clinic, other_clinic = make_account("Batch"), make_account("Other")
    batch = [_post(client, batch_clinic) for _ in range(3)]
    waiting = _post(client, other_clinic)
    assert _claim(runtime, batch[0], "worker-a")["id"] == batch[0]

    # when the next worker takes the batch's next message
    claimed = _claim(runtime, batch[1], "worker-b")

    # then it runs the other clinic's task, and the batch's task waits for a message again
    assert (claimed["id"], claimed["account_id"]) == (waiting, other_clinic.id)
    assert claimed["yielded"] == batch[1]
    assert _state(runtime, waiting)[0] == "running"
    assert _state(runtime, batch[1]) == ("pending", False)
    # and the other clinic's own message, when it comes, finds nothing to do
    assert _claim(runtime, waiting, "worker-c") is None


def test_with_each_account_running_alike_a_message_claims_its_own_task(
    client, make_account, runtime
):
    # given two clinics with one task running each and more waiting
    first, second = make_account("First"), make_account("Second")
    mine = [_post(client, first) for _ in range(2)]
    theirs = [_post(client, second) for _ in range(2)]
    _claim(runtime, mine[0], "worker-a")
    _claim(runtime, theirs[0], "worker-b")
    # when a worker takes the first clinic's next message, then it runs that task
    claimed = _claim(runtime, mine[1], "worker-c")
    assert (claimed["id"], claimed["yielded"]) == (mine[1], None)
    assert _state(runtime, theirs[1]) == ("dispatching", True)


def test_an_account_alone_claims_in_order_however_many_run(client, account, runtime):
    tasks = [_post(client, account) for _ in range(3)]
    claimed = [_claim(runtime, task_id, f"worker-{i}") for i, task_id in enumerate(tasks)]
    assert [(c["id"], c["yielded"]) for c in claimed] == [(t, None) for t in tasks]


def test_a_canceled_or_running_task_yields_nothing(client, make_account, runtime):
    # given a busy clinic and another's waiting task
    busy, other = make_account("Busy"), make_account("Other")
    first, second = _post(client, busy), _post(client, busy)
    waiting = _post(client, other)
    _claim(runtime, first, "worker-a")
    assert client.post(f"/tasks/{second}/cancel", headers=busy.headers).status_code == 200
    # when the canceled task's message or a second delivery of a running one comes
    # then neither is spent on the other clinic's task: that one keeps its own message
    assert _claim(runtime, second, "worker-b") is None
    assert _claim(runtime, first, "worker-b") is None
    assert _state(runtime, waiting) == ("dispatching", True)
