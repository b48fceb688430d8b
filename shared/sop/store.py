"""SOP versions in Postgres: the named queries of the SOP aggregate.

An account's own versions are numbered 1, 2, 3 per task type and the newest is active. Built-in
SOPs are stored on first use, keyed by the digest of their text, so a task always points at the
exact document it ran even after the built-in one changes.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from shared import quotas
from shared.db import MAX_INTEGER, Conn, fetch_one, hold_lock
from shared.sop.errors import SopInvalid, StoredSopRefused, or_refused
from shared.sop.library import builtin_sop_text
from shared.sop.loader import STORED_SOP_LIMITS, load_sop
from shared.sop.model import Sop
from shared.sop.task_types import TASK_TYPES
from shared.versions import HISTORY_SHOWN, drop_oldest, has_versions, versions_before

# Parsed versions kept per process. A version never changes once stored, so a parse is good for
# the life of the process; the bound only caps memory when accounts have many versions.
PARSED_SOPS_MAX = 256


@dataclass(frozen=True)
class StoredSop:
    id: int
    version: int
    builtin: bool
    digest: str  # of the text: what a creation's INSERT checks it was validated against
    sop: Sop
    instructions: str  # sop.summary(), the task's `instructions`, computed once per version


@dataclass(frozen=True)
class Refused:
    """This release's refusal of a stored text, kept like a parse: the text cannot change."""

    err: SopInvalid
    text: str


Parsed = tuple[Sop, str] | Refused  # the SOP and its summary, or why it is refused


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ParsedSops:
    """Parsed SOP versions (or their refusals) by owner and digest: each is parsed once.

    Keyed by the digest of the text rather than by row id, so that a database whose ids restart
    (restored, truncated) can never be answered with another document's parse. The owner is the
    account (None for the built-in SOPs), so that a full cache gives up an entry of the owner
    that holds the most, its least recently used: an account listing its MAX_CUSTOM_TYPES types
    again and again pushes out its own parses, and those of others as big, never a smaller
    account's (nor the built-in ones, which every account uses). Thread-safe.
    """

    def __init__(self, max_entries: int = PARSED_SOPS_MAX) -> None:
        self._max = max_entries
        self._owners: dict[int | None, OrderedDict[str, Parsed]] = {}
        self._count = 0
        self._lock = threading.Lock()

    def get(self, owner: int | None, digest: str, body: Callable[[], str]) -> Parsed:
        """The parsed SOP and its summary, or its refusal; ``body()`` is read and parsed only
        on a miss."""
        with self._lock:
            entries = self._owners.get(owner)
            if entries is not None and (hit := entries.get(digest)) is not None:
                entries.move_to_end(digest)
                return hit
        text = body()
        try:
            sop = load_sop(text, STORED_SOP_LIMITS)
        except SopInvalid as err:
            entry: Parsed = Refused(err, text)
        else:
            entry = (sop, sop.summary())
        self._keep(owner, digest, entry)
        return entry

    def has(self, owner: int | None, digest: str) -> bool:
        with self._lock:
            return digest in self._owners.get(owner, ())

    def _keep(self, owner: int | None, digest: str, entry: Parsed) -> None:
        with self._lock:
            entries = self._owners.setdefault(owner, OrderedDict())
            self._count += digest not in entries
            entries[digest] = entry
            while self._count > self._max:
                biggest = max(self._owners, key=lambda o: len(self._owners[o]))
                self._owners[biggest].popitem(last=False)
                self._count -= 1
                if not self._owners[biggest]:
                    del self._owners[biggest]

    def __len__(self) -> int:
        return self._count


PARSED = ParsedSops()


@cache
def _builtin(task_type: str) -> tuple[str, str]:
    """The built-in SOP's text and digest; the package's files do not change under a process."""
    text = builtin_sop_text(task_type)
    return text, _digest(text)


def _is_current_builtin(row: dict) -> bool:
    """Whether the row is the built-in SOP's current text, which the package has already."""
    return row["builtin"] and row["digest"] == _builtin(row["task_type"])[1]


def _body(conn: Conn, row: dict, read: Mapping[int, str] | None = None) -> Callable[[], str]:
    """What reads the row's text when it has to be parsed: from the package for a current
    built-in one, else from ``read`` (bodies read together beforehand), else from the table."""

    def body() -> str:
        if _is_current_builtin(row):
            return _builtin(row["task_type"])[0]
        if read and row["id"] in read:
            return read[row["id"]]
        return str(fetch_one(conn, "SELECT body FROM sops WHERE id = %s", (row["id"],))["body"])

    return body


def _stored(row: dict, body: Callable[[], str]) -> StoredSop:
    """The stored version, parsed; :class:`StoredSopRefused` if this release's rules refuse it."""
    parsed = PARSED.get(row["account_id"], row["digest"], body)
    if isinstance(parsed, Refused):
        raise StoredSopRefused(
            parsed.err, sop_id=row["id"], task_type=row["task_type"], version=row["version"],
            builtin=row["builtin"], text=parsed.text,
        )  # fmt: skip
    sop, instructions = parsed
    return StoredSop(row["id"], row["version"], row["builtin"], row["digest"], sop, instructions)


