"""Delivering one webhook message: claim, sign, POST, record the attempt, decide what comes next.

Every step is safe to repeat. A message is claimed twice over: the scheduler sets
``locked_until`` (it has been handed to the queue), then a dispatcher thread sets a random
``lease_token`` (it is being sent now). A duplicate queue message finds the token already set, or
the claim already cleared, and does nothing. No transaction is open while the request is in
flight, and a retry is a ``next_attempt_at`` in Postgres, never a Celery countdown.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.fernet import MultiFernet

from dispatcher.backoff import compute_backoff, parse_retry_after
from dispatcher.errors import DeliveryError
from dispatcher.transport import RESPONSE_PREFIX_BYTES, Transport
from shared import logs, metrics
from shared.db import Conn, fetch_one, outside_transaction
from shared.lookup import LookupsBusy
from shared.runtime import Runtime
from shared.settings import Settings
from shared.tasks import iso
from shared.webhooks import MessageStatus, envelope_body, header_signature, signing_secrets

log = logging.getLogger(__name__)

USER_AGENT = "Understudy-Webhooks/1.0"
# A thread that has just delivered goes on with the same endpoint's next due message, so a
# healthy endpoint is not held to (concurrency limit) messages per scheduler tick. Bounded, so
# one busy endpoint cannot keep a thread from the others for long. The time is the bound that
# matters: a chain cut by the count leaves its slot idle until the next tick, which at 100
# messages cost a fast endpoint about a fifth of its rate.
CHAIN_MAX_MESSAGES = 2000
CHAIN_MAX_S = 10.0
# How long past the HTTP timeout a thread's lease lasts before the scheduler may hand the
# message to another thread (the first one is presumed dead).
LEASE_MARGIN_S = 30.0
# How long a message waits when no lookup thread was free for its receiver's name (no attempt
# is counted): stuck lookups end when the system resolver gives up on them.
LOOKUPS_BUSY_WAIT_S = 5.0

_transport: Transport | None = None
_transport_lock = threading.Lock()


def default_transport(settings: Settings) -> Transport:
    """The process's transport, built on first use."""
    global _transport
    with _transport_lock:
        if _transport is None:
            _transport = Transport(
                pool_size=max(1, settings.webhook_endpoint_concurrency),
                lookup_threads=settings.lookup_threads,
            )
        return _transport


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to."""

    started_at: datetime
    latency_ms: int
    status_code: int | None = None
    error_class: str | None = None
    error_detail: str | None = None
    response_body: str | None = None
    retry_after_s: float | None = None
    aborted: bool = False

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def deliver_message(
    runtime: Runtime, message_id: int, *, transport: Transport | None = None
) -> None:
    """Deliver a claimed message (the Celery task's body); a no-op if it is not ours to send."""
    transport = transport or default_transport(runtime.settings)
    settings = runtime.settings
    token = secrets.token_hex(8)
    hold_s = settings.webhook_timeout_s + LEASE_MARGIN_S
    started = time.monotonic()
    with runtime.pool.connection() as conn:
        job = _claim_delivery(conn, message_id, token, hold_s)
    sent = 0
    while job is not None:
        with logs.bound(message_id=job["id"], account_id=job["account_id"]):
            outcome = _attempt(job, transport, runtime)
            if outcome is None:
                with runtime.pool.connection() as conn:
                    _put_back(conn, job, token, LOOKUPS_BUSY_WAIT_S)
                return
            _observe(outcome)
            sent += 1
            # Only claim a next message this thread will certainly send: a claimed message
            # left behind would hold an endpoint slot until its lease ran out.
            keep_going = (
                outcome.delivered
                and sent < CHAIN_MAX_MESSAGES
                and time.monotonic() - started < CHAIN_MAX_S
            )
            with runtime.pool.connection() as conn:
                job = _record_and_claim_next(
                    conn, job, outcome, token, settings, keep_going, hold_s
                )


def _record_and_claim_next(
    conn: Conn,
    job: dict,
    outcome: Outcome,
    token: str,
    settings: Settings,
    keep_going: bool,
    hold_s: float,
) -> dict | None:
    """Record the attempt and claim the endpoint's next message: one statement, which is its
    own transaction, so one round trip and one commit.

    The commit does not wait for the disk. A crash of PostgreSQL can then lose the last moments
    of bookkeeping, which at-least-once delivery already covers: a message whose "delivered"
    was lost is sent again with the same ``webhook-id`` (receivers deduplicate on it), a lost
    claim expires, and a lost failure count only delays the breaker.
    """
    with outside_transaction(conn):
        row = fetch_one(conn, *_record_statement(job, outcome, token, settings, keep_going, hold_s))
    if not row["moved"]:
        # Our lease ran out and another thread owns the message now; it decides what is next.
        log.warning("lost the lease on webhook message %s during an attempt", job["id"])
    return _usable(conn, row if row["id"] is not None else None, token)


# --- Claims ----------------------------------------------------------------------------------


_ENDPOINT_OF_LEASED = """
        SELECT l.*, e.url, e.enabled, e.secret_token, e.previous_secret_token,
               e.previous_secret_expires_at, now() AS db_now,
               COALESCE(e.circuit_open_until > now(), false) AS circuit_open
        FROM leased l LEFT JOIN webhook_endpoints e ON e.account_id = l.account_id
"""
_LEASED_COLUMNS = "id, msg_id, account_id, event, payload, attempts, created_at"


def _claim_delivery(conn: Conn, message_id: int, token: str, hold_s: float) -> dict | None:
    """Take the lease on a message the scheduler claimed, with its endpoint; None if another
    thread has it, it is no longer pending, or nobody claimed it (a stray duplicate)."""
    job = conn.execute(
        f"""
        WITH leased AS (
            UPDATE webhook_messages
            SET lease_token = %s, locked_until = now() + make_interval(secs => %s)
            WHERE id = %s AND status = 'pending' AND locked_until IS NOT NULL
              AND lease_token IS NULL
            RETURNING {_LEASED_COLUMNS}
        )
        {_ENDPOINT_OF_LEASED}
        """,
        (token, hold_s, message_id),
    ).fetchone()
    return _usable(conn, job, token)


def _put_back(conn: Conn, job: dict, token: str, wait_s: float) -> None:
    """Release the lease without an attempt, the message due again in ``wait_s``: its retry
    budget and its endpoint's health are untouched."""
    conn.execute(
        "UPDATE webhook_messages SET locked_until = NULL, lease_token = NULL,"
        " next_attempt_at = now() + make_interval(secs => %s), updated_at = now()"
        " WHERE id = %s AND lease_token = %s",
        (wait_s, job["id"], token),
    )


def _usable(conn: Conn, job: dict | None, token: str) -> dict | None:
    """The leased job if its endpoint can take it now. If not (disabled, no URL, circuit open),
    the claim is released without an attempt: the message waits with its retry budget intact."""
    if job is None:
        return None
    if job["url"] is None or not job["enabled"] or job["circuit_open"]:
        conn.execute(
            "UPDATE webhook_messages SET locked_until = NULL, lease_token = NULL"
            " WHERE id = %s AND lease_token = %s",
            (job["id"], token),
        )
        return None
    return job


# The endpoint's next due message, leased for this thread if %(claim)s (CTEs of the statement
# that records an attempt; the message just attempted is still leased in its snapshot). Picked
# once, MATERIALIZED, for the reason shared.webhooks gives where it claims messages.
_CLAIM_NEXT = f"""
next AS MATERIALIZED (
    SELECT id FROM webhook_messages
    WHERE %(claim)s AND account_id = %(account)s AND status = 'pending'
      AND next_attempt_at <= now() AND (locked_until IS NULL OR locked_until < now())
    ORDER BY next_attempt_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE webhook_messages m
    SET lease_token = %(token)s, locked_until = now() + make_interval(secs => %(hold)s),
        updated_at = now()
    FROM next WHERE m.id = next.id
    RETURNING m.{_LEASED_COLUMNS.replace(", ", ", m.")}
)
"""


# --- One attempt -----------------------------------------------------------------------------


def build_request(job: dict, fernet: MultiFernet, timestamp: int) -> tuple[bytes, dict[str, str]]:
    """The signed body and headers for one attempt of a message."""
    valid = signing_secrets(fernet, job, job["db_now"])
    body = envelope_body(
        valid[0], event=job["event"], created_at=iso(job["created_at"]) or "", data=job["payload"]
    )
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": job["msg_id"],
        "webhook-timestamp": str(timestamp),
        "webhook-signature": header_signature(valid, job["msg_id"], timestamp, body),
    }
    return body, headers


