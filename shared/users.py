"""Console users: members of an account, their roles, invites, passwords and sessions.

Passwords are hashed with scrypt, in werkzeug.security's format. Every password hash of one
email shares one salt, so a sign-in derives one key whatever the number of accounts the email is
a user of, and its timing tells nothing about them. An invite is a one-time token whose
digest alone is stored; the person who opens it chooses the password. A session is a random
token in an HttpOnly cookie; only its digest is stored, with the session's CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from werkzeug.security import check_password_hash, gen_salt

from shared import quotas
from shared.db import Conn

MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 256
MAX_EMAIL_CHARS = 254
# The accounts one sign-in looks at for an email (their password hashes share a salt, so they
# cost one scrypt derivation together).
MAX_ACCOUNTS_PER_EMAIL = 20
# werkzeug's scrypt parameters and salt length, which every new password hash takes unless the
# email's other hashes have their own.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1
_SALT_CHARS = 16


@dataclass(frozen=True)
class _Scrypt:
    """A stored scrypt password hash, ``scrypt:N:r:p$salt$hex`` (werkzeug's format), in parts."""

    n: int
    r: int
    p: int
    salt: str
    digest: str

    @property
    def method(self) -> str:
        return f"scrypt:{self.n}:{self.r}:{self.p}"

    @property
    def key(self) -> tuple[str, str]:
        """What the derivation depends on besides the password: hashes with the same key are
        checked with one derivation."""
        return self.method, self.salt

    def derive(self, password: str) -> str:
        """The hex digest of ``password`` with this salt and these parameters: one scrypt
        derivation, with the memory bound werkzeug gives it."""
        n, r, p = self.n, self.r, self.p
        return hashlib.scrypt(
            password.encode(), salt=self.salt.encode(), n=n, r=r, p=p, maxmem=132 * n * r * p
        ).hex()

    def text(self) -> str:
        return f"{self.method}${self.salt}${self.digest}"


def _parse_scrypt(pwhash: str | None) -> _Scrypt | None:
    """The parts of a stored scrypt hash, or None for any other (or malformed) hash."""
    method, _, rest = (pwhash or "").partition("$")
    salt, _, digest = rest.partition("$")
    name, *args = method.split(":")
    if name != "scrypt" or len(args) != 3 or not salt or not digest:
        return None
    try:
        n, r, p = map(int, args)
    except ValueError:
        return None
    return _Scrypt(n, r, p, salt, digest)


def scrypt_hash(password: str, like: str | None = None) -> str:
    """A scrypt hash of ``password`` in werkzeug's format (``check_password_hash`` reads it),
    with the salt and parameters of ``like`` when that is a scrypt hash, else with a fresh
    random salt and werkzeug's parameters. Passing the hash of the email's password in another
    account keeps one salt per email, so that signing in costs one derivation."""
    shape = _parse_scrypt(like) or _Scrypt(
        _SCRYPT_N, _SCRYPT_R, _SCRYPT_P, gen_salt(_SALT_CHARS), ""
    )
    return _Scrypt(shape.n, shape.r, shape.p, shape.salt, shape.derive(password)).text()


# Compared against when the email is unknown, so a wrong email costs as much time as a wrong
# password (one derivation) and the answer's timing does not tell which emails exist.
_DUMMY_HASH = scrypt_hash("not a password of anyone")
# The hash whose salt and parameters the email's password hashes share: the scrypt one of its
# lowest account (deterministic; a password set anew takes it from the other accounts).
_SHARED_HASH_SQL = """
    SELECT password_hash FROM users
     WHERE lower(email) = lower(%(email)s) AND password_hash LIKE 'scrypt:%%'
       AND (%(except)s::bigint IS NULL OR id <> %(except)s)
     ORDER BY account_id LIMIT 1
"""


class Role(StrEnum):
    VIEWER = "viewer"  # reads everything
    OPERATOR = "operator"  # and acts on tasks and webhooks
    ADMIN = "admin"  # and edits SOPs and portals, and invites users


_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


def role_allows(role: str, needed: Role) -> bool:
    """Whether ``role`` may do what ``needed`` may (roles are ordered viewer < operator < admin)."""
    return _RANK.get(Role(role), -1) >= _RANK[needed]


class UserError(ValueError):
    """An invite or a password that cannot be accepted; the message says why."""


@dataclass(frozen=True)
class User:
    id: int
    account_id: int
    email: str
    role: str


@dataclass(frozen=True)
class Session:
    user: User
    csrf_token: str
    account_name: str  # shown beside the user: one person may be a user of several accounts


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normalize_email(email: str) -> str:
    value = email.strip().lower()
    if not 3 <= len(value) <= MAX_EMAIL_CHARS or value.count("@") != 1 or " " in value:
        raise UserError("That is not an email address.")
    return value


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise UserError(f"A password must be at least {MIN_PASSWORD_CHARS} characters.")
    if len(password) > MAX_PASSWORD_CHARS:
        raise UserError(f"A password must be at most {MAX_PASSWORD_CHARS} characters.")


def invite_user(
    conn: Conn, *, account_id: int, email: str, role: str, ttl_s: float, limit: int
) -> str:
    """Invite a person to the account with a role; the one-time invite token, shown once.

    Inviting an email already in this account issues a new token and sets the role; its
    password (if any) stays valid until the new invite is used, and a disabled user stays
    disabled until then. A lower role for the account's last admin who can sign in is refused
    (the account would have nobody to invite an admin), and so is a new email when the account
    has ``limit`` users (``MAX_USERS``; disabled ones count, as their rows stay). An email may be
    a user of several accounts, each with its own role and password: inviting it tells nothing
    of the others.
    """
    address = normalize_email(email)
    try:
        role = Role(role)
    except ValueError as err:
        raise UserError(f"The role must be one of: {', '.join(Role)}.") from err
    if role != Role.ADMIN and _is_last_admin(conn, account_id, email=address):
        raise UserError(
            f"{address} is the account's only admin: invite another admin first, or keep the"
            " role admin."
        )
    counts = (
        "SELECT count(*) FILTER (WHERE lower(email) <> %(email)s) AS others,"
        " count(*) FILTER (WHERE lower(email) = %(email)s) AS known"
        " FROM users WHERE account_id = %(account)s"
    )
    if not quotas.has_room(
        conn, account_id, "users", limit, counts, {"email": address, "account": account_id}
    ):
        raise UserError(f"The account has {limit} users (MAX_USERS), disabled ones included.")
    token = secrets.token_urlsafe(32)
    conn.execute(
        """
        INSERT INTO users (account_id, email, role, invite_digest, invite_expires_at)
        VALUES (%(account)s, %(email)s, %(role)s, %(digest)s,
                now() + make_interval(secs => %(ttl)s))
        ON CONFLICT (account_id, lower(email)) DO UPDATE
           SET role = EXCLUDED.role, invite_digest = EXCLUDED.invite_digest,
               invite_expires_at = EXCLUDED.invite_expires_at, updated_at = now()
        """,
        {"account": account_id, "email": address, "role": role, "digest": _digest(token),
         "ttl": ttl_s},
    )  # fmt: skip
    return token


def _is_last_admin(
    conn: Conn, account_id: int, *, email: str | None = None, user_id: int | None = None
) -> bool:
    """Whether the user (by ``email`` or ``user_id``) is the account's only enabled admin with a
    password, who alone could invite an admin. Holds a lock on the account's users until the
    transaction ends, so two admins who lower each other's role at once are taken in turn (the
    second is refused)."""
    quotas.lock(conn, account_id, "users")
    row = conn.execute(
        """
        SELECT count(*) AS admins,
               count(*) FILTER (WHERE lower(email) = %(email)s OR id = %(id)s) AS named
          FROM users
         WHERE account_id = %(account)s AND role = 'admin' AND disabled_at IS NULL
           AND password_hash IS NOT NULL
        """,
        {"account": account_id, "email": email, "id": user_id},
    ).fetchone()
    return row is not None and row["admins"] == 1 and row["named"] == 1


def invited_user(conn: Conn, token: str) -> User | None:
    """The user a live invite token is for, or None (unknown, used or expired)."""
    row = conn.execute(
        "SELECT id, account_id, email, role FROM users"
        " WHERE invite_digest = %s AND invite_expires_at > now()",
        (_digest(token),),
    ).fetchone()
    return User(**row) if row else None


def _shared_hash(conn: Conn, email: str, except_id: int | None = None) -> str | None:
    """The stored hash whose salt and parameters the email's password hashes share (not the
    user ``except_id``'s own), or None when the email has no scrypt hash yet."""
    row = conn.execute(_SHARED_HASH_SQL, {"email": email, "except": except_id}).fetchone()
    return row["password_hash"] if row else None


def accept_invite(conn: Conn, token: str, password: str) -> User:
    """Set the password of the invited user (enabled again if it was disabled); the token is
    used up. The hash takes the salt of the email's password hashes in other accounts, so
    signing in stays one derivation however many accounts the email is a user of."""
    check_password(password)
    invited = invited_user(conn, token)
    if invited is None:
        raise UserError("This invite is not valid any more: ask an admin for a new one.")
    # Two first passwords of one email, set at once, are taken in turn and so share a salt.
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('password:' || lower(%s), 0))",
        (invited.email,),
    )
    pwhash = scrypt_hash(password, _shared_hash(conn, invited.email, invited.id))
    row = conn.execute(
        """
        UPDATE users SET password_hash = %s, invite_digest = NULL, invite_expires_at = NULL,
                         disabled_at = NULL, updated_at = now()
         WHERE id = %s AND invite_digest = %s AND invite_expires_at > now()
        RETURNING id, account_id, email, role
        """,
        (pwhash, invited.id, _digest(token)),
    ).fetchone()
    if row is None:
        raise UserError("This invite is not valid any more: ask an admin for a new one.")
    # A new password ends the sessions made with the old one.
    conn.execute("DELETE FROM user_sessions WHERE user_id = %s", (row["id"],))
    return User(**row)


