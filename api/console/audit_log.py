"""The audit log, newest first: who did what to which thing, and when."""

from __future__ import annotations

from flask import render_template, request, url_for

from api.console import bp, current
from api.pagination import decode_cursor, encode_cursor
from api.runtime import runtime
from shared import audit

PAGE_SIZE = 100


@bp.get("/audit")
def audit_page():
    with runtime().pool.connection() as conn:
        rows = audit.list_entries(
            conn, current().user.account_id,
            before_id=decode_cursor(request.args.get("cursor")), limit=PAGE_SIZE + 1,
        )  # fmt: skip
    older = None
    if len(rows) > PAGE_SIZE:
        rows = rows[:PAGE_SIZE]
        older = url_for("console.audit_page", cursor=encode_cursor(rows[-1]["id"]))
    return render_template(
        "console/audit.html", entries=[audit.entry_json(r) for r in rows], older=older
    )
