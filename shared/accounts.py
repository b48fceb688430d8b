"""Accounts, API keys and portal credentials: the named queries of the account aggregate."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import MultiFernet

from shared.crypto import InvalidToken, decrypt_json, encrypt_json
from shared.db import Conn, fetch_one
from shared.webhooks import create_endpoint

KEY_PREFIX = "us_"
# The visible part: "us_" and 12 hex characters. The secret after it may contain "_".
VISIBLE_LEN = len(KEY_PREFIX) + 12
# Migration 0013's triggers NOTIFY it when a key is revoked or deleted (shared.memo).
API_KEYS_CHANNEL = "api_keys"


@dataclass(frozen=True)
class Credentials:
    """A portal login. ``repr`` hides the secrets so they never reach a log by accident."""

    username: str
    password: str
    totp_secret: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***, totp_secret=***)"


def key_digest(key: str) -> str:
    """What is stored of an API key (and what the API remembers it by): its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_account(conn: Conn, name: str) -> int:
    row = fetch_one(conn, "INSERT INTO accounts (name) VALUES (%s) RETURNING id", (name,))
    return int(row["id"])


@dataclass(frozen=True)
class NewAccount:
    """What :func:`provision_account` made. The key and the secret are shown this once."""

    account_id: int
    api_key: str
    webhook_secret: str


def provision_account(
    conn: Conn,
    fernet: MultiFernet,
    name: str,
    *,
    webhook_url: str | None = None,
    logins: Mapping[str, Credentials] | None = None,
) -> NewAccount:
    """An account with an API key, its webhook endpoint and secret, and a login per portal in
    ``logins``: what `understudy accounts create` and the tests' fixtures make.

    The caller checks ``webhook_url`` with :func:`shared.ssrf.check_url` first."""
    account_id = create_account(conn, name)
    api_key = create_api_key(conn, account_id, name="default")
    secret = create_endpoint(conn, fernet, account_id, webhook_url)
    for portal, credentials in (logins or {}).items():
        put_credentials(conn, fernet, account_id, portal, credentials)
    return NewAccount(account_id, api_key, secret)


def account_exists(conn: Conn, account_id: int) -> bool:
    row = conn.execute("SELECT 1 FROM accounts WHERE id = %s", (account_id,)).fetchone()
    return row is not None


def create_api_key(conn: Conn, account_id: int, name: str | None = None) -> str:
    """Make a key and store only its digest. The key itself is returned once, never again.

    Keys look like ``us_<12 visible chars>_<secret>``; the visible part identifies the key in
    listings and logs and is what we look it up by.
    """
    visible = KEY_PREFIX + secrets.token_hex(6)
    key = f"{visible}_{secrets.token_urlsafe(32)}"
    conn.execute(
        "INSERT INTO api_keys (account_id, prefix, digest, name) VALUES (%s, %s, %s, %s)",
        (account_id, visible, key_digest(key), name),
    )
    return key


def revoke_api_key(conn: Conn, prefix: str) -> bool:
    """Revoke by the visible prefix (or the whole key). True if a live key was revoked."""
    visible = prefix[:VISIBLE_LEN]
    row = conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE prefix = %s AND revoked_at IS NULL"
        " RETURNING id",
        (visible,),
    ).fetchone()
    return row is not None


def account_for_key(conn: Conn, presented: str) -> int | None:
    """The account a live key belongs to, comparing digests in constant time."""
    visible = presented[:VISIBLE_LEN]
    if not visible.startswith(KEY_PREFIX) or presented[VISIBLE_LEN : VISIBLE_LEN + 1] != "_":
        return None
    row = conn.execute(
        "SELECT account_id, digest FROM api_keys WHERE prefix = %s AND revoked_at IS NULL",
        (visible,),
    ).fetchone()
    if row is None or not hmac.compare_digest(row["digest"], key_digest(presented)):
        return None
    return int(row["account_id"])


def put_credentials(
    conn: Conn, fernet: MultiFernet, account_id: int, portal: str, creds: Credentials
) -> None:
    token = encrypt_json(fernet, {"password": creds.password, "totp_secret": creds.totp_secret})
    conn.execute(
        """
        INSERT INTO portal_credentials (account_id, portal, username, secret_token)
        VALUES (%s, %s, %s, %s)
        ON CONFLICT (account_id, portal)
        DO UPDATE SET username = EXCLUDED.username, secret_token = EXCLUDED.secret_token,
                      updated_at = now()
        """,
        (account_id, portal, creds.username, token),
    )


