"""GET /audit-log, and the hook that records every mutating API call in it.

A call is recorded once it succeeded (a status under 400), after its own transaction: who (the
key's visible prefix, ``api_key:us_...``), what (the method and route), the target (the path)
and the answer's status. Never the body: it may hold a password or a patient's data. A handler
may commit the entry itself, in its own last transaction (``POST /tasks`` does, to save a
round trip and a disk flush), and say so with :func:`recorded_by_handler`.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from flask import Blueprint, Flask, Response, g, jsonify, request

from api.auth import account_id, key_prefix, require_account
from api.limits import query_value
from api.pagination import decode_cursor, page, page_limit
from api.runtime import runtime
from shared import audit

log = logging.getLogger(__name__)

bp = Blueprint("audit", __name__)
bp.before_request(require_account)

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CONVERTER = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")


@bp.get("/audit-log")
def list_audit_log():
    settings = runtime().settings
    limit = page_limit(settings.page_size_default, settings.page_size_max)
    with runtime().pool.connection() as conn:
        rows = audit.list_entries(
            conn, account_id(), before_id=decode_cursor(query_value("cursor")),
            limit=limit + 1,
        )  # fmt: skip
    return jsonify(page([audit.entry_json(r) for r in rows], rows, limit))


def api_call_entry(status: int) -> dict[str, Any] | None:
    """The audit entry of this request's call if it answers ``status`` (the arguments of
    :func:`shared.audit.record`), or None when such a call is not recorded."""
    if (
        request.method not in MUTATING
        or status >= 400
        or "account_id" not in g
        or request.blueprint == "console"  # the console records its own actions
        or request.url_rule is None
    ):
        return None
    prefix = key_prefix()
    if prefix is None:
        return None
    return {
        "account_id": account_id(),
        "actor": f"api_key:{prefix}",
        "action": call_name(),
        "target": request.path,
        "detail": {"status": status, **g.get("api_call_detail", {})},
    }


def call_name() -> str:
    """The request's method and route: ``POST /tasks/{task_id}/cancel``."""
    rule = request.url_rule.rule if request.url_rule is not None else request.path
    return f"{request.method} {_route(rule)}"


@functools.cache
def _route(rule: str) -> str:
    return _CONVERTER.sub(r"{\1}", rule)  # /tasks/<int:task_id>/cancel -> /tasks/{task_id}/cancel


def describe_call(**detail: Any) -> None:
    """Add ``detail`` to this call's audit entry (a replayed creation names its task)."""
    g.api_call_detail = {**g.get("api_call_detail", {}), **detail}


def recorded_by_handler() -> None:
    """The handler committed this call's entry in its own transaction: the hook adds none."""
    g.api_call_recorded = True


def _record_api_call(response: Response) -> Response:
    if g.get("api_call_recorded"):
        return response
    entry = api_call_entry(response.status_code)
    if entry is None:
        return response
    try:
        with runtime().pool.connection() as conn:
            audit.record(conn, **entry)
    except Exception:  # the call succeeded and is committed: its answer must not become a 500
        log.warning("could not record %s %s in the audit log", request.method, request.path,
                    exc_info=True)  # fmt: skip
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.after_request(_record_api_call)
