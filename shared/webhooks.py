"""The webhook aggregate: endpoints, the outbox of messages, signing, and the SSRF address policy.

Used by the API (endpoint config, message log, redelivery), the worker (the outbox insert, in the
transaction that finishes a task), the scheduler (claiming due messages) and the dispatcher
(signing; its delivery queries live in ``dispatcher.delivery``).

Signing follows Standard Webhooks: ``webhook-signature: v1,<base64 HMAC-SHA256>`` over
``"{webhook-id}.{webhook-timestamp}.{body}"``, keyed with the bytes base64-encoded after ``whsec_``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from cryptography.fernet import MultiFernet
from psycopg.types.json import Jsonb

from shared.celery import DELIVER_WEBHOOK, send_message
from shared.db import Conn, hold_lock, whole_number
from shared.settings import Settings
from shared.tasks import (
    BATCH_FINISHED,
    TASK_FINISHED,
    TASK_PENDING_REVIEW,
    TASK_WAITING_FOR_INPUT,
    TASK_WAITING_FOR_PORTAL,
    iso,
)

if TYPE_CHECKING:
    from shared.runtime import Runtime

SECRET_PREFIX = "whsec_"  # noqa: S105 (a format prefix, not a secret)
SECRET_BYTES = 32
PING = "ping"
EVENTS = (
    TASK_FINISHED, TASK_WAITING_FOR_INPUT, TASK_PENDING_REVIEW, TASK_WAITING_FOR_PORTAL,
    BATCH_FINISHED, PING,
)  # fmt: skip
# What an endpoint's filter_types may name (a ping is always sent). The default, what every
# endpoint received before the filter existed, is task_finished alone.
FILTER_TYPES = (
    TASK_FINISHED, TASK_WAITING_FOR_INPUT, TASK_PENDING_REVIEW, TASK_WAITING_FOR_PORTAL,
    BATCH_FINISHED,
)  # fmt: skip
DEFAULT_FILTER_TYPES = (TASK_FINISHED,)


class MessageStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    # Retries exhausted: dead-lettered, redeliverable one by one or with "recover since T".
    FAILED = "failed"
    # The receiver answered ``webhook-delivery: abort-message``: never retried on our own, and
    # left out of "recover", but a person may still redeliver it.
    ABORTED = "aborted"


FINAL_MESSAGE_STATUSES = frozenset(
    {MessageStatus.DELIVERED, MessageStatus.FAILED, MessageStatus.ABORTED}
)


# --- Secrets and signatures ------------------------------------------------------------------


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def _hmac_b64(secret: str, data: bytes) -> str:
    return base64.b64encode(hmac.new(secret_key(secret), data, hashlib.sha256).digest()).decode()


def header_signature(
    signing_secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> str:
    """The ``webhook-signature`` value: one ``v1,<sig>`` per valid secret, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(f"v1,{_hmac_b64(secret, signed)}" for secret in signing_secrets)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes the body's ``signature`` field covers."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def body_signature(secret: str, *, event: str, created_at: str, data: Any) -> str:
    """The envelope's own ``signature``: base64 HMAC-SHA256 of the canonical JSON of the rest."""
    return _hmac_b64(
        secret, canonical_json({"event": event, "created_at": created_at, "data": data})
    )


def envelope_body(secret: str, *, event: str, created_at: str, data: Any) -> bytes:
    """The request body: the reference envelope, signed with the current secret."""
    signature = body_signature(secret, event=event, created_at=created_at, data=data)
    envelope = {"signature": signature, "event": event, "created_at": created_at, "data": data}
    return json.dumps(envelope, separators=(",", ":")).encode()


def new_msg_id() -> str:
    return "msg_" + secrets.token_hex(12)


# --- Endpoints -------------------------------------------------------------------------------


def create_endpoint(conn: Conn, fernet: MultiFernet, account_id: int, url: str | None) -> str:
    """Give a new account its endpoint with a fresh secret; return the secret (shown once).

    The caller checks ``url`` with :func:`check_url` first."""
    secret = make_endpoint(conn, fernet, account_id, url)
    if secret is None:
        raise ValueError(f"account {account_id} has a webhook endpoint already")
    return secret


def make_endpoint(conn: Conn, fernet: MultiFernet, account_id: int, url: str | None) -> str | None:
    """Give the account its endpoint with a fresh secret unless it has one: the secret (shown
    once), or None. Of two made at once, the second waits for the first to commit and finds
    it made."""
    secret = new_secret()
    made = conn.execute(
        "INSERT INTO webhook_endpoints (account_id, url, secret_token) VALUES (%s, %s, %s)"
        " ON CONFLICT (account_id) DO NOTHING RETURNING account_id",
        (account_id, url, fernet.encrypt(secret.encode())),
    ).fetchone()
    return secret if made is not None else None


