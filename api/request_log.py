"""A request id for every request, and one log line per request that carries it.

The id is the client's ``X-Request-Id`` when it is a sane one (at most 128 characters of
letters, digits and ``._:-``), else a new one; it is sent back as ``X-Request-Id`` and carried
by every log line of the request, with the caller's account once it is known.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from shared import logs

log = logging.getLogger("api.requests")

HEADER = "X-Request-Id"
_SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def request_id(incoming: str | None) -> str:
    """The client's id if it is sane, else a fresh one."""
    if incoming and _SANE.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def init_app(app: Flask) -> None:
    """Register first, so every other hook and handler runs inside the request's context."""
    app.before_request(_start)
    app.after_request(_finish)
    app.teardown_request(_unbind)


def _start() -> None:
    g.request_started = time.monotonic()
    g.request_id = request_id(request.headers.get(HEADER))
    g.log_token = logs.bind(request_id=g.request_id)


# Path parameters that are credentials (a console invite's one-time token): never logged.
_SECRET_PATH_ARGS = ("token",)
# The same token where no route matched (a 405 for another method, a 404 for a trailing slash):
# Flask then has no view arguments, and the token, still good, would be logged whole.
_INVITE_TOKEN = re.compile(r"^(/console/invite/)[^/]+")


def _logged_path() -> str:
    """The request's path, any credential in it masked."""
    path = request.path
    for name in _SECRET_PATH_ARGS:
        value = (request.view_args or {}).get(name)
        if value:
            path = path.replace(str(value), "***")
    return _INVITE_TOKEN.sub(r"\1***", path)


def _finish(response: Response) -> Response:
    rid = g.get("request_id") or request_id(None)
    response.headers[HEADER] = rid
    started = g.get("request_started")
    # Probes and scrapes come every few seconds: their lines only at DEBUG.
    quiet = request.blueprint in ("health", "metrics")
    path = _logged_path()
    log.log(
        logging.DEBUG if quiet else logging.INFO,
        "%s %s %s",
        request.method,
        path,
        response.status_code,
        extra={
            "method": request.method,
            "path": path,
            "status": response.status_code,
            "duration_ms": int((time.monotonic() - started) * 1000) if started else None,
        },
    )
    return response


def _unbind(_exc: BaseException | None) -> None:
    token = g.pop("log_token", None)
    if token is not None:
        # A token made in another context (a streamed response) ends with that context.
        with contextlib.suppress(ValueError):
            logs.unbind(token)
