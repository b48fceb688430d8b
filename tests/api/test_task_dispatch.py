"""After the commit, sending the task's message is best effort: the 200 stands either way."""

from __future__ import annotations

import pytest

from shared.celery import create_celery
from shared.runtime import Runtime
from tests.conftest import free_port

ELIGIBILITY = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"


def _row(runtime: Runtime, task_id: int) -> dict:
    with runtime.pool.connection() as conn:
        return conn.execute(
            "SELECT status, enqueued_at FROM tasks WHERE id = %s", (task_id,)
        ).fetchone()


@pytest.mark.faults
def test_an_unreachable_queue_leaves_the_task_pending_for_the_scheduler(runtime, make_account):
    from api import create_app

    # given an API whose broker is a port nobody listens on
    account = make_account()
    broken = Runtime(
        settings=runtime.settings,
        database_url=runtime.database_url,
        pool=runtime.pool,
        fernet=runtime.fernet,
        _celery=create_celery(runtime.settings, f"redis://127.0.0.1:{free_port()}/0"),
    )
    client = create_app(runtime=broken).test_client()
    # when a task is created
    response = client.post(
        "/tasks", json={"type": "check_eligibility", "data": ELIGIBILITY}, headers=account.headers
    )
    # then the client still gets its task, and the row waits for the scheduler's next tick
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "pending"
    row = _row(runtime, response.get_json()["id"])
    assert row["status"] == "pending" and row["enqueued_at"] is None


def test_a_sent_task_is_recorded_as_dispatching(client, account, runtime):
    task = client.post(
        "/tasks", json={"type": "check_eligibility", "data": ELIGIBILITY}, headers=account.headers
    ).get_json()
    assert task["status"] == "pending"  # the status every task is created in
    row = _row(runtime, task["id"])
    assert row["status"] == "dispatching" and row["enqueued_at"] is not None