def get_endpoint(conn: Conn, account_id: int) -> dict | None:
    return conn.execute(
        "SELECT * FROM webhook_endpoints WHERE account_id = %s", (account_id,)
    ).fetchone()


def update_endpoint(
    conn: Conn,
    account_id: int,
    *,
    url: str | None | object = ...,
    enabled: bool | None = None,
    filter_types: Sequence[str] | None = None,
) -> dict | None:
    """Change the URL, the enabled flag and/or the event types received. Enabling a disabled
    endpoint clears its failure record and makes the held messages due now. ``url=...`` (the
    default) keeps the URL. A new filter applies to the messages made from then on."""
    fresh_start = ["consecutive_failures = 0", "failing_since = NULL", "circuit_open_until = NULL"]
    sets = ["updated_at = now()"]
    params: list[Any] = []
    if filter_types is not None:
        sets.append("filter_types = %s")
        params.append(list(dict.fromkeys(filter_types)))
    if url is not ...:
        # A new URL is a new receiver: its predecessor's failures say nothing about it.
        sets += ["url = %s", *fresh_start]
        params.append(url)
    if enabled is True:
        sets += ["enabled = true", "disabled_reason = NULL"]
        if url is ...:
            sets += fresh_start
    elif enabled is False:
        sets += ["enabled = false", "disabled_reason = 'disabled by the account'"]
    before = conn.execute(
        "SELECT enabled, url FROM webhook_endpoints WHERE account_id = %s FOR UPDATE",
        (account_id,),
    ).fetchone()
    row = conn.execute(
        f"UPDATE webhook_endpoints SET {', '.join(sets)} WHERE account_id = %s RETURNING *",
        [*params, account_id],
    ).fetchone()
    if before is not None and row is not None and row["enabled"] and row["url"] is not None:
        enabled_again = not before["enabled"]
        # A new receiver (a URL given again, or another one): the old one's failures set the
        # retries' timing, and say nothing about it.
        new_url = before["url"] != row["url"]
        if enabled_again or new_url:
            # Held messages go now; an endpoint that was enabled keeps its retries' timing.
            release_held_messages(conn, account_id)
    return row


def release_held_messages(conn: Conn, account_id: int) -> int:
    """Make every pending message of the account due now (after re-enabling its endpoint)."""
    cur = conn.execute(
        "UPDATE webhook_messages SET next_attempt_at = now(), updated_at = now()"
        " WHERE account_id = %s AND status = 'pending' AND next_attempt_at > now()",
        (account_id,),
    )
    return cur.rowcount


def rotate_secret(conn: Conn, fernet: MultiFernet, account_id: int, overlap_s: float) -> str | None:
    """Make a new secret; the current one stays valid for ``overlap_s``. None without endpoint.

    Rotating again within the overlap drops the oldest secret: only two are ever valid."""
    secret = new_secret()
    row = conn.execute(
        """
        UPDATE webhook_endpoints
        SET previous_secret_token = secret_token,
            previous_secret_expires_at = now() + make_interval(secs => %s),
            secret_token = %s, updated_at = now()
        WHERE account_id = %s
        RETURNING account_id
        """,
        (overlap_s, fernet.encrypt(secret.encode()), account_id),
    ).fetchone()
    return secret if row else None


def signing_secrets(fernet: MultiFernet, endpoint: dict, now: datetime) -> list[str]:
    """The secrets to sign with: the current one first, then the previous one while it lasts."""
    found = [fernet.decrypt(bytes(endpoint["secret_token"])).decode()]
    expires = endpoint["previous_secret_expires_at"]
    if endpoint["previous_secret_token"] is not None and expires is not None and expires > now:
        found.append(fernet.decrypt(bytes(endpoint["previous_secret_token"])).decode())
    return found


