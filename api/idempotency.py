"""The ``Idempotency-Key`` header: a request sent again under its key is carried out once.

Every ``POST`` that changes something, and every ``DELETE``, honours it, as with Stripe: for
``IDEMPOTENCY_TTL`` (24 hours) the same key with the same request replays the first answer and
changes nothing more; the same key with another request (another body, method or path) is 409
``idempotency_conflict``. A replayed answer carries ``Idempotent-Replayed: true``, and its audit
entry says ``"replayed": true``. A ``PUT`` sets a state, so sent twice it sets the same one; the
one that also makes something to show once (the webhook endpoint's secret) takes the key too.

Creations store their answer in their own pipeline (:mod:`api.tasks`). Every other call goes
through :func:`respond_once`, which claims the key in the handler's own transaction: the answer
commits with the change, or neither does. Only a success is stored: a refusal (a 404, a 409)
changed nothing, so sending it again is safe as it is, and answers what holds then. The stored
answer is encrypted (it may be a webhook secret, shown once).

Keys are the account's own: one account's key never answers for another.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

from flask import Flask, Response, current_app, g, jsonify, request
from psycopg.types.json import Jsonb

from api.audit import call_name, describe_call
from api.auth import account_id
from api.errors import ApiError
from api.runtime import runtime
from shared import logs, metrics
from shared.crypto import InvalidToken, keyed_digest
from shared.db import Conn
from shared.retention import IDEMPOTENCY_TTL

REPLAYED_HEADER = "Idempotent-Replayed"


class Answer(NamedTuple):
    body: dict[str, Any] | None  # None: no content (a DELETE's 204)
    status: int
    replayed: bool  # the stored answer of an earlier request: nothing was done now


def request_key() -> str | None:
    """The request's ``Idempotency-Key``, if it sent one."""
    return request.headers.get("Idempotency-Key", "").strip() or None


def request_digests(parts: list[bytes]) -> list[str]:
    """The request's keyed digest under each key, newest first (the first is the one stored).

    Keyed, because a body may hold a sensitive input (a one-time code, a patient's data): a
    plain hash of it in the database could be checked against guesses.
    """
    return [keyed_digest(key, parts) for key in runtime().digest_keys]


def send_drop_expired(conn: Conn, key: str) -> None:
    """Send the removal of this key's stored answer if it is past its TTL: the key is free."""
    conn.execute(
        "DELETE FROM idempotency_keys WHERE account_id = %s AND key = %s"
        f" AND created_at < now() - interval '{IDEMPOTENCY_TTL}'",
        (account_id(), key),
    )


def conflict(
    key: str, message: str = "This Idempotency-Key was already used with a different request."
) -> ApiError:
    return ApiError(409, "idempotency_conflict", message, {"idempotency_key": key})


def mark_replayed(**detail: Any) -> None:
    """This call answers with a stored answer: its header and its audit entry say so."""
    g.idempotent_replayed = True
    describe_call(**detail, replayed=True)
    logs.bind(replayed=True)
    metrics.IDEMPOTENT_REPLAYS.labels(call_name()).inc()


Carried = tuple[dict[str, Any] | None, int]  # what a call answers, and its status


def answer_once(conn: Conn, carry_out: Callable[[Conn], Carried], key: str | None = None) -> Answer:
    """``carry_out(conn)`` (the answer and its status) in ``conn``'s open transaction, once per
    ``Idempotency-Key`` (or ``key``: a console form's own): a request sent again under its key
    gets the stored answer instead.

    The key is claimed first: a second request under it, sent while the first runs, waits for
    the first to commit, then replays its answer. Whatever ``carry_out`` raises rolls the claim
    back with its change, when the caller's transaction ends.
    """
    key = key or request_key()
    if key is None:
        return Answer(*carry_out(conn), replayed=False)
    digests = request_digests(_request_parts())
    send_drop_expired(conn, key)
    claimed = conn.execute(
        "INSERT INTO idempotency_keys"
        " (account_id, key, request_digest, response_status, response_body)"
        " VALUES (%s, %s, %s, 0, 'null') ON CONFLICT DO NOTHING RETURNING true",
        (account_id(), key, digests[0]),
    ).fetchone()
    if claimed is None:
        return _replay(conn, key, digests)
    body, status = carry_out(conn)
    # Written as the answer's own JSON is (dates as the API writes them), so a replay is the same
    sealed = runtime().fernet.encrypt(current_app.json.dumps(body).encode()).decode()
    conn.execute(
        "UPDATE idempotency_keys SET response_status = %s, response_body = %s"
        " WHERE account_id = %s AND key = %s",
        (status, Jsonb({"sealed": sealed}), account_id(), key),
    )
    return Answer(body, status, replayed=False)


def respond_once(carry_out: Callable[[Conn], Carried], after: Callable[[], None] | None = None):
    """The response of ``carry_out`` (:func:`answer_once`), in a transaction of its own; then
    ``after()``, once that committed, unless the answer is a replay (the first call ran it)."""
    with runtime().pool.connection() as conn:
        answer = answer_once(conn, carry_out)
    if after is not None and not answer.replayed:
        after()
    if answer.body is None:
        return "", answer.status
    return jsonify(answer.body), answer.status


def _replay(conn: Conn, key: str, digests: list[str]) -> Answer:
    row = conn.execute(
        "SELECT request_digest, response_status, response_body FROM idempotency_keys"
        " WHERE account_id = %s AND key = %s",
        (account_id(), key),
    ).fetchone()
    if row is None or row["request_digest"] not in digests or "sealed" not in row["response_body"]:
        raise conflict(key)  # gone since (dropped at its TTL), or a creation's key
    try:
        body = json.loads(runtime().fernet.decrypt(row["response_body"]["sealed"].encode()))
    except InvalidToken:  # sealed with a key since removed from ENCRYPTION_KEYS
        raise conflict(
            key,
            "This Idempotency-Key was used in the last 24 hours, and its answer can no longer"
            " be read: read what the call changes, and send it under a new key if needed.",
        ) from None
    mark_replayed()
    return Answer(body, row["response_status"], replayed=True)


def _request_parts() -> list[bytes]:
    """What makes two requests the same: the method, the path and the body's values (JSON or
    a form's fields, whatever their order and spacing)."""
    if request.is_json:
        content = json.dumps(request.get_json(silent=True), sort_keys=True).encode()
    elif request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        content = json.dumps(request.form.to_dict(flat=False), sort_keys=True).encode()
    else:
        content = request.get_data()
    return [request.method.encode(), request.path.encode(), content]


def _say_replayed(response: Response) -> Response:
    if g.get("idempotent_replayed"):
        response.headers[REPLAYED_HEADER] = "true"
    return response


def init_app(app: Flask) -> None:
    app.after_request(_say_replayed)
