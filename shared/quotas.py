"""How many of each kind of thing one account may keep: task types of its own, portals, console
users (``MAX_CUSTOM_TYPES``, ``MAX_PORTALS``, ``MAX_USERS``), and how many bytes of files its
tasks may hold (``MAX_STORED_FILE_BYTES``).

Each is an input with a limit like any other. Without one, a tenant could define thousands of
task types, and every ``GET /task-types`` would parse each type's SOP (about 10 ms apiece) for as
long as a request may run, crowding out the other accounts' requests and their cached SOPs.

A count is taken under a lock per account and kind, held until the caller's transaction ends, so
two creations at once are counted in turn and the limit holds exactly.

The bytes of files are not counted but kept, in the account's row of ``account_storage``
(migration 0036): a creation with files adds its own under that row's lock, in the transaction
that stores them, and the retention purge takes off what it deletes. A task without files never
reads it.
"""

from __future__ import annotations

from typing import Any

from shared.db import Conn, fetch_one, hold_lock


class QuotaExceeded(Exception):
    """Creating one more would put the account over ``setting``; the message says what to do."""

    def __init__(self, setting: str, maximum: int, message: str) -> None:
        super().__init__(message)
        self.setting = setting
        self.max = maximum


def lock(conn: Conn, account_id: int, kind: str) -> None:
    """Hold the account's lock for ``kind`` until the transaction ends."""
    hold_lock(conn, kind, account_id)


def has_room(
    conn: Conn, account_id: int, kind: str, limit: int, counts: str, params: dict[str, Any]
) -> bool:
    """Whether the account may keep one more ``kind``, after taking its lock: yes if the one in
    hand exists already, else if fewer than ``limit`` others do. ``counts`` is the query that
    gives ``others`` (how many others the account has) and ``known`` (whether this one exists)."""
    lock(conn, account_id, kind)
    row = fetch_one(conn, counts, params)
    return bool(row["known"]) or row["others"] < limit


FILE_BYTES = "MAX_STORED_FILE_BYTES"

# The account's stored bytes of files grow by %(bytes)s if that keeps them within %(max)s; the
# row stays locked until the transaction ends. No row comes back when they would not fit.
_TAKE_FILE_BYTES = """
    INSERT INTO account_storage AS s (account_id, file_bytes)
    SELECT %(account)s, %(bytes)s WHERE %(bytes)s <= %(max)s
    ON CONFLICT (account_id) DO UPDATE SET file_bytes = s.file_bytes + EXCLUDED.file_bytes
     WHERE s.file_bytes + EXCLUDED.file_bytes <= %(max)s
    RETURNING s.file_bytes
"""


def take_file_bytes(conn: Conn, account_id: int, size: int, limit: int) -> None:
    """Count ``size`` bytes of new files in the account's stored files, in the transaction that
    stores them (its rollback takes them off again); :class:`QuotaExceeded` if they would put
    the account over ``limit`` (``MAX_STORED_FILE_BYTES``), its count then as it was."""
    params = {"account": account_id, "bytes": size, "max": limit}
    if conn.execute(_TAKE_FILE_BYTES, params).fetchone() is not None:
        return
    row = conn.execute(
        "SELECT file_bytes FROM account_storage WHERE account_id = %s", (account_id,)
    ).fetchone()
    stored = row["file_bytes"] if row else 0
    raise QuotaExceeded(
        FILE_BYTES, limit,
        f"The account's tasks hold {stored} bytes of files, and these {size} would put them"
        f" over {limit} ({FILE_BYTES}). Files are deleted with their tasks retention_days after"
        " the tasks end (PUT /settings): that frees their room.",
    )  # fmt: skip
