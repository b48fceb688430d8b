"""/webhook-endpoint and /webhooks/messages: the account's endpoint, its secret, the message log.

The signing secret is shown only when it is made (account creation, the first PUT of an account
without an endpoint, rotation, and a rotation sent again under its Idempotency-Key); it is
stored encrypted and never returned otherwise.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api import idempotency
from api.auth import account_id, require_account
from api.bodies import json_body, validated
from api.errors import ApiError, NotFound, ValidationFailed
from api.limits import query_value
from api.pagination import decode_cursor, page, page_limit
from api.runtime import request_resolver, runtime
from shared import webhooks as hooks
from shared.db import Conn
from shared.ssrf import UrlRefused, check_url
from shared.webhooks import MessageStatus

bp = Blueprint("webhooks", __name__)
bp.before_request(require_account)

MAX_URL_CHARS = 2048


class EndpointSchema(Schema):
    # Unknown fields are refused (marshmallow's default): a misspelt "enable" must not be dropped.
    url = fields.String(allow_none=True, validate=validate.Length(min=1, max=MAX_URL_CHARS))
    enabled = fields.Boolean(truthy={True}, falsy={False})
    # The event types the endpoint receives; a ping is always sent.
    filter_types = fields.List(
        fields.String(validate=validate.OneOf(hooks.FILTER_TYPES)),
        validate=validate.Length(min=1, max=len(hooks.FILTER_TYPES)),
    )

    @validates_schema
    def _something_to_change(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("Send url, enabled, filter_types, or any of them.")


class RecoverSchema(Schema):
    since = fields.AwareDateTime(required=True)
    until = fields.AwareDateTime(load_default=None)


class MessageFilterSchema(Schema):
    status = fields.String(validate=validate.OneOf([s.value for s in MessageStatus]))
    # A task id fits a bigint: a bigger number would be compared as numeric, which no index
    # serves (a scan of the account's messages on every such request).
    task_id = fields.Integer(strict=False, validate=validate.Range(min=1, max=2**63 - 1))
    since = fields.AwareDateTime()
    until = fields.AwareDateTime()
    cursor = fields.String()
    limit = fields.String()  # checked by page_limit


def _checked_url(url: str | None) -> str | None:
    if url is None:
        return None
    try:
        check_url(url, runtime().settings.webhook_allow_private, resolver=request_resolver())
    except UrlRefused as err:
        raise ValidationFailed(
            f"The webhook URL is not allowed: {err}", {"url": [str(err)]}
        ) from err
    return url


# --- the endpoint ------------------------------------------------------------------------------


@bp.get("/webhook-endpoint")
def get_endpoint():
    with runtime().pool.connection() as conn:
        row = hooks.get_endpoint(conn, account_id())
    if row is None:
        raise NotFound("webhook endpoint")
    return jsonify(hooks.endpoint_json(row))


@bp.put("/webhook-endpoint")
def put_endpoint():
    """Set the URL, enable or disable, choose the event types. Enabling delivers the messages
    held meanwhile.

    The first PUT of an account without an endpoint makes it and shows its secret, once; a
    second PUT would not show it, so this PUT takes an Idempotency-Key as the POSTs do."""
    body = validated(EndpointSchema(), json_body(), "webhook endpoint")
    url = _checked_url(body["url"]) if "url" in body else ...
    changes = {"enabled": body.get("enabled"), "filter_types": body.get("filter_types")}
    rt = runtime()

    def put(conn: Conn) -> idempotency.Carried:
        secret = hooks.make_endpoint(conn, rt.fernet, account_id(), None)
        row = hooks.update_endpoint(conn, account_id(), url=url, **changes)
        assert row is not None  # it exists: made just now if it did not
        if secret is not None:
            return {**hooks.endpoint_json(row), "secret": secret}, 201
        return hooks.endpoint_json(row), 200

    return idempotency.respond_once(put)


@bp.post("/webhook-endpoint/test")
def test_endpoint():
    """Queue a ``ping`` message to the endpoint."""

    def ping(conn: Conn) -> idempotency.Carried:
        endpoint = hooks.get_endpoint(conn, account_id())
        if endpoint is None or endpoint["url"] is None:
            raise ApiError(409, "no_webhook_url", "Set a webhook URL first.")
        if not endpoint["enabled"]:
            raise ApiError(
                409, "endpoint_disabled", "The endpoint is disabled; enable it to send.",
                {"disabled_reason": endpoint["disabled_reason"]},
            )  # fmt: skip
        try:
            return hooks.message_json(hooks.enqueue_ping(conn, account_id())), 202
        except hooks.PingPending as pending:
            raise ApiError(
                409, "ping_pending",
                "A ping is still pending; wait until it is delivered, failed or aborted.",
                {"message_id": pending.message["id"], "msg_id": pending.message["msg_id"]},
            ) from None  # fmt: skip

    return idempotency.respond_once(ping)


@bp.post("/webhook-endpoint/rotate-secret")
def rotate_secret():
    """A new secret, shown once. The old one stays valid for the overlap, and both sign."""
    rt = runtime()

    def rotate(conn: Conn) -> idempotency.Carried:
        secret = hooks.rotate_secret(
            conn, rt.fernet, account_id(), rt.settings.webhook_secret_overlap_s
        )
        if secret is None:
            raise NotFound("webhook endpoint")
        row = hooks.get_endpoint(conn, account_id())
        assert row is not None  # rotated in this transaction
        expires_at = hooks.endpoint_json(row)["previous_secret_expires_at"]
        return {"secret": secret, "previous_secret_expires_at": expires_at}, 200

    return idempotency.respond_once(rotate)


# --- messages ----------------------------------------------------------------------------------


@bp.get("/webhooks/messages")
def list_messages():
    args = validated(
        MessageFilterSchema(), {n: query_value(n) for n in request.args}, "message filter"
    )
    settings = runtime().settings
    limit = page_limit(settings.page_size_default, settings.page_size_max)
    with runtime().pool.connection() as conn:
        rows = hooks.list_messages(
            conn,
            account_id(),
            before_id=decode_cursor(args.get("cursor")),
            limit=limit + 1,
            status=args.get("status"),
            task_id=args.get("task_id"),
            since=args.get("since"),
            until=args.get("until"),
        )
    return jsonify(page([hooks.message_json(r) for r in rows], rows, limit))


def _owned_message(conn: Conn, ref: str) -> dict:
    row = hooks.find_message(conn, account_id(), ref)
    if row is None:
        raise NotFound("webhook message")
    return row


@bp.get("/webhooks/messages/<ref>")
def get_message(ref: str):
    """One message (by id or msg_id) with every attempt made to deliver it."""
    with runtime().pool.connection() as conn:
        row = _owned_message(conn, ref)
        tried = hooks.list_attempts(conn, row["id"])
    return jsonify({**hooks.message_json(row), "attempts": [hooks.attempt_json(a) for a in tried]})


@bp.post("/webhooks/messages/<ref>/redeliver")
def redeliver(ref: str):
    """Send a message again, with the same webhook-id and a fresh retry budget."""

    def send_again(conn: Conn) -> idempotency.Carried:
        row = _owned_message(conn, ref)
        queued = hooks.redeliver_message(conn, account_id(), row["id"])
        if queued is None:
            raise ApiError(
                409, "message_pending", "The message is still being delivered.",
                {"status": row["status"]},
            )  # fmt: skip
        return hooks.message_json(queued), 202

    return idempotency.respond_once(send_again)


@bp.post("/webhooks/recover")
def recover():
    """Queue again every failed message created since ``since`` (and before ``until``)."""
    body = validated(RecoverSchema(), json_body(), "recovery request")

    def queue_again(conn: Conn) -> idempotency.Carried:
        count = hooks.recover_failed_messages(
            conn, account_id(), since=body["since"], until=body["until"]
        )
        return {"count": count}, 202

    return idempotency.respond_once(queue_again)
