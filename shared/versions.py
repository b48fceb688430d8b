"""Pages of an account's versions of one document: an SOP's or a portal profile's.

Versions are never deleted (tasks name them) and nothing caps how many an account stores, so
they are only ever read a page at a time: newest first, keyed by the version number, which the
unique index on (account, name, version) of each table serves without a sort.
"""

from __future__ import annotations

from typing import Literal

from shared.db import Conn

# How many versions a document's read shows beside it; the rest are a /versions page away.
HISTORY_SHOWN = 100
# The most a /versions page may ask for (`limit`).
VERSIONS_PAGE_MAX = 1000

# The tables of versioned documents, each with the column naming the document in an account.
Table = Literal["sops", "portal_profiles"]
_NAME_COLUMN: dict[Table, str] = {"sops": "task_type", "portal_profiles": "portal"}

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
