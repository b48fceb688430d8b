"""A database error right after POST /tasks commits: the client still gets its 200, once."""

from __future__ import annotations

import psycopg
import pytest
import redis

pytestmark = pytest.mark.faults

JANE = "member_id: W100000001\npatient: Jane Doe\nDOB: 1990-01-15"

# The first write after the commit marks the task dispatched. This trigger makes the server end
# that very session as it does it, as a restart or a failover would.
KILL_ON_DISPATCH = """
CREATE FUNCTION test_kill_on_dispatch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'dispatching' AND OLD.status = 'pending' THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_kill_on_dispatch BEFORE UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION test_kill_on_dispatch();
"""


@pytest.fixture
def session_killed_after_commit(runtime):
    with psycopg.connect(runtime.database_url, autocommit=True) as conn:
        conn.execute(KILL_ON_DISPATCH)
    yield
    with psycopg.connect(runtime.database_url, autocommit=True) as conn:
        conn.execute("DROP TRIGGER test_kill_on_dispatch ON tasks")
        conn.execute("DROP FUNCTION test_kill_on_dispatch()")


def test_a_connection_killed_after_the_commit_still_answers_200_and_one_task(
    client, account, runtime, session_killed_after_commit
):
    # given a database that drops the API's connection on the first write after the commit
    # when a client creates a task (no Idempotency-Key: a retry would create another)
    response = client.post(
        "/tasks", json={"type": "check_eligibility", "data": JANE}, headers=account.headers
    )

    # then it gets the created task, not a 500 inviting it to try again
    assert response.status_code == 200, response.get_json()
    task = response.get_json()
    assert task["status"] == "pending"
    # and exactly one task exists, readable through the same pool (the dead session was dropped)
    listed = client.get("/tasks", headers=account.headers)
    assert listed.status_code == 200
    assert [t["id"] for t in listed.get_json()["data"]] == [task["id"]]
    with runtime.pool.connection() as conn:
        count = conn.execute(
            "SELECT count(*) AS n FROM tasks WHERE account_id = %s", (account.id,)
        ).fetchone()["n"]
    assert count == 1
    # and the message did go out: the scheduler's re-send is only the fallback
    assert redis.Redis.from_url(runtime.settings.redis_url).llen("agent") == 1