def authenticate(
    conn: Conn, email: str, password: str, account_id: int | None = None
) -> list[User]:
    """The users these credentials sign in: one for each account where the email is an enabled
    user with this password (the first ``MAX_ACCOUNTS_PER_EMAIL`` accounts), or only in
    ``account_id`` when given; none when they are wrong.

    One scrypt derivation for each distinct salt among the email's hashes, which share one (see
    :func:`scrypt_hash`): one, whatever the number of accounts, and one for an unknown email
    too, so the timing tells neither whether the email exists nor how many accounts it is a user
    of. A hash stored with a salt of its own costs one more until its password is used: then it
    is hashed again with the shared salt."""
    rows = conn.execute(
        """
        SELECT id, account_id, email, role, password_hash FROM users
         WHERE lower(email) = lower(%(email)s) AND disabled_at IS NULL
           AND password_hash IS NOT NULL
           AND (%(account)s::bigint IS NULL OR account_id = %(account)s)
         ORDER BY account_id LIMIT %(limit)s
        """,
        {"email": email.strip(), "account": account_id, "limit": MAX_ACCOUNTS_PER_EMAIL},
    ).fetchall()
    given = password[:MAX_PASSWORD_CHARS]
    if not rows:
        _matches([_DUMMY_HASH], given)
        return []
    checks = _matches([row["password_hash"] for row in rows], given)
    matched = [row for row, ok in zip(rows, checks, strict=True) if ok]
    if matched:
        _converge(conn, email.strip(), matched, given)
    return [User(row["id"], row["account_id"], row["email"], row["role"]) for row in matched]


