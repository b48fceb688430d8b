"""What a scheduler tick reads does not grow with what waits: thousands of tasks waiting for a
session or for their portal cost a tick what a few do, and so do thousands of pending webhook
messages, for their own account and for every other."""

from __future__ import annotations

import psycopg

from shared import outages
from shared import tasks as task_queries
from shared.webhooks import claim_due_messages
from tests.plans import rows_read_in

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


def test_finding_stranded_session_waiters_reads_each_group_not_each_waiter(
    client, account, runtime
):
    # given 3,000 tasks waiting for a session on three portals, each portal with a task running
    client.post("/tasks", json=ELIGIBILITY, headers=account.headers)  # the SOP row
    _wait(runtime, account, 3_000, "waiting_for_session")
    # when the scheduler looks for stranded waiters
    found: list[int] = []
    read = rows_read_in(runtime, lambda conn: found.extend(task_queries.stranded_sessions(conn)))
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
    give_up = outages.give_up_waiting
    read = rows_read_in(runtime, lambda conn: given_up.append(give_up(conn, 14_400)))
    # then none is given up, and none of the 3,000 was read to find that out
    assert given_up == [0]
    assert read <= 300, read


def _pending(runtime, account, count: int, *, due: bool = True, sending: int = 0) -> None:
    """``count`` pending messages of the account, made due at one instant (as enabling its
    endpoint again or a recovery leaves them) or due in an hour (a receiver that is down);
    the first ``sending`` of them being sent now."""
    with runtime.pool.connection() as conn:
        conn.execute(
            """
            INSERT INTO webhook_messages (msg_id, account_id, event, payload, status,
                                          next_attempt_at, locked_until)
            SELECT 'msg_backlog_' || %(account)s || '_' || g, %(account)s, 'ping', '{}',
                   'pending', now() + CASE WHEN %(due)s THEN interval '0' ELSE interval '1 h' END,
                   CASE WHEN g <= %(sending)s THEN now() + interval '1 minute' END
              FROM generate_series(1, %(count)s) AS g
            """,
            {"account": account.id, "count": count, "due": due, "sending": sending},
        )
    # The index entries of an earlier test's messages, dead but not yet vacuumed, would count
    # as read: account ids start again at 1 in each test.
    with psycopg.connect(runtime.database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE webhook_messages")


def _claim(runtime, claimed: list[int]):
    return lambda conn: claimed.extend(
        claim_due_messages(conn, limit=500, lock_s=60, settings=runtime.settings)
    )


def test_claiming_from_a_backlog_reads_the_messages_claimed_not_the_backlog(make_account, runtime):
    # given an endpoint with 3,000 messages made due at one instant, none being sent
    account = make_account(webhook_url="http://127.0.0.1:9/hook")
    _pending(runtime, account, 3_000)
    # when the scheduler claims what is due
    claimed: list[int] = []
    read = rows_read_in(runtime, _claim(runtime, claimed), "webhook_messages")
    # then it claims the endpoint's four slots, reading a few rows, not the 3,000
    # (3,000 to count the messages in flight and 3,000 more to pick the first four, before 0033)
    assert len(claimed) == runtime.settings.webhook_endpoint_concurrency
    assert read <= 100, read


def test_one_accounts_backlog_costs_another_accounts_claim_nothing(make_account, runtime):
    # given an account whose endpoint is busy with 4 of its 3,000 due messages, one whose
    # receiver is down with 3,000 more due in an hour, and a third with one message due
    busy = make_account("Busy Clinic", webhook_url="http://127.0.0.1:9/busy")
    down = make_account("Down Clinic", webhook_url="http://127.0.0.1:9/down")
    quiet = make_account("Quiet Clinic", webhook_url="http://127.0.0.1:9/quiet")
    _pending(runtime, busy, 3_000, sending=runtime.settings.webhook_endpoint_concurrency)
    _pending(runtime, down, 3_000, due=False)
    _pending(runtime, quiet, 1)
    # when the scheduler claims what is due
    claimed: list[int] = []
    read = rows_read_in(runtime, _claim(runtime, claimed), "webhook_messages")
    # then it claims the third account's message alone, and read none of the 6,000 to do so
    with runtime.pool.connection() as conn:
        owners = conn.execute(
            "SELECT account_id FROM webhook_messages WHERE id = ANY(%s)", (claimed,)
        ).fetchall()
    assert [row["account_id"] for row in owners] == [quiet.id]
    assert read <= 100, read