def endpoint_json(row: dict) -> dict[str, Any]:
    """The endpoint as the API shows it. The secret is never part of it."""
    return {
        "url": row["url"],
        "enabled": row["enabled"],
        "disabled_reason": row["disabled_reason"],
        "filter_types": list(row["filter_types"]),
        "previous_secret_expires_at": iso(row["previous_secret_expires_at"]),
        "health": {
            "consecutive_failures": row["consecutive_failures"],
            "failing_since": iso(row["failing_since"]),
            "last_success_at": iso(row["last_success_at"]),
            "circuit_open_until": iso(row["circuit_open_until"]),
        },
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def disable_failing_endpoints(conn: Conn, *, disable_after_s: float) -> list[int]:
    """Disable endpoints that have failed for ``disable_after_s`` with no success since.

    The dispatcher does this when it records a failure; the scheduler calls this too, so an
    endpoint whose circuit keeps it from being tried is still disabled on time."""
    rows = conn.execute(
        """
        UPDATE webhook_endpoints
        SET enabled = false, updated_at = now(),
            disabled_reason = 'failing since ' || to_char(failing_since AT TIME ZONE 'UTC',
                'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ' with no successful delivery'
        WHERE enabled AND failing_since IS NOT NULL
          AND failing_since <= now() - make_interval(secs => %s)
        RETURNING account_id
        """,
        (disable_after_s,),
    ).fetchall()
    return [int(row["account_id"]) for row in rows]


# --- Messages (the outbox) -------------------------------------------------------------------


def _insert_message(
    conn: Conn, *, account_id: int, task_id: int | None, event: str, payload: dict
) -> dict | None:
    # No conflict target: the one-finish-per-task index and msg_id's uniqueness both mean
    # "this message already exists", and either way the insert must be a no-op.
    return conn.execute(
        f"""
        INSERT INTO webhook_messages (msg_id, account_id, task_id, event, payload, status,
                                      next_attempt_at)
        VALUES (%s, %s, %s, %s, %s, 'pending', now())
        ON CONFLICT DO NOTHING
        RETURNING {_MESSAGE_COLUMNS}
        """,
        (new_msg_id(), account_id, task_id, event, Jsonb(payload)),
    ).fetchone()


def enqueue_task_finished(conn: Conn, *, account_id: int, task_id: int, payload: dict) -> None:
    """Write the task's ``task_finished`` message, in the caller's transaction. Idempotent."""
    enqueue_task_event(
        conn, account_id=account_id, task_id=task_id, event=TASK_FINISHED, payload=payload
    )


def enqueue_task_event(
    conn: Conn, *, account_id: int, task_id: int | None, event: str, payload: dict
) -> None:
    """Write an event's message in the caller's transaction, if the endpoint receives it: a
    task's, or with no ``task_id`` an account's (a batch's).

    The endpoint's ``filter_types`` decide, as Svix filters. An account with no endpoint row
    keeps its ``task_finished`` messages, as it always has (they go out once it has a URL);
    an opt-in event needs an endpoint that asked for it.
    """
    conn.execute(
        """
        INSERT INTO webhook_messages (msg_id, account_id, task_id, event, payload, status,
                                      next_attempt_at)
        SELECT %(msg_id)s, %(account_id)s, %(task_id)s, %(event)s, %(payload)s, 'pending', now()
         WHERE COALESCE((SELECT %(event)s = ANY(e.filter_types) FROM webhook_endpoints e
                          WHERE e.account_id = %(account_id)s), %(by_default)s)
        ON CONFLICT DO NOTHING
        """,
        {
            "msg_id": new_msg_id(),
            "account_id": account_id,
            "task_id": task_id,
            "event": event,
            "payload": Jsonb(payload),
            "by_default": event in DEFAULT_FILTER_TYPES,
        },
    )


class PingPending(Exception):
    """The account has a ping still pending: a test pings once at a time."""

    def __init__(self, message: dict) -> None:
        super().__init__(f"ping {message['msg_id']} is still pending")
        self.message = message


def enqueue_ping(conn: Conn, account_id: int) -> dict:
    """A ``ping`` test message for the account's endpoint, in the caller's transaction.

    Raises :class:`PingPending` while one is pending (held, or in its retry schedule): else
    each test of a receiver that is down would add a message to retry for a day."""
    # Two tests at once: the second waits for the first to commit, then finds its ping.
    hold_lock(conn, "ping", account_id)
    pending = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM webhook_messages"
        " WHERE account_id = %s AND event = 'ping' AND status = 'pending' LIMIT 1",
        (account_id,),
    ).fetchone()
    if pending is not None:
        raise PingPending(pending)
    payload = {"message": "Test event from Understudy.", "accountId": account_id}
    row = _insert_message(conn, account_id=account_id, task_id=None, event=PING, payload=payload)
    assert row is not None  # a fresh random msg_id cannot conflict
    return row


