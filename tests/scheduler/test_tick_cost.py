"""The scheduler's look at waiting tasks, each tick, reads the waiting groups, not every waiter:
thousands of tasks waiting for a session or for their portal cost a tick what a few do."""

from __future__ import annotations

import psycopg

from shared import outages
from shared import tasks as task_queries

ELIGIBILITY = {
    "type": "check_eligibility",
    "data": "member_id: W1\npatient: Jane Doe\nDOB: 1990-01-15",
}


def _wait(runtime, account, count: int, status: str, *, portals: int = 3) -> None:
    """``count`` tasks of the account in ``status``, on ``portals`` portals, waiting since now;
    and one running task on each portal, so no group is stranded."""
    with runtime.pool.connection() as conn:
        conn.execute(
            """
            INSERT INTO tasks (account_id, task_number, type, status, title, instructions, sop_id,
                               data, profile_portal, portal_down_since)
            SELECT %(account)s, 1000 + g + (SELECT count(*) FROM tasks), 'check_eligibility',
                   CASE WHEN g <= %(portals)s THEN 'running' ELSE %(status)s END,
                   't', 'i', (SELECT min(id) FROM sops), 'x', 'portal-' || (g %% %(portals)s),
                   now()
              FROM generate_series(1, %(count)s + %(portals)s) AS g
            """,
            {"account": account.id, "count": count, "status": status, "portals": portals},
        )
        conn.execute("ANALYZE tasks")


_READ = """
    SELECT (SELECT coalesce(sum(pg_stat_get_xact_tuples_returned(indexrelid)), 0)
              FROM pg_index WHERE indrelid = %(table)s::regclass)
         + pg_stat_get_xact_tuples_returned(%(table)s::regclass) AS n
"""


def _rows_read(runtime, call, table: str = "tasks") -> int:
    """The rows of ``table`` that ``call`` read, from the table and its indexes, in a
    transaction rolled back after. Counted as a difference: the counters also hold what this
    connection's earlier transactions read, until the server collects them (at most once a
    second)."""
    with runtime.pool.connection() as conn, conn.transaction():
        before = conn.execute(_READ, {"table": table}).fetchone()["n"]
        call(conn)
        read = conn.execute(_READ, {"table": table}).fetchone()["n"] - before
        raise psycopg.Rollback()
    return int(read)


def test_finding_stranded_session_waiters_reads_each_group_not_each_waiter(
    client, account, runtime
):
    # given 3,000 tasks waiting for a session on three portals, each portal with a task running
    client.post("/tasks", json=ELIGIBILITY, headers=account.headers)  # the SOP row
    _wait(runtime, account, 3_000, "waiting_for_session")
    # when the scheduler looks for stranded waiters
    found: list[int] = []
    read = _rows_read(runtime, lambda conn: found.extend(task_queries.stranded_sessions(conn)))
    # then none is stranded, and the look read a few rows per portal, not the 3,000 waiters
    # (the bound leaves room for index entries the tests before left dead: 3,009 without)
    assert found == []
    assert read <= 300, read


def test_giving_up_on_a_portal_reads_only_the_tasks_that_waited_too_long(client, account, runtime):
    # given 3,000 tasks that began waiting for their portal just now
    client.post("/tasks", json=ELIGIBILITY, headers=account.headers)
    _wait(runtime, account, 3_000, "waiting_for_portal")
    # when the scheduler looks for tasks that waited four hours
    given_up: list[int] = []
    read = _rows_read(runtime, lambda conn: given_up.append(outages.give_up_waiting(conn, 14_400)))
    # then none is given up, and none of the 3,000 was read to find that out
    assert given_up == [0]
    assert read <= 300, read