def _matches(hashes: list[str], password: str) -> list[bool]:
    """Whether ``password`` is the one of each stored hash, with one scrypt derivation per
    distinct salt and parameters; a hash of another kind is checked on its own by werkzeug."""
    derived: dict[tuple[str, str], str] = {}
    result = []
    for pwhash in hashes:
        parts = _parse_scrypt(pwhash)
        if parts is None:
            result.append(check_password_hash(pwhash, password))
            continue
        if parts.key not in derived:
            derived[parts.key] = parts.derive(password)
        result.append(hmac.compare_digest(derived[parts.key].encode(), parts.digest.encode()))
    return result


def _converge(conn: Conn, email: str, matched: list[dict], password: str) -> None:
    """Hash again, with the email's shared salt, the password of each matched user whose hash
    has a salt of its own (stored before hashes shared one): its next sign-in costs nothing
    more. Known only now, as the password was right. A hash changed meanwhile is left alone."""
    shared = _parse_scrypt(_shared_hash(conn, email))
    if shared is None:
        return
    stale = [row for row in matched if _key_of(row["password_hash"]) != shared.key]
    if not stale:
        return
    pwhash = scrypt_hash(password, shared.text())
    for row in stale:
        conn.execute(
            "UPDATE users SET password_hash = %s WHERE id = %s AND password_hash = %s",
            (pwhash, row["id"], row["password_hash"]),
        )