def claim_due_messages(
    conn: Conn, *, limit: int, lock_s: float, settings: Settings | None = None
) -> list[int]:
    """Claim up to ``limit`` due messages for dispatch and return their ids.

    Endpoints that are disabled, have no URL or an open circuit are skipped, and each endpoint
    gets at most its free concurrency slots (one probe while its breaker is half-open), so a slow
    endpoint holds back only its own messages. Deferred messages keep their retry budget: only
    an attempt counts. Pass the process's settings; the defaults stand in without them.
    """
    settings = settings or Settings()
    endpoints = conn.execute(
        """
        SELECT e.account_id, e.consecutive_failures,
               (SELECT count(*) FROM webhook_messages f
                WHERE f.account_id = e.account_id AND f.status = 'pending'
                  AND f.locked_until > now()) AS in_flight
        FROM webhook_endpoints e
        JOIN LATERAL (
            SELECT min(m.next_attempt_at) AS oldest FROM webhook_messages m
            WHERE m.account_id = e.account_id AND m.status = 'pending'
              AND m.next_attempt_at <= now()
              AND (m.locked_until IS NULL OR m.locked_until < now())
        ) due ON due.oldest IS NOT NULL
        WHERE e.enabled AND e.url IS NOT NULL
          AND (e.circuit_open_until IS NULL OR e.circuit_open_until <= now())
        ORDER BY due.oldest
        LIMIT %s
        FOR UPDATE OF e SKIP LOCKED
        """,
        (limit,),
    ).fetchall()
    claimed: list[int] = []
    for endpoint in endpoints:
        half_open = endpoint["consecutive_failures"] >= settings.webhook_breaker_failures
        capacity = 1 if half_open else settings.webhook_endpoint_concurrency
        slots = min(capacity - endpoint["in_flight"], limit - len(claimed))
        if slots > 0:
            claimed += _claim_for_endpoint(conn, endpoint["account_id"], slots, lock_s)
    return claimed


def dispatch_due_messages(runtime: Runtime, *, limit: int = 500, lock_s: float = 60.0) -> int:
    """One scheduler tick for webhooks: disable long-failing endpoints, claim due messages,
    commit, then hand them to the ``webhooks`` queue. Returns how many were sent."""
    settings = runtime.settings
    with runtime.pool.connection() as conn:
        disable_failing_endpoints(conn, disable_after_s=settings.webhook_disable_after_s)
        ids = claim_due_messages(conn, limit=limit, lock_s=lock_s, settings=settings)
    for message_id in ids:
        send_message(runtime.celery, DELIVER_WEBHOOK, message_id)
    return len(ids)


def _claim_for_endpoint(conn: Conn, account_id: int, slots: int, lock_s: float) -> list[int]:
    # MATERIALIZED: the pick runs once. As a subquery the planner may run it again for each row
    # it joins (it takes a table it last analyzed empty for empty), and each run skips the rows
    # this statement already updated and locks the next ones, claiming past the limit.
    rows = conn.execute(
        """
        WITH picked AS MATERIALIZED (
            SELECT id FROM webhook_messages
            WHERE account_id = %s AND status = 'pending' AND next_attempt_at <= now()
              AND (locked_until IS NULL OR locked_until < now())
            ORDER BY next_attempt_at, id
            LIMIT %s
            FOR UPDATE SKIP LOCKED
        ), claimed AS (
            UPDATE webhook_messages m
            SET locked_until = now() + make_interval(secs => %s), lease_token = NULL,
                updated_at = now()
            FROM picked WHERE m.id = picked.id
            RETURNING m.id, m.next_attempt_at
        )
        SELECT id FROM claimed ORDER BY next_attempt_at, id
        """,
        (account_id, slots, lock_s),
    ).fetchall()
    return [int(row["id"]) for row in rows]


# A message's columns as message_json takes them: ``held``, whether the account's endpoint
# holds its pending messages (disabled, or no URL), as claim_due_messages reads it.
_MESSAGE_COLUMNS = """
    id, msg_id, account_id, task_id, event, payload, status, attempts, next_attempt_at,
    last_attempt_at, delivered_at, failed_at, created_at, updated_at,
    NOT EXISTS (SELECT FROM webhook_endpoints e WHERE e.account_id = webhook_messages.account_id
                   AND e.enabled AND e.url IS NOT NULL) AS held
"""


