"""What a console sign-in costs (real Postgres): one scrypt derivation for an email, whatever the
number of accounts it is a user of, and one for an unknown email, so the answer's timing tells
nothing about them. Derivations are counted by wrapping ``hashlib.scrypt``, which both the
project's hashes and werkzeug's call.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from werkzeug.security import check_password_hash, generate_password_hash

from shared import users

PASSWORDS = ("first password here", "second password here", "third password here")
EMAIL = "ada@billing.test"


@pytest.fixture
def derivations(monkeypatch) -> list[int]:
    """Every scrypt derivation made from now on, one entry each."""
    calls: list[int] = []
    real = hashlib.scrypt

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    return calls


def make_user(runtime, account_id: int, password: str, email: str = EMAIL) -> int:
    """A user of the account who has accepted an invite with ``password``; its id."""
    with runtime.pool.connection() as conn:
        token = users.invite_user(
            conn, account_id=account_id, email=email, role="operator", ttl_s=3600, limit=100
        )
        return users.accept_invite(conn, token, password).id


def sign_in(runtime, derivations, email: str, password: str, account_id: int | None = None):
    """The accounts the credentials open, and the derivations the sign-in cost."""
    derivations.clear()
    with runtime.pool.connection() as conn:
        found = users.authenticate(conn, email, password, account_id)
    return sorted(user.account_id for user in found), len(derivations)


def stored_hash(runtime, user_id: int) -> str:
    with runtime.pool.connection() as conn:
        row = conn.execute("SELECT password_hash FROM users WHERE id = %s", (user_id,)).fetchone()
    return row["password_hash"]


def salt_of(pwhash: str) -> str:
    return pwhash.split("$")[1]


@pytest.fixture
def three_accounts(runtime, make_account) -> list[int]:
    """Three accounts the email is a user of, with a different password in each."""
    ids = [make_account(name).id for name in ("Clinic A", "Clinic B", "Clinic C")]
    for account_id, password in zip(ids, PASSWORDS, strict=True):
        make_user(runtime, account_id, password)
    return ids


def test_the_hash_is_werkzeugs_and_check_password_hash_reads_it():
    made = users.scrypt_hash(PASSWORDS[0])
    assert re.fullmatch(r"scrypt:32768:8:1\$[A-Za-z0-9]{16}\$[0-9a-f]{128}", made)
    assert check_password_hash(made, PASSWORDS[0])
    assert not check_password_hash(made, PASSWORDS[1])
    # with the salt and parameters of a hash werkzeug made, it is that very hash
    theirs = generate_password_hash(PASSWORDS[1], method="scrypt")
    assert users.scrypt_hash(PASSWORDS[1], like=theirs) == theirs
    other = users.scrypt_hash(PASSWORDS[2], like=theirs)
    assert salt_of(other) == salt_of(theirs) and check_password_hash(other, PASSWORDS[2])


def test_an_unknown_email_costs_one_derivation(runtime, derivations):
    assert sign_in(runtime, derivations, "nobody@billing.test", PASSWORDS[0]) == ([], 1)


def test_an_email_of_one_account_costs_one_derivation(runtime, account, derivations):
    make_user(runtime, account.id, PASSWORDS[0])
    assert sign_in(runtime, derivations, EMAIL, PASSWORDS[0]) == ([account.id], 1)
    assert sign_in(runtime, derivations, EMAIL, "not the password!") == ([], 1)


def test_an_email_of_three_accounts_costs_one_derivation_right_or_wrong(
    runtime, three_accounts, derivations
):
    for account_id, password in zip(three_accounts, PASSWORDS, strict=True):
        assert sign_in(runtime, derivations, EMAIL, password) == ([account_id], 1)
    assert sign_in(runtime, derivations, EMAIL, "not the password!") == ([], 1)
    assert sign_in(runtime, derivations, EMAIL.upper(), "not the password!") == ([], 1)


def test_the_hashes_of_one_email_share_a_salt_and_other_emails_do_not(
    runtime, make_account, three_accounts
):
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            "SELECT lower(email) AS email, password_hash FROM users ORDER BY account_id"
        ).fetchall()
    assert len({salt_of(row["password_hash"]) for row in rows}) == 1
    other = make_user(runtime, make_account("Clinic D").id, PASSWORDS[0], "bob@billing.test")
    assert salt_of(stored_hash(runtime, other)) != salt_of(rows[0]["password_hash"])
    # a password set anew, even in the lowest account, keeps the email's salt
    with runtime.pool.connection() as conn:
        first = conn.execute(
            "SELECT id FROM users WHERE account_id = %s", (three_accounts[0],)
        ).fetchone()["id"]
    make_user(runtime, three_accounts[0], "a new password here")
    assert salt_of(stored_hash(runtime, first)) == salt_of(rows[0]["password_hash"])


def test_each_account_takes_only_its_own_password_and_account_id_restricts(
    runtime, three_accounts, derivations
):
    first, second, third = three_accounts
    assert sign_in(runtime, derivations, EMAIL, PASSWORDS[1], second) == ([second], 1)
    assert sign_in(runtime, derivations, EMAIL, PASSWORDS[1], first) == ([], 1)
    assert sign_in(runtime, derivations, EMAIL, PASSWORDS[0], third) == ([], 1)
    # one password in two accounts opens both, still for one derivation
    make_user(runtime, third, PASSWORDS[0])
    assert sign_in(runtime, derivations, EMAIL, PASSWORDS[0]) == ([first, third], 1)


def test_a_disabled_user_is_refused(runtime, three_accounts, derivations):
    first, second, _ = three_accounts
    with runtime.pool.connection() as conn:
        user_id = conn.execute("SELECT id FROM users WHERE account_id = %s", (second,)).fetchone()[
            "id"
        ]
        assert users.disable_user(conn, second, user_id)
    assert sign_in(runtime, derivations, EMAIL, PASSWORDS[1]) == ([], 1)
    assert sign_in(runtime, derivations, EMAIL, PASSWORDS[0]) == ([first], 1)


def test_a_hash_with_a_salt_of_its_own_costs_one_more_until_its_password_is_used(
    runtime, three_accounts, derivations
):
    first, _, third = three_accounts
    # a hash stored before the email's hashes shared a salt: werkzeug's, with a salt of its own
    with runtime.pool.connection() as conn:
        legacy = conn.execute(
            "UPDATE users SET password_hash = %s WHERE account_id = %s RETURNING id",
            (generate_password_hash(PASSWORDS[2], method="scrypt"), third),
        ).fetchone()["id"]
    assert sign_in(runtime, derivations, EMAIL, "not the password!") == ([], 2)
    assert sign_in(runtime, derivations, EMAIL, PASSWORDS[0]) == ([first], 2)
    # signing in with its password hashes it again with the shared salt (one more derivation)
    assert sign_in(runtime, derivations, EMAIL, PASSWORDS[2]) == ([third], 3)
    rehashed = stored_hash(runtime, legacy)
    with runtime.pool.connection() as conn:
        shared = conn.execute(
            "SELECT password_hash FROM users WHERE account_id = %s", (first,)
        ).fetchone()["password_hash"]
    assert salt_of(rehashed) == salt_of(shared)
    assert check_password_hash(rehashed, PASSWORDS[2])
    # after which the email costs one derivation again, and every password still works
    assert sign_in(runtime, derivations, EMAIL, "not the password!") == ([], 1)
    for account_id, password in zip(three_accounts, PASSWORDS, strict=True):
        assert sign_in(runtime, derivations, EMAIL, password) == ([account_id], 1)
