"""Portals an account registered (name -> base URL) and what it stored to sign in to them.

The sandbox portal is built in: its address comes from settings, not from the ``portals`` table.
Credentials themselves are written and read by :mod:`shared.accounts`; this module only says,
without revealing anything secret, which portals have them.
"""

from __future__ import annotations

from cryptography.fernet import MultiFernet

from shared.crypto import InvalidToken, decrypt_json
from shared.db import Conn, fetch_one

SANDBOX_PORTAL = "sandbox"


def put_portal(conn: Conn, account_id: int, name: str, base_url: str) -> dict:
    return fetch_one(
        conn,
        """
        INSERT INTO portals (account_id, name, base_url) VALUES (%s, %s, %s)
        ON CONFLICT (account_id, name)
        DO UPDATE SET base_url = EXCLUDED.base_url, updated_at = now()
        RETURNING name, base_url, created_at, updated_at
        """,
        (account_id, name, base_url),
    )


def list_portals(conn: Conn, account_id: int) -> list[dict]:
    return conn.execute(
        "SELECT name, base_url, created_at, updated_at FROM portals"
        " WHERE account_id = %s ORDER BY name",
        (account_id,),
    ).fetchall()


def delete_portal(conn: Conn, account_id: int, name: str) -> bool:
    row = conn.execute(
        "DELETE FROM portals WHERE account_id = %s AND name = %s RETURNING name",
        (account_id, name),
    ).fetchone()
    return row is not None


def credentials_overview(
    conn: Conn, fernet: MultiFernet, account_id: int, portal: str | None = None
) -> list[dict]:
    """Portal, username, has_totp and times for each stored login; never a secret.

    ``has_totp`` lives inside the encrypted token, so it is decrypted here and only the flag
    leaves. A token no configured key can read (a key retired too early) gives ``None``.
    """
    sql = (
        "SELECT portal, username, secret_token, created_at, updated_at FROM portal_credentials"
        " WHERE account_id = %s"
    )
    params: list[object] = [account_id]
    if portal is not None:
        sql += " AND portal = %s"
        params.append(portal)
    rows = conn.execute(sql + " ORDER BY portal", params).fetchall()
    return [
        {**_without_token(row), "has_totp": _has_totp(fernet, row["secret_token"])} for row in rows
    ]


def _without_token(row: dict) -> dict:
    return {key: value for key, value in row.items() if key != "secret_token"}


def _has_totp(fernet: MultiFernet, token: bytes) -> bool | None:
    try:
        return bool(decrypt_json(fernet, bytes(token)).get("totp_secret"))
    except InvalidToken:
        return None


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
