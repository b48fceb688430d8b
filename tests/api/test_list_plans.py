"""The webhook message list, the audit log and the version lists read one page, whatever the
account has behind it.

Each list is planned and run (``EXPLAIN ANALYZE``) under a custom plan and under the generic
plan a prepared statement may switch to; the rows its table scans read, kept or dropped, must
stay within the page.
"""

from __future__ import annotations

import pytest

from shared.audit import list_entries_query
from shared.versions import versions_query
from shared.webhooks import list_messages_query
from tests.api.test_task_lists import BODY
from tests.plans import PLAN_MODES, nodes_on, rows_read

PAGE = 51  # a page of 50 and the row that says there is more


def _load_messages(runtime, account, count: int, status_sql: str, first: int) -> None:
    """``count`` ping messages numbered from ``first``, their status ``status_sql`` of g."""
    with runtime.pool.connection() as conn:
        conn.execute(
            f"""
            INSERT INTO webhook_messages (msg_id, account_id, event, payload, status)
            SELECT 'msg_listed_' || (%(first)s + g), %(account)s, 'ping', '{{}}', {status_sql}
              FROM generate_series(1, %(count)s) AS g
            """,
            {"account": account.id, "first": first, "count": count},
        )


def _message_plan(runtime, account, mode: str, **filters) -> list[dict]:
    sql, params = list_messages_query(account.id, before_id=None, limit=PAGE, **filters)
    with runtime.pool.connection() as conn:
        return nodes_on(conn, "webhook_messages", sql, params, mode)


@pytest.mark.parametrize("mode", PLAN_MODES)
@pytest.mark.parametrize("status", ["delivered", "failed", "pending"])
def test_a_message_list_by_status_reads_one_page_behind_newer_messages_of_another_status(
    account, runtime, status, mode
):
    # given 20,000 settled messages (4 % failed), then a burst of 2,000 newer ones still pending
    # while the receiver is down: the newest messages are not of the common status
    _load_messages(
        runtime,
        account,
        20_000,
        "CASE WHEN g %% 100 < 4 THEN 'failed' ELSE 'delivered' END",
        first=0,
    )
    _load_messages(runtime, account, 2_000, "'pending'", first=30_000)  # fmt: skip
    # when the first page of one status is planned and run
    on_messages = _message_plan(runtime, account, mode, status=status)
    # then it reads no more of webhook_messages than the page, and drops nothing it read
    assert on_messages and all(n["Node Type"] != "Seq Scan" for n in on_messages)
    assert rows_read(on_messages) <= PAGE


@pytest.mark.parametrize("mode", PLAN_MODES)
def test_the_messages_of_one_old_task_are_read_without_walking_the_newer_ones(
    client, account, runtime, mode
):
    # given a task whose finish was reported, and 20,000 newer messages of the account
    task_id = client.post("/tasks", json=BODY, headers=account.headers).get_json()["id"]
    with runtime.pool.connection() as conn:
        conn.execute(
            "INSERT INTO webhook_messages (msg_id, account_id, task_id, event, payload, status)"
            " VALUES ('msg_listed_old', %s, %s, 'task_finished', '{}', 'delivered')",
            (account.id, task_id),
        )
    _load_messages(runtime, account, 20_000, "'delivered'", first=0)
    # when the page of that task's messages is planned and run
    on_messages = _message_plan(runtime, account, mode, task_id=task_id)
    # then only that task's message is read
    assert on_messages and rows_read(on_messages) <= 1


@pytest.mark.parametrize("mode", PLAN_MODES)
def test_a_deep_page_of_the_audit_log_reads_one_page(account, runtime, mode):
    # given an account with 20,000 audit entries
    with runtime.pool.connection() as conn:
        conn.execute(
            "INSERT INTO audit_log (account_id, actor, action, target)"
            " SELECT %s, 'api_key:us_live_x', 'POST /tasks', 'task:' || g"
            "   FROM generate_series(1, 20000) AS g",
            (account.id,),
        )
        middle = conn.execute(
            "SELECT id FROM audit_log WHERE account_id = %s AND target = 'task:10000'",
            (account.id,),
        ).fetchone()["id"]
    # when a page halfway back (the cursor of the entry in the middle) is planned and run
    sql, params = list_entries_query(account.id, before_id=middle, limit=PAGE)
    with runtime.pool.connection() as conn:
        on_audit = nodes_on(conn, "audit_log", sql, params, mode)
    # then it reads the page from the cursor on, not the 10,000 newer entries before it
    assert on_audit and rows_read(on_audit) <= PAGE


@pytest.mark.parametrize("mode", PLAN_MODES)
@pytest.mark.parametrize("table", ["sops", "portal_profiles"])
def test_a_deep_page_of_versions_reads_one_page(client, account, runtime, table, mode):
    # given a document with 20,000 stored versions
    name = {"sops": "check_eligibility", "portal_profiles": "sandbox"}[table]
    column = {"sops": "task_type", "portal_profiles": "portal"}[table]
    with runtime.pool.connection() as conn:
        conn.execute(
            f"INSERT INTO {table} (account_id, {column}, version, body, digest)"
            " SELECT %s, %s, g, 'text', 'digest' || g FROM generate_series(1, 20000) AS g",
            (account.id, name),
        )
    # when a page halfway back (before version 10,000) is planned and run
    sql, params = versions_query(table, account.id, name, before=10_000, limit=100)
    with runtime.pool.connection() as conn:
        on_versions = nodes_on(conn, table, sql, params, mode)
    # then it reads that page and the row that says there is more, not the 10,000 newer ones
    assert on_versions and rows_read(on_versions) <= 101
