"""Reading what a query read in tests: a list query's plan, custom or generic, or the rows a call
read, counted by the server.

psycopg prepares a statement on the server after it has run a few times, and PostgreSQL may then
plan it once for any parameters (a generic plan) instead of for the values at hand (a custom
plan). A list must read one page under both, so the tests run the plan of each.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import psycopg

PLAN_MODES = ["custom", "generic"]


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def nodes_on(conn: psycopg.Connection, table: str, sql: str, params: list[Any], mode: str):
    """The nodes that read ``table`` in the plan of ``sql``, run, with fresh statistics.

    ``mode`` is ``custom`` (planned for these values) or ``generic`` (planned for any values,
    as a prepared statement may be after its fifth run).
    """
    conn.autocommit = True
    conn.execute(f"ANALYZE {table}")
    numbers = itertools.count(1)
    numbered = re.sub("%s", lambda _: f"${next(numbers)}", sql)
    cursor = psycopg.ClientCursor(conn)
    cursor.execute(f"SET plan_cache_mode = force_{mode}_plan")
    try:
        cursor.execute(f"PREPARE listed AS {numbered}")
        arguments = ", ".join(["%s"] * len(params))
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE listed({arguments})", params)
        plan = cursor.fetchone()
    finally:
        cursor.execute("DEALLOCATE listed")
        cursor.execute("RESET plan_cache_mode")
    nodes = _nodes(next(iter(plan.values()))[0]["Plan"])
    return [n for n in nodes if n.get("Relation Name") == table]


def rows_read(nodes: list[dict]) -> int:
    """Rows the nodes returned plus rows they read and dropped, over every loop."""
    return sum(
        (n["Actual Rows"] + n.get("Rows Removed by Filter", 0)) * n["Actual Loops"] for n in nodes
    )


_READ = """
    SELECT (SELECT coalesce(sum(pg_stat_get_xact_tuples_returned(indexrelid)), 0)
              FROM pg_index WHERE indrelid = %(table)s::regclass)
         + pg_stat_get_xact_tuples_returned(%(table)s::regclass) AS n
"""


def rows_read_in(runtime, call, table: str = "tasks") -> int:
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