def _attempt(job: dict, transport: Transport, runtime: Runtime) -> Outcome | None:
    """What one POST of the message came to; None if it could not be tried for a shortage of
    ours (no lookup thread free), which is no attempt of the receiver's."""
    settings = runtime.settings
    body, headers = build_request(job, runtime.fernet, int(time.time()))
    started_at, started = datetime.now(UTC), time.monotonic()
    try:
        response = transport.post(
            job["url"],
            body,
            headers,
            timeout_s=settings.webhook_timeout_s,
            allow_private=settings.webhook_allow_private,
        )
    except LookupsBusy as exc:
        log.warning("webhook message %s waits: %s", job["id"], exc)
        return None
    except DeliveryError as exc:
        # The text may quote the receiver (a malformed status line of up to 64 KiB): keep as much
        # of it as of a response body.
        detail = str(exc)[:RESPONSE_PREFIX_BYTES]
        return Outcome(
            started_at, _ms_since(started), error_class=exc.error_class, error_detail=detail
        )
    except Exception as exc:  # unforeseen: still an attempt, counted and retried on schedule
        # Raised out of here, it would leave the message claimed and uncounted, to be sent
        # again at every lease's end without ever failing or tripping the breaker.
        log.exception("webhook message %s: the attempt failed unexpectedly", job["id"])
        detail = f"{type(exc).__name__}: {exc}"[:RESPONSE_PREFIX_BYTES]
        return Outcome(
            started_at, _ms_since(started), error_class=DeliveryError.error_class,
            error_detail=detail,
        )  # fmt: skip
    status = response.status
    failed_class = None
    if status >= 300:
        failed_class = "redirect" if status < 400 else "http_status"
    lowered = {key.lower(): value for key, value in response.headers.items()}
    return Outcome(
        started_at,
        _ms_since(started),
        status_code=status,
        error_class=failed_class,
        response_body=response.body_prefix,
        retry_after_s=parse_retry_after(lowered.get("retry-after")) if failed_class else None,
        aborted=bool(failed_class)
        and lowered.get("webhook-delivery", "").strip().lower() == "abort-message",
    )


