"""Bearer API keys. Every resource blueprint calls :func:`require_account` before each request."""

from __future__ import annotations

from flask import g, request

from api.errors import ApiError
from api.runtime import runtime
from shared import logs
from shared.accounts import VISIBLE_LEN, account_for_key, key_digest
from shared.db import outside_transaction

_NO_KEY = "Send your API key as 'Authorization: Bearer <key>'."


def _bearer_key() -> str | None:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def key_prefix() -> str | None:
    """The visible prefix of the request's API key (how the audit log names the caller)."""
    key = _bearer_key()
    return key[:VISIBLE_LEN] if key else None


def caller_account() -> int | None:
    """The account of the request's API key, or None; looked up once per request, and
    answered from the process's memory for a key it has seen since the last change to any key
    (:attr:`shared.runtime.Runtime.api_keys`).

    The rate limiter asks first (to count the request against the account), then
    :func:`require_account` reuses the answer.
    """
    if "caller_account" not in g:
        g.caller_account = None
        key = _bearer_key()
        if key is not None:

            def lookup() -> int | None:
                # One statement, no BEGIN and COMMIT around it: one round trip.
                with runtime().pool.connection() as conn, outside_transaction(conn):
                    return account_for_key(conn, key)

            try:
                g.caller_account = runtime().api_keys.get(key_digest(key), lookup)
            except Exception as exc:
                # The limiter swallows it and lets the request go on; require_account raises
                # it again rather than wait a second time on a database that is down.
                g.caller_error = exc
                raise
    return g.caller_account


def require_account() -> None:
    """Resolve the caller's account from ``Authorization: Bearer <key>`` into ``g.account_id``."""
    if _bearer_key() is None:
        raise ApiError(401, "unauthorized", _NO_KEY)
    if "caller_error" in g:
        raise g.caller_error
    account_id = caller_account()
    if account_id is None:
        raise ApiError(401, "unauthorized", "The API key is not valid or has been revoked.")
    g.account_id = account_id
    logs.bind(account_id=account_id)  # undone with the request (api.request_log)


def account_id() -> int:
    """The authenticated caller's account."""
    return int(g.account_id)
