"""Fair share between accounts at the claim: a clinic's batch does not hold every worker while
another clinic's task waits (real Postgres; the whole path with workers is in tests/e2e)."""

from __future__ import annotations

import pytest

from shared import accounts
from shared import tasks as task_queries
from tests.plans import PLAN_MODES, nodes_on, rows_read

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


# Weights: an account's share (set by the operator) divides its running count.


def _share(runtime, account, share: int) -> None:
    with runtime.pool.connection() as conn:
        assert accounts.set_share(conn, account.id, share)


def _running(client, runtime, account, n: int) -> None:
    """``n`` of the account's tasks running, each claimed by its own message while no other
    account has a task waiting (so none of them gives its turn away)."""
    for _ in range(n):
        task_id = _post(client, account)
        claimed = _claim(runtime, task_id, f"worker-{account.id}-{task_id}")
        assert (claimed["id"], claimed["yielded"]) == (task_id, None)


def _clinics(client, make_account, runtime, running: dict[str, int], order: tuple[str, ...]):
    """Clinics by name, ``big`` of share 2 and the others of share 1, with ``running[name]``
    tasks running each, then one task each waiting, posted in ``order``: the clinics, and each
    one's waiting task."""
    clinics = {name: make_account(name.title()) for name in running}
    if "big" in clinics:
        _share(runtime, clinics["big"], 2)
    for name, n in running.items():
        _running(client, runtime, clinics[name], n)
    return clinics, {name: _post(client, clinics[name]) for name in order}


def test_an_account_of_share_2_keeps_its_message_with_twice_as_many_running(
    client, make_account, runtime
):
    # given a clinic of share 2 with two running and a clinic of share 1 with one, both waiting
    _, waiting = _clinics(client, make_account, runtime, {"big": 2, "small": 1}, ("big", "small"))
    big_next, small_next = waiting["big"], waiting["small"]
    # when a worker takes the big clinic's next message, then it runs that task: 2/2 is not
    # busier than 1/1 (unweighted, 2 running against 1 gave the turn away)
    claimed = _claim(runtime, big_next, "worker-x")
    assert (claimed["id"], claimed["yielded"]) == (big_next, None)
    assert _state(runtime, small_next) == ("dispatching", True)


def test_an_account_of_share_1_gives_its_turn_to_one_of_share_2_running_alike(
    client, make_account, runtime
):
    # given a clinic of share 2 and one of share 1, one task running each, both waiting
    clinics, waiting = _clinics(
        client, make_account, runtime, {"big": 1, "small": 1}, ("big", "small")
    )
    big_next, small_next = waiting["big"], waiting["small"]
    # when a worker takes the small clinic's next message, then it runs the big clinic's task:
    # 1/1 is busier than 1/2 (unweighted, one running each, it claimed its own)
    claimed = _claim(runtime, small_next, "worker-x")
    assert (claimed["id"], claimed["yielded"]) == (big_next, small_next)
    assert _state(runtime, small_next) == ("pending", False)
    # and the big clinic's next one, with 2/2 against 1/1, keeps its own message again
    again = _post(client, clinics["big"])
    assert _claim(runtime, again, "worker-y")["id"] == again


def test_the_turn_goes_to_the_account_least_busy_for_its_share(client, make_account, runtime):
    # given a busy clinic (4 running), one of share 2 with 3 running, one of share 1 with 2,
    # each waiting, the share-2 clinic's task the newest
    _, waiting = _clinics(
        client, make_account, runtime, {"busy": 4, "big": 3, "small": 2}, ("busy", "small", "big")
    )
    # when a worker takes the busy clinic's message, then it runs the share-2 clinic's task:
    # 3/2 is less busy than 2/1 (unweighted, 2 running is fewer than 3)
    claimed = _claim(runtime, waiting["busy"], "worker-x")
    assert (claimed["id"], claimed["yielded"]) == (waiting["big"], waiting["busy"])
    assert _state(runtime, waiting["small"]) == ("dispatching", True)


def test_equally_busy_for_their_shares_the_older_task_goes_first(client, make_account, runtime):
    # given a busy clinic (3 running), one of share 2 with 2 running and one of share 1 with 1,
    # the share-2 clinic's task the older
    _, waiting = _clinics(
        client, make_account, runtime, {"busy": 3, "big": 2, "small": 1}, ("busy", "big", "small")
    )
    # when a worker takes the busy clinic's message, then 2/2 and 1/1 tie and the older task
    # runs, the share-2 clinic's (unweighted, 1 running is fewer than 2)
    claimed = _claim(runtime, waiting["busy"], "worker-x")
    assert (claimed["id"], claimed["yielded"]) == (waiting["big"], waiting["busy"])
    assert _state(runtime, waiting["small"]) == ("dispatching", True)


def _backlog(runtime, task_id: int, count: int) -> None:
    """``count`` more waiting tasks like ``task_id``, of its account, written at once."""
    with runtime.pool.connection() as conn:
        columns = [
            row["column_name"]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'tasks' AND column_name NOT IN ('id', 'task_number')"
            ).fetchall()
        ]
        listed = ", ".join(columns)
        conn.execute(
            f"INSERT INTO tasks ({listed}, task_number)"  # noqa: S608 - the table's own columns
            f" SELECT {listed}, 1000000 + g FROM tasks, generate_series(1, %s) AS g"
            " WHERE id = %s",
            (count, task_id),
        )


@pytest.mark.parametrize("mode", PLAN_MODES)
def test_the_weighted_choice_reads_one_probe_per_waiting_account_not_their_backlogs(
    client, make_account, runtime, mode
):
    # given a clinic of share 2 with one running and 20,000 waiting, a busy clinic with two
    # running and one of share 1 with one running, each with a task waiting
    _, waiting = _clinics(
        client, make_account, runtime, {"busy": 2, "big": 1, "small": 1}, ("busy", "big", "small")
    )
    _backlog(runtime, waiting["big"], 20_000)
    # when the busy clinic's message is claimed, planned for these values or for any
    sql, params = task_queries.claim_task_query(waiting["busy"], "worker-x", 30)
    with runtime.pool.connection() as conn:
        on_tasks = nodes_on(conn, "tasks", sql, params, mode)
    # then it read a few rows of tasks, not the big clinic's backlog, and ran the oldest task
    # of the clinic least busy for its share (1/2 against 1/1)
    assert on_tasks and rows_read(on_tasks) < 50
    assert _state(runtime, waiting["big"])[0] == "running"
    assert _state(runtime, waiting["small"]) == ("dispatching", True)