def list_messages_query(
    account_id: int,
    *,
    before_id: int | None,
    limit: int,
    status: str | None = None,
    task_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[str, list[Any]]:
    """The SQL and parameters of :func:`list_messages`.

    A status is read as a range of the index on (account_id, status, id), written as
    ``status >= s AND status <= s`` in that index's order so that no other plan can serve it
    (``shared.tasks.list_tasks_query`` says why); a task's messages come from their own index.
    """
    where = ["account_id = %s"]
    params: list[Any] = [account_id]
    for clause, value in (
        ("id < %s", before_id),
        ("status >= %s AND status <= %s", status),
        ("task_id = %s", task_id),
        ("created_at >= %s", since),
        ("created_at < %s", until),
    ):
        if value is not None:
            where.append(clause)
            params += [value] * clause.count("%s")
    order = "status, id DESC" if status is not None else "id DESC"
    sql = f"SELECT {_MESSAGE_COLUMNS} FROM webhook_messages WHERE {' AND '.join(where)}"
    return f"{sql} ORDER BY {order} LIMIT %s", [*params, limit]


def list_messages(conn: Conn, account_id: int, **query: Any) -> list[dict]:
    """The account's messages, newest first, keyset-paginated on id (``query`` is what
    :func:`list_messages_query` takes)."""
    sql, params = list_messages_query(account_id, **query)
    return conn.execute(sql, params).fetchall()


def find_message(conn: Conn, account_id: int, ref: str) -> dict | None:
    """A message of the account by its numeric id or its ``msg_`` id."""
    number = whole_number(ref)
    sql, value = ("msg_id = %s", ref) if number is None else ("id = %s", number)
    return conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM webhook_messages WHERE {sql} AND account_id = %s",
        (value, account_id),
    ).fetchone()


def list_attempts(conn: Conn, message_id: int) -> list[dict]:
    return conn.execute(
        "SELECT * FROM webhook_attempts WHERE message_id = %s ORDER BY id", (message_id,)
    ).fetchall()


def redeliver_message(conn: Conn, account_id: int, message_id: int) -> dict | None:
    """Queue a finished message again with a fresh retry budget and the same msg_id.

    None if it is still pending (it is being delivered already)."""
    return conn.execute(
        f"""
        UPDATE webhook_messages
        SET status = 'pending', attempts = 0, next_attempt_at = now(), locked_until = NULL,
            lease_token = NULL, delivered_at = NULL, failed_at = NULL, updated_at = now()
        WHERE id = %s AND account_id = %s AND status <> 'pending'
        RETURNING {_MESSAGE_COLUMNS}
        """,
        (message_id, account_id),
    ).fetchone()


def recover_failed_messages(
    conn: Conn, account_id: int, *, since: datetime, until: datetime | None = None
) -> int:
    """Queue again every failed (dead-lettered) message created since ``since``; the count."""
    cur = conn.execute(
        """
        UPDATE webhook_messages
        SET status = 'pending', attempts = 0, next_attempt_at = now(), locked_until = NULL,
            lease_token = NULL, failed_at = NULL, updated_at = now()
        WHERE account_id = %s AND status = 'failed' AND created_at >= %s
          AND (%s::timestamptz IS NULL OR created_at < %s::timestamptz)
        """,
        (account_id, since, until, until),
    )
    return cur.rowcount


def message_json(row: dict) -> dict[str, Any]:
    """A message (its row as :data:`_MESSAGE_COLUMNS` reads it). A pending message that the
    endpoint holds (disabled, or no URL) has no next attempt: it goes once the endpoint is
    enabled again."""
    held = row["status"] == "pending" and row["held"]
    due = row["status"] == "pending" and not held
    return {
        "id": row["id"],
        "msg_id": row["msg_id"],
        "event": row["event"],
        "task_id": row["task_id"],
        "status": row["status"],
        "held": held,
        "attempt_count": row["attempts"],
        "next_attempt_at": iso(row["next_attempt_at"]) if due else None,
        "last_attempt_at": iso(row["last_attempt_at"]),
        "delivered_at": iso(row["delivered_at"]),
        "failed_at": iso(row["failed_at"]),
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "data": row["payload"],
    }


def attempt_json(row: dict) -> dict[str, Any]:
    return {
        "id": row["id"],
        "attempted_at": iso(row["attempted_at"]),
        "url": row["url"],
        "status_code": row["status_code"],
        "latency_ms": row["latency_ms"],
        "error_class": row["error_class"],
        "error_detail": row["error_detail"],
        "response_body": row["response_body"],
    }


def delivery_state(conn: Conn) -> tuple[int, int]:
    """For /metrics: endpoints whose circuit breaker is open now, and messages still pending."""
    row = conn.execute(
        """
        SELECT (SELECT count(*) FROM webhook_endpoints WHERE circuit_open_until > now())
                   AS open_breakers,
               (SELECT count(*) FROM webhook_messages WHERE status = 'pending') AS pending
        """
    ).fetchone()
    assert row is not None  # an aggregate always has its row
    return int(row["open_breakers"]), int(row["pending"])
