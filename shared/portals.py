"""Portals an account registered (name -> base URL), their profiles' versions, and whether the
account can sign in to them: the named queries of the portal aggregate.

The sandbox portal is built in: its address comes from settings, not from the ``portals`` table,
and its built-in profile from the library. Credentials are written, read and listed by
:mod:`shared.accounts`.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from shared import quotas
from shared.db import MAX_INTEGER, Conn, fetch_one, hold_lock
from shared.sop.errors import SopInvalid, StoredProfileRefused
from shared.sop.loader import STORED_SOP_LIMITS
from shared.sop.profile import (
    BUILTIN_PORTALS,
    SANDBOX_PORTAL,
    Profile,
    builtin_profile,
    load_profile,
)
from shared.ssrf import UrlRefused, url_origin
from shared.versions import HISTORY_SHOWN, drop_oldest, has_versions, versions_before


def make_room(conn: Conn, account_id: int, name: str, limit: int) -> None:
    """Refuse (:class:`shared.quotas.QuotaExceeded`) a portal new to the account when it already
    has ``limit`` others. A portal counts once it has an address, a login or a profile; the
    built-in ones never count. Run it in the transaction that stores the portal's row: the count
    holds the account's lock on its portals until the transaction ends."""
    if name in BUILTIN_PORTALS:
        return
    counts = """
        SELECT count(*) FILTER (WHERE name <> %(name)s) AS others,
               count(*) FILTER (WHERE name = %(name)s) AS known
          FROM (SELECT name FROM portals WHERE account_id = %(a)s
                UNION SELECT portal FROM portal_profiles WHERE account_id = %(a)s
                UNION SELECT portal FROM portal_credentials WHERE account_id = %(a)s) AS p(name)
         WHERE name <> ALL(%(builtin)s)
    """
    params = {"a": account_id, "name": name, "builtin": list(BUILTIN_PORTALS)}
    if not quotas.has_room(conn, account_id, "portals", limit, counts, params):
        raise quotas.QuotaExceeded(
            "MAX_PORTALS", limit,
            f"The account has {limit} portals (MAX_PORTALS), counting each with an address, a"
            " login or a profile: delete one's address and login before adding another.",
        )  # fmt: skip


def put_portal(
    conn: Conn, account_id: int, name: str, base_url: str, allowed_origins: list[str] | None = None
) -> dict:
    return fetch_one(
        conn,
        """
        INSERT INTO portals (account_id, name, base_url, allowed_origins) VALUES (%s, %s, %s, %s)
        ON CONFLICT (account_id, name)
        DO UPDATE SET base_url = EXCLUDED.base_url, allowed_origins = EXCLUDED.allowed_origins,
                      updated_at = now()
        RETURNING name, base_url, allowed_origins, created_at, updated_at
        """,
        (account_id, name, base_url, allowed_origins or []),
    )


def list_portals(conn: Conn, account_id: int) -> list[dict]:
    return conn.execute(
        "SELECT name, base_url, allowed_origins, created_at, updated_at FROM portals"
        " WHERE account_id = %s ORDER BY name",
        (account_id,),
    ).fetchall()


def delete_portal(conn: Conn, account_id: int, name: str) -> bool:
    row = conn.execute(
        "DELETE FROM portals WHERE account_id = %s AND name = %s RETURNING name",
        (account_id, name),
    ).fetchone()
    return row is not None


def portal_setup(conn: Conn, account_id: int, portal: str) -> dict:
    """Whether the account registered ``portal``'s address and stored credentials for it."""
    return fetch_one(
        conn,
        "SELECT EXISTS (SELECT 1 FROM portals WHERE account_id = %(a)s AND name = %(p)s)"
        "   AS registered,"
        " EXISTS (SELECT 1 FROM portal_credentials WHERE account_id = %(a)s AND portal = %(p)s)"
        "   AS has_credentials",
        {"a": account_id, "p": portal},
    )


def portal_base_url(conn: Conn, account_id: int, name: str) -> str | None:
    """The base URL an account registered for a portal, if any."""
    row = conn.execute(
        "SELECT base_url FROM portals WHERE account_id = %s AND name = %s", (account_id, name)
    ).fetchone()
    return row["base_url"] if row else None


def portal_allowed_origins(conn: Conn, account_id: int, name: str) -> list[str]:
    """The extra origins an account declared for a portal (none for the built-in sandbox)."""
    row = conn.execute(
        "SELECT allowed_origins FROM portals WHERE account_id = %s AND name = %s",
        (account_id, name),
    ).fetchone()
    return list(row["allowed_origins"]) if row else []