def outcome_label(outcome: Outcome) -> str:
    """The attempt's outcome for metrics: delivered, gone, aborted, or the error's class."""
    if outcome.delivered:
        return "delivered"
    if outcome.gone:
        return "gone"
    if outcome.aborted:
        return "aborted"
    return outcome.error_class or "error"


def _observe(outcome: Outcome) -> None:
    label = outcome_label(outcome)
    metrics.WEBHOOK_ATTEMPTS.labels(label).inc()
    metrics.WEBHOOK_LATENCY.labels(label).observe(outcome.latency_ms / 1000)
    if not outcome.delivered:
        # An endpoint that fails is the receiver's business, not an error of ours.
        log.info(
            "webhook attempt %s (%s)",
            label,
            outcome.status_code or outcome.error_detail,
            extra={"outcome": label, "status_code": outcome.status_code},
        )


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


# --- Recording -------------------------------------------------------------------------------


def _record_statement(
    job: dict, outcome: Outcome, token: str, settings: Settings, keep_going: bool, hold_s: float
) -> tuple[str, dict]:
    """The statement that logs the attempt, moves the message on, updates the endpoint's
    health and, if ``keep_going``, leases the endpoint's next message. Its one row says whether
    this thread still held the message (``moved``: its lease had not run out) and holds the
    next job's columns (all NULL when there is none)."""
    status, delay_s = _next_step(job["attempts"] + 1, outcome, settings)
    change = _health_change(outcome)
    health = None if change is None else _HEALTH.get(change)
    sql = f"""
        WITH relaxed AS (
            -- This statement is its own transaction: its commit does not wait for the disk.
            SELECT set_config('synchronous_commit', 'off', true)
        ), attempt AS (
            INSERT INTO webhook_attempts (message_id, attempted_at, url, status_code, latency_ms,
                                          error_class, error_detail, response_body)
            SELECT %(id)s, %(started_at)s, %(url)s, %(code)s, %(latency)s, %(error_class)s,
                   %(error_detail)s, %(response)s
              FROM relaxed
        ), moved AS (
            UPDATE webhook_messages
            SET status = %(status)s, attempts = attempts + 1, last_attempt_at = now(),
                next_attempt_at = CASE WHEN %(status)s = 'pending'
                    THEN now() + make_interval(secs => %(delay)s) END,
                delivered_at = CASE WHEN %(status)s = 'delivered' THEN now() END,
                failed_at = CASE WHEN %(status)s IN ('failed', 'aborted') THEN now() END,
                locked_until = NULL, lease_token = NULL, updated_at = now()
            WHERE id = %(id)s AND lease_token = %(token)s
            RETURNING id
        ){f", health AS ({health})" if health else ""},
        {_CLAIM_NEXT}
        SELECT EXISTS (SELECT 1 FROM moved) AS moved, j.*
          FROM (SELECT 1) AS one LEFT JOIN ({_ENDPOINT_OF_LEASED}) AS j ON true
    """
    params = {
        "id": job["id"],
        "started_at": outcome.started_at,
        "url": job["url"],
        "code": outcome.status_code,
        "latency": outcome.latency_ms,
        "error_class": outcome.error_class,
        "error_detail": outcome.error_detail,
        "response": outcome.response_body,
        "status": status,
        "delay": delay_s or 0.0,
        "token": token,
        "claim": keep_going,
        "account": job["account_id"],
        "hold": hold_s,
        "trip": settings.webhook_breaker_failures,
        "cooldown": settings.webhook_breaker_cooldown_s,
        "disable": settings.webhook_disable_after_s,
    }
    return sql, params


