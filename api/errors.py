"""The API's error type and the handlers that turn every failure into the JSON error shape.

Every error is ``{"error": {"code", "message", "details"}}``. Nothing a client can send yields a
500: bad input is caught here as 400, 413, 415 or 422. A database that is down or restarting
is a 503 with ``Retry-After``, within the pool's bounded wait, never a hang.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from shared.db import DB_UNAVAILABLE
from shared.lookup import LookupsBusy
from shared.sop.errors import StoredSopRefused

log = logging.getLogger(__name__)

# What a 503 asks a client to wait before trying again: about one database restart or failover.
RETRY_AFTER_S = 5


class ApiError(Exception):
    """A failure reported to the client with a status, a code, a message and details."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class NotFound(ApiError):
    """The resource does not exist for this account (another account's looks the same)."""

    def __init__(self, what: str = "resource") -> None:
        super().__init__(404, "not_found", f"No such {what}.")


class ValidationFailed(ApiError):
    """The request was well formed but its content is not acceptable.

    ``details`` is always a list of ``{"field", "message"}`` (plus ``line``/``path`` for an
    SOP), whatever form the check gave: marshmallow's ``{field: [messages]}`` is flattened."""

    def __init__(self, message: str, details: Any) -> None:
        super().__init__(422, "validation_failed", message, field_errors(details))


class SopRefused(ApiError):
    """The type's active SOP is a version stored under earlier rules that this release refuses.

    Not a conflict a retry resolves: a 422, as for a portal without a login, naming the version
    and its problems, for each request that needs the SOP (a task, a setting that reads it).
    """

    def __init__(self, refused: StoredSopRefused, field: str, then: str) -> None:
        message = f"{refused.message}; then {then}."
        super().__init__(
            422, "sop_refused", message,
            [{"field": field, "message": message, "version": refused.version,
              "problems": refused.errors}],
        )  # fmt: skip


def field_errors(details: Any, prefix: str | None = None) -> list[dict[str, Any]]:
    """Any validation detail as the one list form: ``[{"field": "a.b", "message": "..."}]``."""
    if isinstance(details, dict):
        out: list[dict[str, Any]] = []
        for key, value in details.items():
            name = None if key == "_schema" else str(key)
            path = ".".join(p for p in (prefix, name) if p) or None
            out += field_errors(value, path)
        return out
    if isinstance(details, list | tuple):
        out = []
        for item in details:
            if isinstance(item, dict) and "message" in item:
                out.append({"field": item.get("field", item.get("path", prefix)), **item})
            else:
                out += field_errors(item, prefix)
        return out
    if details is None:
        return []
    return [{"field": prefix, "message": str(details)}]


def error_response(status: int, code: str, message: str, details: Any = None):
    body = {"error": {"code": code, "message": message, "details": details}}
    return jsonify(body), status


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "rate_limited",
    431: "headers_too_large",
}


# Error pages of the parts of the site that are pages, not API: a URL prefix and what draws
# its error. Routing errors (no such address, a form's address opened with GET) come before
# any blueprint is chosen, so its own handlers never see them: this one passes them on.
ErrorPage = Callable[[HTTPException], ResponseReturnValue]


def error_pages(app: Flask) -> dict[str, ErrorPage]:
    return app.extensions.setdefault("understudy_error_pages", {})


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(err: ApiError):
        return error_response(err.status, err.code, err.message, err.details)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        for prefix, page in error_pages(app).items():
            if request.path == prefix or request.path.startswith(f"{prefix}/"):
                return page(err)
        status = err.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        return error_response(status, code, err.description or err.name)

    def _unavailable(err: Exception):
        # Our outage, not the client's mistake: say so, say when to come back, change nothing.
        log.warning("database unavailable: %s", err)
        response, status = error_response(
            503,
            "service_unavailable",
            "The service is briefly unavailable; retry after the delay in Retry-After.",
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response, status

    for unavailable in DB_UNAVAILABLE:
        app.register_error_handler(unavailable, _unavailable)

    @app.errorhandler(LookupsBusy)
    def _lookups_busy(err: LookupsBusy):
        # Names that hang (anyone's) hold every lookup thread: our shortage, not the client's
        # name's fault. The stuck lookups end when the system resolver gives up on them.
        log.warning("name lookups busy: %s", err)
        response, status = error_response(
            503,
            "service_unavailable",
            "Too many host name lookups are waiting on DNS servers; retry after the delay in"
            " Retry-After.",
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "Something went wrong on our side.")
