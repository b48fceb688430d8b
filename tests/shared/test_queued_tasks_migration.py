"""Migration 0037 counts the unfinished tasks each account has already (MAX_QUEUED_TASKS), and
its downgrade gives back the creation statements of before. On a database of its own."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from alembic import command
from psycopg.rows import dict_row

from shared.db import _alembic_config

STATUSES = ["pending", "running", "waiting_for_input", "pending_review", "completed", "failed",
            "canceled", "completed_with_issues"]  # fmt: skip


@pytest.fixture
def database_url(services: dict[str, str]) -> str:
    base = services["database_url"]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS migration_0037")
        conn.execute("CREATE DATABASE migration_0037")
    url = urlunsplit(urlsplit(base)._replace(path="/migration_0037"))
    yield url
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("DROP DATABASE migration_0037 WITH (FORCE)")


def _ended(conn: psycopg.Connection) -> dict[int, int]:
    rows = conn.execute("SELECT account_id, ended FROM account_tasks_ended").fetchall()
    return {row["account_id"]: row["ended"] for row in rows}


def test_the_migration_counts_the_tasks_each_account_has_not_ended(database_url):
    config = _alembic_config(database_url)
    command.upgrade(config, "0036")
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        # given an account with a task of each status, numbers 1 to 12 given (four deleted),
        # and one with none
        busy = conn.execute(
            "INSERT INTO accounts (name, task_seq) VALUES ('Busy', 12) RETURNING id"
        ).fetchone()["id"]
        idle = conn.execute("INSERT INTO accounts (name) VALUES ('Idle') RETURNING id").fetchone()
        sop = conn.execute(
            "INSERT INTO sops (task_type, version, body, digest)"
            " VALUES ('check_eligibility', 1, 'title: Check', 'd') RETURNING id"
        ).fetchone()["id"]
        for number, status in enumerate(STATUSES, start=5):
            conn.execute(
                "INSERT INTO tasks (account_id, task_number, type, status, title, instructions,"
                " sop_id) VALUES (%s, %s, 'check_eligibility', %s, 'Check', 'Read the plan.', %s)",
                (busy, number, status, sop),
            )
        # when the migration runs
        command.upgrade(config, "head")
        # then the ended count leaves the four unfinished tasks
        assert _ended(conn) == {busy: 12 - 4, idle["id"]: 0}
        # and the triggers go on counting: a task that ends, one deleted unfinished, one that
        # starts again
        conn.execute("UPDATE tasks SET status = 'failed' WHERE status = 'running'")
        conn.execute("DELETE FROM tasks WHERE status = 'pending'")
        conn.execute("UPDATE tasks SET status = 'completed' WHERE status = 'waiting_for_input'")
        conn.execute("UPDATE tasks SET status = 'pending' WHERE status = 'canceled'")
        conn.execute("DELETE FROM tasks WHERE status = 'completed_with_issues'")
        assert _ended(conn) == {busy: 12 - 4 + 3 - 1, idle["id"]: 0}
        # and a task the previous release's API creates (its statement is kept until it is
        # replaced) is counted too: it takes a task number
        conn.execute(
            "INSERT INTO portal_credentials (account_id, portal, username, secret_token)"
            " VALUES (%s, 'sandbox', 'u', 'x')",
            (busy,),
        )
        conn.execute(
            "CALL create_task(%s, 'check_eligibility', 'Check', 'Read.', %s, 'd', NULL, false,"
            " 'sandbox', NULL, '{}', NULL, '{}', '{}', '{}', 'key:1', 'task.create', 'tasks',"
            " NULL)",
            (busy, sop),
        )
        assert conn.execute("SELECT task_seq FROM accounts WHERE id = %s", (busy,))\
            .fetchone()["task_seq"] == 13  # fmt: skip
        assert conn.execute(
            "SELECT count(*) AS n FROM tasks WHERE status NOT IN"
            " ('completed', 'completed_with_issues', 'failed', 'canceled')"
        ).fetchone()["n"] == 13 - _ended(conn)[busy]  # fmt: skip

        # and the downgrade leaves the statements of 0036 alone, the count gone
        command.downgrade(config, "0036")
        arguments = conn.execute(
            "SELECT proname, pronargs FROM pg_proc WHERE proname LIKE ANY"
            " ('{insert_task,create_task%%,queued_tasks_within,count_task_end}') ORDER BY proname"
        ).fetchall()
        assert [(row["proname"], row["pronargs"]) for row in arguments] == [
            ("create_task", 15 + 4 + 14), ("insert_task", 15)]  # fmt: skip
        assert (
            conn.execute("SELECT to_regclass('account_tasks_ended') AS t").fetchone()["t"] is None
        )
        command.upgrade(config, "head")
        assert _ended(conn)[busy] == 13 - 3