def _next_step(
    attempts_made: int, outcome: Outcome, settings: Settings
) -> tuple[MessageStatus, float | None]:
    """The message's status after this attempt, and the delay to the next one if pending."""
    if outcome.delivered:
        return MessageStatus.DELIVERED, None
    if outcome.gone:
        # The endpoint is disabled now; the message waits (held) for it to be enabled again.
        return MessageStatus.PENDING, 0.0
    if outcome.aborted:
        return MessageStatus.ABORTED, None
    delay = compute_backoff(
        attempts_made,
        schedule_s=settings.webhook_schedule_s,
        jitter=settings.webhook_jitter,
        retry_after_s=outcome.retry_after_s,
        retry_after_cap_s=settings.webhook_retry_after_cap_s,
    )
    return (MessageStatus.FAILED, None) if delay is None else (MessageStatus.PENDING, delay)


def _health_change(outcome: Outcome) -> str | None:
    if outcome.delivered:
        return "healthy"
    if outcome.gone:
        return "gone"
    # An abort is the receiver refusing one message; the endpoint itself is answering.
    return None if outcome.aborted else "failing"


# How an attempt changes its endpoint's health (a CTE of the recording statement). Only while
# the endpoint still has the URL attempted: an answer from a URL the account has just replaced
# says nothing of the new one (a 410 from the old receiver must not disable the new one).
_HEALTH = {
    # Skip the write when nothing changes, so busy healthy endpoints do not contend on it.
    "healthy": """
        UPDATE webhook_endpoints
        SET consecutive_failures = 0, failing_since = NULL, circuit_open_until = NULL,
            last_success_at = now()
        WHERE account_id = %(account)s AND url = %(url)s AND (consecutive_failures > 0
            OR failing_since IS NOT NULL OR last_success_at IS NULL
            OR last_success_at < now() - interval '1 second')
    """,
    "gone": """
        UPDATE webhook_endpoints SET enabled = false, updated_at = now(),
            disabled_reason = 'the endpoint answered 410 Gone'
        WHERE account_id = %(account)s AND url = %(url)s
    """,
    "failing": """
        UPDATE webhook_endpoints
        SET consecutive_failures = consecutive_failures + 1,
            failing_since = COALESCE(failing_since, now()),
            circuit_open_until = CASE WHEN consecutive_failures + 1 >= %(trip)s
                THEN now() + make_interval(secs => %(cooldown)s)
                ELSE circuit_open_until END,
            enabled = enabled AND NOT COALESCE(
                failing_since <= now() - make_interval(secs => %(disable)s), false),
            disabled_reason = CASE
                WHEN failing_since <= now() - make_interval(secs => %(disable)s)
                THEN 'failing since ' || to_char(failing_since AT TIME ZONE 'UTC',
                    'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ' with no successful delivery'
                ELSE disabled_reason END
        WHERE account_id = %(account)s AND url = %(url)s
    """,
}
