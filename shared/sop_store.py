"""SOP versions in Postgres: the named queries of the SOP aggregate.

An account's own versions are numbered 1, 2, 3 per task type and the newest is active. Built-in
SOPs are stored on first use, keyed by the digest of their text, so a task always points at the
exact document it ran even after the built-in one changes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from shared.db import Conn, fetch_one
from shared.sops import STORED_SOP_LIMITS, Sop, builtin_sop_text, load_sop


@dataclass(frozen=True)
class StoredSop:
    id: int
    version: int
    builtin: bool
    sop: Sop


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _builtin_version(conn: Conn, task_type: str) -> StoredSop:
    text = builtin_sop_text(task_type)
    digest = _digest(text)
    conn.execute(
        """
        INSERT INTO sops (account_id, task_type, version, body, digest)
        SELECT NULL, %(type)s,
               COALESCE(MAX(version), 0) + 1, %(body)s, %(digest)s
          FROM sops WHERE account_id IS NULL AND task_type = %(type)s
        ON CONFLICT (task_type, digest) WHERE account_id IS NULL DO NOTHING
        """,
        {"type": task_type, "body": text, "digest": digest},
    )
    row = fetch_one(
        conn,
        "SELECT id, version FROM sops WHERE account_id IS NULL AND task_type = %s AND digest = %s",
        (task_type, digest),
    )
    return StoredSop(row["id"], row["version"], True, load_sop(text, STORED_SOP_LIMITS))


def active_sop(conn: Conn, account_id: int, task_type: str) -> StoredSop:
    """The account's newest version of the SOP for this type, or the built-in one."""
    row = conn.execute(
        "SELECT id, version, body FROM sops WHERE account_id = %s AND task_type = %s"
        " ORDER BY version DESC LIMIT 1",
        (account_id, task_type),
    ).fetchone()
    if row is None:
        return _builtin_version(conn, task_type)
    return StoredSop(row["id"], row["version"], False, load_sop(row["body"], STORED_SOP_LIMITS))


def sop_by_id(conn: Conn, sop_id: int) -> StoredSop:
    row = fetch_one(
        conn,
        "SELECT id, version, body, account_id IS NULL AS builtin FROM sops WHERE id = %s",
        (sop_id,),
    )
    return StoredSop(
        row["id"], row["version"], row["builtin"], load_sop(row["body"], STORED_SOP_LIMITS)
    )


def put_sop_version(conn: Conn, account_id: int, task_type: str, body: str) -> tuple[int, bool]:
    """Store ``body`` as the account's next version; return (version, created).

    The body must already be validated. A body identical to the newest version stores nothing
    (PUT is idempotent). The number is max + 1 under the unique index: a concurrent writer who
    took the same number makes ``ON CONFLICT`` skip, and the next try sees its commit.
    """
    digest = _digest(body)
    for _ in range(5):
        newest = conn.execute(
            "SELECT version, digest FROM sops WHERE account_id = %s AND task_type = %s"
            " ORDER BY version DESC LIMIT 1",
            (account_id, task_type),
        ).fetchone()
        if newest is not None and newest["digest"] == digest:
            return newest["version"], False
        version = (newest["version"] if newest else 0) + 1
        row = conn.execute(
            """
            INSERT INTO sops (account_id, task_type, version, body, digest)
            VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT (account_id, task_type, version) WHERE account_id IS NOT NULL DO NOTHING
            RETURNING version
            """,
            (account_id, task_type, version, body, digest),
        ).fetchone()
        if row is not None:
            return row["version"], True
    raise RuntimeError(f"could not number a new {task_type} SOP version for account {account_id}")


def sop_history(conn: Conn, account_id: int, task_type: str) -> list[dict]:
    """The account's own versions of one SOP, newest first, without their bodies."""
    return conn.execute(
        "SELECT id, version, digest, created_at FROM sops"
        " WHERE account_id = %s AND task_type = %s ORDER BY version DESC",
        (account_id, task_type),
    ).fetchall()


def sop_created_at(conn: Conn, sop_id: int) -> datetime:
    row = fetch_one(conn, "SELECT created_at FROM sops WHERE id = %s", (sop_id,))
    return row["created_at"]


# A custom task type's name: snake_case, bounded so it fits in a URL, a filter and a log line.
CUSTOM_TYPE = re.compile(r"[a-z][a-z0-9_]*")
MAX_TYPE_CHARS = 64


def custom_type_problem(task_type: str) -> str | None:
    """Why this name cannot be a custom task type, or None."""
    if not CUSTOM_TYPE.fullmatch(task_type):
        return (
            "must be a built-in type or a new snake_case name (lower-case letters, digits"
            f" and _, starting with a letter), not {task_type!r}"
        )
    if len(task_type) > MAX_TYPE_CHARS:
        return f"must be at most {MAX_TYPE_CHARS} characters"
    return None


def custom_types(conn: Conn, account_id: int, *, removed: bool = False) -> list[str]:
    """The account's own task types, by name (with ``removed``, also the ones it removed)."""
    rows = conn.execute(
        "SELECT task_type FROM custom_task_types WHERE account_id = %s"
        " AND (%s OR removed_at IS NULL) ORDER BY task_type",
        (account_id, removed),
    ).fetchall()
    return [row["task_type"] for row in rows]


def is_custom_type(conn: Conn, account_id: int, task_type: str) -> bool:
    """Whether the account has this task type of its own (defined and not removed)."""
    if custom_type_problem(task_type):
        return False  # also keeps what no column can hold (a NUL) away from the database
    row = conn.execute(
        "SELECT 1 FROM custom_task_types"
        " WHERE account_id = %s AND task_type = %s AND removed_at IS NULL",
        (account_id, task_type),
    ).fetchone()
    return row is not None


def add_custom_type(conn: Conn, account_id: int, task_type: str) -> None:
    """Define (or define again, after a removal) one of the account's own task types."""
    conn.execute(
        """
        INSERT INTO custom_task_types (account_id, task_type) VALUES (%s, %s)
        ON CONFLICT (account_id, task_type) DO UPDATE SET removed_at = NULL
        """,
        (account_id, task_type),
    )


def remove_custom_type(conn: Conn, account_id: int, task_type: str) -> None:
    """Take the type off the account's list; its SOP versions and tasks stay."""
    conn.execute(
        "UPDATE custom_task_types SET removed_at = now()"
        " WHERE account_id = %s AND task_type = %s AND removed_at IS NULL",
        (account_id, task_type),
    )
