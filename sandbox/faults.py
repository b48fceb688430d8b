"""Fault switches: their defaults and validation, and the hooks that apply them to every page.

Also the portal's error pages (503 while ``down``, the HTTP 500 of the error test member),
because those are how faults show to a person.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError

from .records import ERROR_MEMBER_ID

DEFAULTS: dict[str, Any] = {
    "down": False,
    "slow_s": 0.0,
    "slow_page_s": 1.5,
    "slow_submit_s": 0.0,
    "spinner_s": 1.0,
    "session_ttl_s": 900.0,
    "expire_after_requests": None,
    "modal": "random",
    "layout": "default",
    "single_session": False,
}

_SECONDS = ("slow_s", "slow_page_s", "slow_submit_s", "spinner_s", "session_ttl_s")
_CHOICES = {"modal": ("random", "always", "never"), "layout": ("default", "alt")}


class FaultError(ValueError):
    """A fault switch was given an unknown name or a bad value."""


def validate(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Check a (partial) set of switches and return it normalised; raise FaultError if bad."""
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in DEFAULTS:
            raise FaultError(f"unknown fault switch {key!r}")
        if key == "down":
            if not isinstance(value, bool):
                raise FaultError(f"{key} must be true or false")
        elif key == "single_session":
            if not isinstance(value, bool) and value != "refuse":
                raise FaultError('single_session must be true, false or "refuse"')
        elif key in _SECONDS:
            # bool is an int subclass; refuse it so `true` is not read as 1 second.
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise FaultError(f"{key} must be a number of seconds >= 0")
            value = float(value)
        elif key == "expire_after_requests":
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise FaultError("expire_after_requests must be null or an integer >= 0")
        elif value not in _CHOICES[key]:
            raise FaultError(f"{key} must be one of {', '.join(_CHOICES[key])}")
        out[key] = value
    return out


def raise_if_error_member(*member_ids: str) -> None:
    """Answer HTTP 500 when the documented error member is submitted, like a broken backend."""
    if any(m.strip().upper() == ERROR_MEMBER_ID for m in member_ids if m):
        raise InternalServerError()


def _exempt() -> bool:
    # Admin endpoints must keep working while the portal is "down", or it could not be revived.
    return request.path.startswith("/__sandbox") or request.endpoint == "static"


def init_app(app: Flask) -> None:
    """Register the down/slow hooks and the error pages."""
    from .store import get_store

    @app.before_request
    def _apply_faults() -> Response | tuple[str, int] | None:
        if _exempt():
            return None
        faults = get_store().faults()
        if faults["slow_s"]:
            time.sleep(faults["slow_s"])
        if faults["down"]:
            return error_page(503)
        return None

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[str, int] | HTTPException:
        if exc.code in (404, 405, 500, 503):
            return error_page(exc.code)
        return exc


_ERRORS = {
    404: ("Page Not Found", "The page you requested does not exist."),
    405: ("Method Not Allowed", "That action is not allowed on this page."),
    500: ("Internal Server Error", "The portal encountered an unexpected error."),
    503: (
        "Service Unavailable",
        "The portal is temporarily unavailable for maintenance. Please try again later.",
    ),
}


def error_page(code: int) -> tuple[str, int]:
    """Render the portal's error page for an HTTP status code."""
    heading, text = _ERRORS[code]
    return render_template("error.html", heading=heading, text=text), code
