"""How many of each kind of thing one account may keep: task types of its own, portals, console
users (``MAX_CUSTOM_TYPES``, ``MAX_PORTALS``, ``MAX_USERS``).

Each is an input with a limit like any other. Without one, a tenant could define thousands of
task types, and every ``GET /task-types`` would parse each type's SOP (about 10 ms apiece) for as
long as a request may run, crowding out the other accounts' requests and their cached SOPs.

A count is taken under a lock per account and kind, held until the caller's transaction ends, so
two creations at once are counted in turn and the limit holds exactly.
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