def _store_builtin(conn: Conn, task_type: str) -> dict:
    """Store the built-in SOP's current text on first use; its row (id, version, digest)."""
    text, digest = _builtin(task_type)
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
    return fetch_one(
        conn,
        "SELECT id, version, digest, task_type, true AS builtin, account_id FROM sops"
        " WHERE account_id IS NULL AND task_type = %s AND digest = %s",
        (task_type, digest),
    )


# The active version of each type named (and, with `custom`, of each of the account's own types):
# the account's newest version sorts before the built-in one, whose current text is matched by its
# digest. A type with neither has a row of NULLs: its built-in SOP is not stored yet.
_ACTIVE_SOPS = """
    WITH types AS (
        SELECT name, builtin_digest, ord
          FROM unnest(%(names)s::text[], %(digests)s::text[]) WITH ORDINALITY
               AS named (name, builtin_digest, ord)
        UNION ALL
        SELECT task_type, NULL, NULL FROM custom_task_types
         WHERE %(custom)s AND account_id = %(account)s AND removed_at IS NULL
    )
    SELECT types.name AS task_type, active.id, active.version, active.digest, active.builtin,
           active.account_id
      FROM types LEFT JOIN LATERAL (
        SELECT * FROM (
            (SELECT id, version, digest, false AS builtin, account_id FROM sops
              WHERE account_id = %(account)s AND task_type = types.name
              ORDER BY version DESC LIMIT 1)
            UNION ALL
            (SELECT id, version, digest, true, account_id FROM sops
              WHERE account_id IS NULL AND task_type = types.name
                AND digest = types.builtin_digest)
        ) AS candidates ORDER BY builtin LIMIT 1
      ) AS active ON true
     ORDER BY types.ord NULLS LAST, types.name
"""


def _send_active_sops(conn: Conn, account_id: int, names: list[str], *, custom: bool):
    """Send :data:`_ACTIVE_SOPS`; the cursor its rows arrive on."""
    # An account's own task type has no built-in candidate.
    digests = [_builtin(name)[1] if name in TASK_TYPES else None for name in names]
    params = {"account": account_id, "names": names, "digests": digests, "custom": custom}
    return conn.execute(_ACTIVE_SOPS, params)


def _row_stored(conn: Conn, row: dict) -> dict:
    """The row of the active version, the built-in one stored first if it is not yet."""
    return row if row["id"] is not None else _store_builtin(conn, row["task_type"])


def active_sop(conn: Conn, account_id: int, task_type: str) -> StoredSop:
    """The account's newest version of the SOP for this type, or the built-in one."""
    return send_active_sop(conn, account_id, task_type)()


def send_active_sop(conn: Conn, account_id: int, task_type: str) -> Callable[[], StoredSop]:
    """Send the query for the active SOP; the returned callable reads it.

    One query answers both (the account's newest version sorts first), and neither body is read
    unless this process has not parsed that version yet. In a pipeline, the answer arrives with
    the other queries sent before the next sync, in one round trip.
    """
    cursor = _send_active_sops(conn, account_id, [task_type], custom=False)

    def read() -> StoredSop:
        row = _row_stored(conn, cursor.fetchone())
        return _stored(row, _body(conn, row))

    return read


def active_sops(conn: Conn, account_id: int) -> dict[str, StoredSop | StoredSopRefused]:
    """Every task type the account can use, built-in then its own by name, with its active SOP
    (or this release's refusal of it), in one query whatever the number of types.

    The texts of versions this process has not parsed yet are read together, in one more, and
    parsed after the others are taken from the cache: parsing them may evict those.
    """
    rows = _send_active_sops(conn, account_id, list(TASK_TYPES), custom=True).fetchall()
    rows = [_row_stored(conn, row) for row in rows]
    known = [
        row
        for row in rows
        if _is_current_builtin(row) or PARSED.has(row["account_id"], row["digest"])
    ]
    out = {
        row["task_type"]: or_refused(StoredSopRefused, _stored, row, _body(conn, row))
        for row in known
    }
    unknown = [row for row in rows if row["task_type"] not in out]
    read = _bodies(conn, [row["id"] for row in unknown])
    out |= {
        row["task_type"]: or_refused(StoredSopRefused, _stored, row, _body(conn, row, read))
        for row in unknown
    }
    return {row["task_type"]: out[row["task_type"]] for row in rows}


def _bodies(conn: Conn, sop_ids: list[int]) -> dict[int, str]:
    if not sop_ids:
        return {}
    rows = conn.execute("SELECT id, body FROM sops WHERE id = ANY(%s)", (sop_ids,)).fetchall()
    return {row["id"]: str(row["body"]) for row in rows}


def sop_by_id(conn: Conn, sop_id: int) -> StoredSop:
    row = fetch_one(
        conn,
        "SELECT id, version, digest, task_type, account_id IS NULL AS builtin, account_id"
        " FROM sops WHERE id = %s",
        (sop_id,),
    )
    return _stored(row, _body(conn, row))