def portal_address(
    conn: Conn, account_id: int, portal: str, *, sandbox_url: str, sop_base_url: str | None
) -> str | None:
    """Where an SOP on ``portal`` runs, and where the portal's stored login is typed: the
    sandbox's address (the operator's), or the one the account registered, or the SOP's own
    ``portal.base_url`` when it is on the registered portal's origins (a path of it) or the
    portal has no registered address; None when it is not known yet.

    An SOP cannot move a registered portal: its login would be typed wherever the SOP said.
    """
    if portal == SANDBOX_PORTAL:
        return sandbox_url
    registered = portal_base_url(conn, account_id, portal)
    if not sop_base_url or _pinned_off(conn, account_id, portal, sop_base_url, registered):
        return registered
    return sop_base_url


def pinned_elsewhere(conn: Conn, account_id: int, portal: str, sop_base_url: str) -> str | None:
    """Why an SOP's ``portal.base_url`` is not where ``portal`` is (None if it may be used):
    off the registered address's origins, or on the sandbox, whose address is the operator's."""
    if portal == SANDBOX_PORTAL:
        return f"the {SANDBOX_PORTAL} portal's address is the operator's: remove base_url"
    registered = portal_base_url(conn, account_id, portal)
    return _pinned_off(conn, account_id, portal, sop_base_url, registered)


def _pinned_off(
    conn: Conn, account_id: int, portal: str, sop_base_url: str, registered: str | None
) -> str | None:
    """:func:`pinned_elsewhere` for a portal other than the sandbox whose registered address
    (None: none) was read already."""
    if registered is None:
        return None
    origins = set(portal_allowed_origins(conn, account_id, portal))
    try:
        origins.add(url_origin(registered))
        pinned: str | None = url_origin(sop_base_url)
    except UrlRefused:
        pinned = None
    if pinned in origins:
        return None
    return (
        f"{sop_base_url} is not on portal '{portal}''s origins ({', '.join(sorted(origins))}):"
        f" change the portal with PUT /portals/{portal}, or remove base_url"
    )


def portal_problems(portal: str, *, address: str | None, has_credentials: bool) -> list[str]:
    """What stops a task on ``portal`` before it starts: the API warns of it when an SOP is
    stored, and the worker fails a task with it."""
    problems = []
    if not has_credentials:
        problems.append(
            f"no credentials are stored for portal '{portal}':"
            f" add them with PUT /credentials/{portal}"
        )
    if address is None:
        problems.append(
            f"portal '{portal}' has no address: add it with PUT /portals/{portal}"
            " or set portal.base_url in the SOP"
        )
    return problems


def portal_origins(
    conn: Conn, account_id: int, portal: str, *, sandbox_url: str, sop_base_url: str | None
) -> set[str]:
    """Every origin an SOP on ``portal`` may open: its base URL's and the declared ones. Empty
    when the portal's address is not known yet (not registered, no base URL in the SOP)."""
    base = portal_address(
        conn, account_id, portal, sandbox_url=sandbox_url, sop_base_url=sop_base_url
    )
    if base is None:
        return set()
    try:
        origins = {url_origin(base)}
    except UrlRefused:
        return set()
    return origins | set(portal_allowed_origins(conn, account_id, portal))


def has_credentials(conn: Conn, account_id: int, portal: str) -> bool:
    """Whether the account stored a login for ``portal`` (one index lookup)."""
    return portal in send_credential_portals(conn, account_id)()


def send_credential_portals(conn: Conn, account_id: int) -> Callable[[], frozenset[str]]:
    """Send the query for the portals the account stored logins for; the callable reads them.

    One index range of the account's few logins, so it can be sent, in a pipeline, before the
    portal in question is known.
    """
    cursor = conn.execute(
        "SELECT portal FROM portal_credentials WHERE account_id = %s", (account_id,)
    )
    return lambda: frozenset(row["portal"] for row in cursor.fetchall())


# --- profiles ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredProfile:
    """The profile in force for a portal: the account's newest version, or the built-in one."""

    profile: Profile
    version: int | None  # None for the built-in profile
    builtin: bool
    created_at: datetime | None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


_PARSED: OrderedDict[str, Profile] = OrderedDict()
_PARSED_LOCK = threading.Lock()
PARSED_PROFILES_MAX = 64


def _parsed(digest: str, body: Callable[[], str]) -> Profile:
    """Each stored version is parsed once per process (it never changes); ``body`` on a miss."""
    with _PARSED_LOCK:
        if (hit := _PARSED.get(digest)) is not None:
            _PARSED.move_to_end(digest)
            return hit
    profile = load_profile(body(), STORED_SOP_LIMITS)
    with _PARSED_LOCK:
        _PARSED[digest] = profile
        while len(_PARSED) > PARSED_PROFILES_MAX:
            _PARSED.popitem(last=False)
    return profile