def _key_of(pwhash: str) -> tuple[str, str] | None:
    """The salt and parameters of a scrypt hash (see :attr:`_Scrypt.key`), None for another."""
    parts = _parse_scrypt(pwhash)
    return parts.key if parts else None


def accounts_of_email(conn: Conn, email: str) -> list[int]:
    """The accounts an email is a user of (for recording a failed sign-in in their audit
    logs), the first ``MAX_ACCOUNTS_PER_EMAIL``."""
    rows = conn.execute(
        "SELECT account_id FROM users WHERE lower(email) = lower(%s) ORDER BY account_id LIMIT %s",
        (email.strip(), MAX_ACCOUNTS_PER_EMAIL),
    ).fetchall()
    return [int(row["account_id"]) for row in rows]


def account_names(conn: Conn, signed_in: list[User]) -> list[dict]:
    """``{"id", "name"}`` of the accounts these users are of, by name: what a person whose
    credentials open several accounts chooses from."""
    return conn.execute(
        "SELECT id, name FROM accounts WHERE id = ANY(%s) ORDER BY name, id",
        ([user.account_id for user in signed_in],),
    ).fetchall()


def start_session(conn: Conn, user_id: int, ttl_s: float) -> str:
    """A new session for the user; the cookie's token, which is never stored."""
    token = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO user_sessions (user_id, token_digest, csrf_token, expires_at)"
        " VALUES (%s, %s, %s, now() + make_interval(secs => %s))",
        (user_id, _digest(token), secrets.token_urlsafe(32), ttl_s),
    )
    conn.execute("DELETE FROM user_sessions WHERE user_id = %s AND expires_at < now()", (user_id,))
    return token


def session_for(conn: Conn, token: str) -> Session | None:
    """The live session of a cookie's token, with its user as of now (role, disabled)."""
    row = conn.execute(
        """
        SELECT u.id, u.account_id, u.email, u.role, s.csrf_token, a.name AS account_name
          FROM user_sessions s JOIN users u ON u.id = s.user_id
               JOIN accounts a ON a.id = u.account_id
         WHERE s.token_digest = %s AND s.expires_at > now() AND u.disabled_at IS NULL
        """,
        (_digest(token),),
    ).fetchone()
    if row is None:
        return None
    user = User(row["id"], row["account_id"], row["email"], row["role"])
    return Session(user, row["csrf_token"], row["account_name"])


def csrf_matches(session: Session, presented: str | None) -> bool:
    return tokens_match(session.csrf_token, presented)


def tokens_match(expected: str | None, presented: str | None) -> bool:
    """Whether a CSRF token presented is the one expected, in constant time; an empty one never
    is. (Compared as bytes: compare_digest refuses a str that is not ASCII with a TypeError.)"""
    if not expected or not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def end_session(conn: Conn, token: str) -> None:
    conn.execute("DELETE FROM user_sessions WHERE token_digest = %s", (_digest(token),))


def list_users(conn: Conn, account_id: int) -> list[dict]:
    """The account's users, oldest first: whether each has accepted the invite, never a hash."""
    return conn.execute(
        "SELECT id, email, role, password_hash IS NOT NULL AS active, invite_expires_at,"
        " created_at, disabled_at FROM users WHERE account_id = %s ORDER BY id",
        (account_id,),
    ).fetchall()


def get_user(conn: Conn, account_id: int, user_id: int) -> dict | None:
    return conn.execute(
        "SELECT id, email, role FROM users WHERE id = %s AND account_id = %s",
        (user_id, account_id),
    ).fetchone()


def disable_user(conn: Conn, account_id: int, user_id: int) -> bool:
    """Disable a user, end their sessions and void their invite. False if there is no such
    user; refused for the account's last admin (see :func:`invite_user`)."""
    if _is_last_admin(conn, account_id, user_id=user_id):
        raise UserError("That is the account's only admin: invite another admin first.")
    row = conn.execute(
        "UPDATE users SET disabled_at = now(), invite_digest = NULL, invite_expires_at = NULL,"
        " updated_at = now()"
        " WHERE id = %s AND account_id = %s RETURNING id",
        (user_id, account_id),
    ).fetchone()
    if row is None:
        return False
    conn.execute("DELETE FROM user_sessions WHERE user_id = %s", (user_id,))
    return True