def put_sop_version(
    conn: Conn, account_id: int, task_type: str, body: str, *, max_versions: int
) -> tuple[int, bool]:
    """Store ``body`` as the account's next version; return (version, created).

    The body must already be validated. A body identical to the newest version stores nothing
    (PUT is idempotent). The number is max + 1 under the unique index: a concurrent writer who
    took the same number makes ``ON CONFLICT`` skip, and the next try sees its commit. At
    ``max_versions`` the oldest versions no task names are dropped first, or
    :class:`QuotaExceeded` if none can be (:func:`shared.versions.drop_oldest`).
    """
    digest = _digest(body)
    # Writers of one account's SOP of one type take turns until the transaction ends: without
    # it, N saves at once each lost the race for max + 1 to another, and past 5 rounds a 500.
    hold_lock(conn, "sop-version", account_id, task_type)
    for _ in range(5):
        newest = conn.execute(
            "SELECT version, digest FROM sops WHERE account_id = %s AND task_type = %s"
            " ORDER BY version DESC LIMIT 1",
            (account_id, task_type),
        ).fetchone()
        if newest is not None and newest["digest"] == digest:
            return newest["version"], False
        if newest is not None:
            drop_oldest(conn, "sops", account_id, task_type, newest["version"], max_versions)
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


def sop_versions(
    conn: Conn,
    account_id: int,
    task_type: str,
    *,
    before: int | None = None,
    limit: int = HISTORY_SHOWN,
) -> list[dict]:
    """The account's own versions of one SOP older than ``before``, newest first, without
    their bodies: at most ``limit + 1``, the extra one saying that there are more."""
    return versions_before(conn, "sops", account_id, task_type, before=before, limit=limit)


def has_sop_versions(conn: Conn, account_id: int, task_type: str) -> bool:
    """Whether the account stored a version of its own of this type's SOP."""
    return has_versions(conn, "sops", account_id, task_type)


def sop_version(conn: Conn, account_id: int, task_type: str, version: int) -> StoredSop | None:
    """One of the account's own versions of a type's SOP, or None."""
    if version > MAX_INTEGER:
        return None
    row = conn.execute(
        "SELECT id, version, digest, task_type, false AS builtin, account_id FROM sops"
        " WHERE account_id = %s AND task_type = %s AND version = %s",
        (account_id, task_type, version),
    ).fetchone()
    return None if row is None else _stored(row, _body(conn, row))


def sop_version_body(conn: Conn, account_id: int, task_type: str, version: int) -> str | None:
    """The text of one of the account's own versions, or None."""
    row = conn.execute(
        "SELECT body FROM sops WHERE account_id = %s AND task_type = %s AND version = %s",
        (account_id, task_type, version),
    ).fetchone()
    return str(row["body"]) if row else None


def sop_created_at(conn: Conn, sop_id: int) -> datetime:
    return sops_created_at(conn, [sop_id])[sop_id]


def sops_created_at(conn: Conn, sop_ids: list[int]) -> dict[int, datetime]:
    """When each of the versions was stored, in one query."""
    rows = conn.execute("SELECT id, created_at FROM sops WHERE id = ANY(%s)", (sop_ids,))
    return {row["id"]: row["created_at"] for row in rows.fetchall()}


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


def is_custom_type(conn: Conn, account_id: int, task_type: str, *, removed: bool = False) -> bool:
    """Whether the account has this task type of its own (defined and not removed; with
    ``removed``, also one it removed, whose versions its tasks still name)."""
    return send_is_custom_type(conn, account_id, task_type, removed=removed)()


def send_is_custom_type(
    conn: Conn, account_id: int, task_type: str, *, removed: bool = False
) -> Callable[[], bool]:
    """:func:`is_custom_type`, sent now and read by the returned callable (for a pipeline)."""
    if custom_type_problem(task_type):
        return lambda: False  # also keeps what no column can hold (a NUL) away from the database
    cursor = conn.execute(
        "SELECT 1 FROM custom_task_types"
        " WHERE account_id = %s AND task_type = %s AND (%s OR removed_at IS NULL)",
        (account_id, task_type, removed),
    )
    return lambda: cursor.fetchone() is not None


def add_custom_type(conn: Conn, account_id: int, task_type: str, limit: int) -> None:
    """Define (or define again, after a removal) one of the account's own task types; refused
    (:class:`QuotaExceeded`) when the account already has ``limit`` others. Run it in a
    transaction: the count holds the account's lock on its types until the transaction ends."""
    counts = (
        "SELECT count(*) FILTER (WHERE task_type <> %(type)s) AS others,"
        " count(*) FILTER (WHERE task_type = %(type)s) AS known FROM custom_task_types"
        " WHERE account_id = %(account)s AND removed_at IS NULL"
    )
    params = {"account": account_id, "type": task_type}
    if not quotas.has_room(conn, account_id, "custom_types", limit, counts, params):
        raise quotas.QuotaExceeded(
            "MAX_CUSTOM_TYPES", limit,
            f"The account has {limit} task types of its own (MAX_CUSTOM_TYPES): remove one"
            " (DELETE /sops/{type}) before defining another.",
        )  # fmt: skip
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