def active_profile(conn: Conn, account_id: int, portal: str) -> StoredProfile | None:
    """The account's newest profile version for ``portal``, else the built-in one, else None."""
    row = conn.execute(
        "SELECT id, portal, version, digest, created_at FROM portal_profiles"
        " WHERE account_id = %s AND portal = %s ORDER BY version DESC LIMIT 1",
        (account_id, portal),
    ).fetchone()
    if row is not None:
        return _stored_profile(conn, row)
    if portal in BUILTIN_PORTALS:
        return StoredProfile(builtin_profile(portal), None, True, None)
    return None


def profile_version(conn: Conn, account_id: int, portal: str, version: int) -> StoredProfile | None:
    """One of the account's stored versions of ``portal``'s profile, or None."""
    if version > MAX_INTEGER:
        return None
    row = conn.execute(
        "SELECT id, portal, version, digest, created_at FROM portal_profiles"
        " WHERE account_id = %s AND portal = %s AND version = %s",
        (account_id, portal, version),
    ).fetchone()
    return None if row is None else _stored_profile(conn, row)


def _stored_profile(conn: Conn, row: dict) -> StoredProfile:
    """The stored version, parsed; :class:`StoredProfileRefused` if this release's rules
    refuse it."""
    read: list[str] = []

    def body() -> str:
        sql = "SELECT body FROM portal_profiles WHERE id = %s"
        read.append(str(fetch_one(conn, sql, (row["id"],))["body"]))
        return read[0]

    try:
        profile = _parsed(row["digest"], body)
    except SopInvalid as err:
        raise StoredProfileRefused(
            err, portal=row["portal"], version=row["version"], text=read[0] if read else "",
            created_at=row["created_at"],
        ) from None  # fmt: skip
    return StoredProfile(profile, row["version"], False, row["created_at"])


def put_profile_version(
    conn: Conn, account_id: int, portal: str, body: str, *, max_versions: int
) -> tuple[int, bool]:
    """Store ``body`` (already validated) as the account's next version: (version, created).

    A body identical to the newest version stores nothing. A concurrent writer that took the
    same number makes ``ON CONFLICT`` skip, and the next round sees its commit. At
    ``max_versions`` the oldest versions no task names are dropped first, or
    :class:`QuotaExceeded` if none can be (:func:`shared.versions.drop_oldest`).
    """
    digest = _digest(body)
    # Writers of one account's profile of one portal take turns until the transaction ends
    # (a built-in portal's takes no quota lock): without it, N saves at once each lost the race
    # for max + 1 to another, and past 5 rounds a 500.
    hold_lock(conn, "profile-version", account_id, portal)
    for _ in range(5):
        newest = conn.execute(
            "SELECT version, digest FROM portal_profiles WHERE account_id = %s AND portal = %s"
            " ORDER BY version DESC LIMIT 1",
            (account_id, portal),
        ).fetchone()
        if newest is not None and newest["digest"] == digest:
            return newest["version"], False
        if newest is not None:
            drop_oldest(
                conn, "portal_profiles", account_id, portal, newest["version"], max_versions
            )
        version = (newest["version"] if newest else 0) + 1
        row = conn.execute(
            """
            INSERT INTO portal_profiles (account_id, portal, version, body, digest)
            VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT (account_id, portal, version) DO NOTHING
            RETURNING version
            """,
            (account_id, portal, version, body, digest),
        ).fetchone()
        if row is not None:
            return row["version"], True
    raise RuntimeError(f"could not number a new profile version of {portal} for {account_id}")


def profile_version_body(conn: Conn, account_id: int, portal: str, version: int) -> str | None:
    """The text of one stored version of a portal's profile, or None."""
    row = conn.execute(
        "SELECT body FROM portal_profiles WHERE account_id = %s AND portal = %s AND version = %s",
        (account_id, portal, version),
    ).fetchone()
    return None if row is None else str(row["body"])


def profile_versions(
    conn: Conn,
    account_id: int,
    portal: str,
    *,
    before: int | None = None,
    limit: int = HISTORY_SHOWN,
) -> list[dict]:
    """The account's versions of one portal's profile older than ``before``, newest first,
    without their bodies: at most ``limit + 1``, the extra one saying that there are more."""
    return versions_before(conn, "portal_profiles", account_id, portal, before=before, limit=limit)


def has_profile_versions(conn: Conn, account_id: int, portal: str) -> bool:
    """Whether the account stored a version of the portal's profile."""
    return has_versions(conn, "portal_profiles", account_id, portal)


def profiled_portals(conn: Conn, account_id: int) -> set[str]:
    """The portals the account stored a profile for."""
    rows = conn.execute(
        "SELECT DISTINCT portal FROM portal_profiles WHERE account_id = %s", (account_id,)
    ).fetchall()
    return {row["portal"] for row in rows}