def load_credentials(
    conn: Conn, fernet: MultiFernet, account_id: int, portal: str
) -> Credentials | None:
    row = conn.execute(
        "SELECT username, secret_token FROM portal_credentials"
        " WHERE account_id = %s AND portal = %s",
        (account_id, portal),
    ).fetchone()
    if row is None:
        return None
    secret = decrypt_json(fernet, row["secret_token"])
    return Credentials(row["username"], secret["password"], secret.get("totp_secret"))


def credentials_version(conn: Conn, account_id: int, portal: str) -> str | None:
    """When the portal's credentials were last stored: a browser signed in with an older
    version is not reused."""
    row = conn.execute(
        "SELECT updated_at FROM portal_credentials WHERE account_id = %s AND portal = %s",
        (account_id, portal),
    ).fetchone()
    return row["updated_at"].isoformat() if row else None


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


def delete_credentials(conn: Conn, account_id: int, portal: str) -> bool:
    row = conn.execute(
        "DELETE FROM portal_credentials WHERE account_id = %s AND portal = %s RETURNING portal",
        (account_id, portal),
    ).fetchone()
    return row is not None


def list_accounts(conn: Conn) -> list[dict]:
    """Every account with its fair-share weight and count of live API keys, oldest first."""
    return conn.execute(
        "SELECT a.id, a.name, a.share, a.created_at,"
        " (SELECT count(*) FROM api_keys k WHERE k.account_id = a.id AND k.revoked_at IS NULL)"
        " AS live_keys FROM accounts a ORDER BY a.id"
    ).fetchall()


# The bounds of an account's fair-share weight (migration 0032 says why; the table checks it).
SHARE_MIN, SHARE_MAX = 1, 100


def set_share(conn: Conn, account_id: int, share: int) -> bool:
    """Give an account its weight in fair share (shared.tasks.claim_task): with both waiting,
    an account of share N runs N tasks for each one an account of share 1 runs. The operator's
    to set, not the clinic's. ValueError outside SHARE_MIN..SHARE_MAX; False when there is no
    such account.
    """
    if not SHARE_MIN <= share <= SHARE_MAX:
        raise ValueError(f"share must be from {SHARE_MIN} to {SHARE_MAX}, not {share}")
    row = conn.execute(
        "UPDATE accounts SET share = %s WHERE id = %s RETURNING id", (share, account_id)
    ).fetchone()
    return row is not None


def list_api_keys(conn: Conn, account_id: int | None = None) -> list[dict]:
    """API keys by their visible prefix (never the key itself), optionally for one account."""
    return conn.execute(
        "SELECT account_id, prefix, name, created_at, revoked_at FROM api_keys"
        " WHERE %(account)s::bigint IS NULL OR account_id = %(account)s ORDER BY id",
        {"account": account_id},
    ).fetchall()


# The columns of ``accounts`` that PUT /settings sets.
SETTINGS = ("review_required_types", "review_timeout_hours", "retention_days")


def account_settings(conn: Conn, account_id: int) -> dict[str, Any]:
    """The account's settings: the task types whose tasks a person must approve before their
    irreversible step, how many hours such a task waits for it (shared.review), and how many
    days its ended tasks are kept (shared.retention)."""
    return fetch_one(
        conn,
        f"SELECT {', '.join(SETTINGS)} FROM accounts WHERE id = %s",
        (account_id,),
    )


def update_account_settings(conn: Conn, account_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    """Set the settings named in ``changes`` (the others stay); the settings as stored."""
    if unknown := set(changes) - set(SETTINGS):
        raise ValueError(f"not settings: {sorted(unknown)}")
    if "review_required_types" in changes:
        types = list(dict.fromkeys(changes["review_required_types"]))
        changes = {**changes, "review_required_types": types}
    assignments = ", ".join(f"{name} = %({name})s" for name in changes)
    return fetch_one(
        conn,
        f"UPDATE accounts SET {assignments} WHERE id = %(account_id)s"
        f" RETURNING {', '.join(SETTINGS)}",
        {**changes, "account_id": account_id},
    )
