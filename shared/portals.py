"""Portals an account registered (name -> base URL), and whether it can sign in to them.

The sandbox portal is built in: its address comes from settings, not from the ``portals`` table.
Credentials are written, read and listed by :mod:`shared.accounts`.
"""

from __future__ import annotations

from shared.db import Conn, fetch_one
from shared.ssrf import UrlRefused, url_origin

SANDBOX_PORTAL = "sandbox"


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
    """Where an SOP on ``portal`` runs: the SOP's own base URL, else the sandbox's (from
    settings), else the one the account registered; None when it is not known yet."""
    if sop_base_url:
        return sop_base_url
    if portal == SANDBOX_PORTAL:
        return sandbox_url
    return portal_base_url(conn, account_id, portal)


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
    row = conn.execute(
        "SELECT 1 FROM portal_credentials WHERE account_id = %s AND portal = %s",
        (account_id, portal),
    ).fetchone()
    return row is not None
