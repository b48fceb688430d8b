"""Pages of an account's versions of one document: an SOP's or a portal profile's, and the
bound on how many it keeps.

An account keeps at most ``MAX_SOP_VERSIONS`` of each document: storing one more drops its
oldest versions that nothing needs any more (:func:`drop_oldest`). A version that is active,
or that a kept task names, is never dropped. A page of versions is still read newest first,
keyed by the version number, which the unique index on (account, name, version) of each table
serves without a sort.
"""

from __future__ import annotations

from typing import Literal

from psycopg.errors import ForeignKeyViolation

from shared.db import Conn, fetch_one
from shared.quotas import QuotaExceeded

# How many versions a document's read shows beside it; the rest are a /versions page away.
HISTORY_SHOWN = 100
# The most a /versions page may ask for (`limit`).
VERSIONS_PAGE_MAX = 1000

# The tables of versioned documents, each with the column naming the document in an account.
Table = Literal["sops", "portal_profiles"]
_NAME_COLUMN: dict[Table, str] = {"sops": "task_type", "portal_profiles": "portal"}

# What makes a stored version needed by a task the retention purge has not deleted yet: a task
# names the SOP version it runs by id, and the profile version its latest run signed in with
# by number (each read by an index of tasks, migration 0035).
_REFERENCED: dict[Table, str] = {
    "sops": "SELECT FROM tasks WHERE tasks.sop_id = v.id",
    "portal_profiles": "SELECT FROM tasks WHERE tasks.account_id = v.account_id"
    " AND tasks.profile_portal = v.portal AND tasks.profile_version = v.version",
}

# Above any version (an integer column): "before" nothing, the first page.
_NEWEST = 2**31

_VERSIONS = """
    SELECT id, version, digest, created_at FROM {table}
     WHERE account_id = %s AND {name} = %s AND version < %s
     ORDER BY version DESC LIMIT %s
"""


def versions_before(
    conn: Conn,
    table: Table,
    account_id: int,
    name: str,
    *,
    before: int | None = None,
    limit: int = HISTORY_SHOWN,
) -> list[dict]:
    """The account's versions of ``name`` older than ``before`` (all when None), newest first,
    without their bodies: ``limit + 1`` at most, the extra one telling that there are more."""
    return conn.execute(*versions_query(table, account_id, name, before, limit)).fetchall()


def versions_query(
    table: Table, account_id: int, name: str, before: int | None, limit: int
) -> tuple[str, list]:
    """The SQL of :func:`versions_before` and its parameters (the tests plan it)."""
    # Names from the closed mapping above, never from a request.
    query = _VERSIONS.format(table=table, name=_NAME_COLUMN[table])
    return query, [account_id, name, _NEWEST if before is None else before, limit + 1]


def has_versions(conn: Conn, table: Table, account_id: int, name: str) -> bool:
    """Whether the account stored any version of ``name``: one row read (``LIMIT 1``)."""
    return bool(versions_before(conn, table, account_id, name, limit=0))


_COUNT = "SELECT count(*) AS n FROM {table} WHERE account_id = %s AND {name} = %s"

# The oldest versions no task names, the newest (active) one aside, up to the number asked for.
_DROP = """
    DELETE FROM {table} WHERE id IN (
        SELECT id FROM {table} AS v
         WHERE account_id = %s AND {name} = %s AND version < %s AND NOT EXISTS ({referenced})
         ORDER BY version LIMIT %s)
"""


def drop_oldest(
    conn: Conn, table: Table, account_id: int, name: str, newest: int, limit: int
) -> list[int]:
    """Drop the oldest versions of ``name`` that nothing needs, so that one more version keeps
    the account at ``limit`` (``MAX_SOP_VERSIONS``); ``newest`` is the active version's number.

    Run it in the transaction that stores the version, under the document's lock. Never
    dropped: the active version (the newest, which the stored one succeeds: a task created a
    moment ago may be naming it) and any version a task names. When none can be dropped and
    the account is at the limit, :class:`QuotaExceeded`: nothing may be stored. The numbers
    dropped, oldest first. Only the oldest go, and the next number is the newest's + 1, so a
    number is never given twice. Reads one index range of the document's versions, and each
    candidate's tasks by index.
    """
    query = _COUNT.format(table=table, name=_NAME_COLUMN[table])
    excess = fetch_one(conn, query, (account_id, name))["n"] + 1 - limit
    if excess <= 0:
        return []
    drop = _DROP.format(table=table, name=_NAME_COLUMN[table], referenced=_REFERENCED[table])
    for _ in range(3):
        try:
            # A task created meanwhile may name a version the DELETE read as unused: its
            # foreign key refuses the DELETE, which waited for its commit, so the next round
            # sees the task. (The profile's version is a plain number, with no such check.)
            with conn.transaction():
                dropped = conn.execute(
                    drop + " RETURNING version", (account_id, name, newest, excess)
                ).fetchall()
            break
        except ForeignKeyViolation:
            continue
    else:
        dropped = []
    if not dropped:
        raise QuotaExceeded(
            "MAX_SOP_VERSIONS", limit,
            f"{name} has {limit} stored versions (MAX_SOP_VERSIONS), each the active one or"
            " named by a task that is kept: store it again once the retention purge has"
            " deleted the oldest of those tasks.",
        )  # fmt: skip
    return sorted(row["version"] for row in dropped)
