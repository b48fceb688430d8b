"""Bearer API keys. Every resource blueprint calls :func:`require_account` before each request."""

from __future__ import annotations

from flask import g, request

from api.errors import ApiError
from api.runtime import runtime
from shared.accounts import account_for_key


def require_account() -> None:
    """Resolve the caller's account from ``Authorization: Bearer <key>`` into ``g.account_id``."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "unauthorized", "Send your API key as 'Authorization: Bearer <key>'.")
    with runtime().pool.connection() as conn:
        account_id = account_for_key(conn, key.strip())
    if account_id is None:
        raise ApiError(401, "unauthorized", "The API key is not valid or has been revoked.")
    g.account_id = account_id


def account_id() -> int:
    """The authenticated caller's account."""
    return int(g.account_id)
