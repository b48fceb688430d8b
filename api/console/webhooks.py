"""Webhooks: the endpoint's health, the message log with every attempt, redeliver and recover.

The same queries as ``/webhooks/...`` (``shared.webhooks``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import abort, redirect, render_template, request, url_for

from api.console import bp, current, record, requires
from api.pagination import decode_cursor, encode_cursor
from api.runtime import runtime
from shared import webhooks as hooks
from shared.users import Role
from shared.webhooks import MessageStatus

PAGE_SIZE = 50


@bp.get("/webhooks")
def webhooks():
    account = current().user.account_id
    status = request.args.get("status", "")
    if status and status not in {s.value for s in MessageStatus}:
        abort(400, f"Unknown status {status!r}.")
    with runtime().pool.connection() as conn:
        endpoint = hooks.get_endpoint(conn, account)
        rows = hooks.list_messages(
            conn, account, before_id=decode_cursor(request.args.get("cursor")),
            limit=PAGE_SIZE + 1, status=status or None,
        )  # fmt: skip
    older = None
    if len(rows) > PAGE_SIZE:
        rows = rows[:PAGE_SIZE]
        older = url_for("console.webhooks", cursor=encode_cursor(rows[-1]["id"]),
                        **({"status": status} if status else {}))  # fmt: skip
    return render_template(
        "console/webhooks.html",
        endpoint=hooks.endpoint_json(endpoint) if endpoint else None,
        messages=[hooks.message_json(r) for r in rows], status=status,
        statuses=[s.value for s in MessageStatus], older=older,
    )  # fmt: skip


@bp.get("/webhooks/messages/<int:message_id>")
def webhook_message(message_id: int):
    with runtime().pool.connection() as conn:
        row = hooks.find_message(conn, current().user.account_id, str(message_id))
        if row is None:
            abort(404, "No such webhook message.")
        attempts = hooks.list_attempts(conn, message_id)
    return render_template(
        "console/webhook_message.html", message=hooks.message_json(row),
        attempts=[hooks.attempt_json(a) for a in attempts],
    )  # fmt: skip


@bp.post("/webhooks/messages/<int:message_id>/redeliver")
@requires(Role.OPERATOR)
def webhook_redeliver(message_id: int):
    account = current().user.account_id
    with runtime().pool.connection() as conn:
        if hooks.find_message(conn, account, str(message_id)) is None:
            abort(404, "No such webhook message.")
        queued = hooks.redeliver_message(conn, account, message_id)
        if queued is not None:
            record(conn, "webhook.redeliver", f"webhook_message:{message_id}")
    notice = "redelivered" if queued is not None else "still_pending"
    return redirect(url_for("console.webhook_message", message_id=message_id, notice=notice), 303)


def _instant(name: str) -> datetime | None:
    raw = request.form.get(name, "").strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        abort(400, f"{name} must be a date and time such as 2026-12-01T09:00.")
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # the form's times are UTC


@bp.post("/webhooks/recover")
@requires(Role.OPERATOR)
def webhook_recover():
    since = _instant("since")
    if since is None:
        abort(400, "Give the time to recover failed messages since.")
    until = _instant("until")
    with runtime().pool.connection() as conn:
        count = hooks.recover_failed_messages(
            conn, current().user.account_id, since=since, until=until
        )
        record(conn, "webhook.recover", "webhook_messages",
               {"since": since.isoformat(), "until": until and until.isoformat(),
                "count": count})  # fmt: skip
    return redirect(url_for("console.webhooks", notice="recovered", count=count), 303)
