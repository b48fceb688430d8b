"""The operator console at /console: server-rendered pages for a clinic's ops staff.

People sign in with an email and password (``shared.users``); API keys stay for machines. A
session is a random token in an HttpOnly, SameSite=Lax cookie, looked up in Postgres on every
request, so signing out, a new password or a disabled user ends it at once. Every POST carries
a CSRF token (the session's own; before sign-in, a double-submit cookie) or is refused with 400.
Roles: a viewer reads; an operator acts on tasks and webhooks; an admin edits SOPs and portals
and invites users. Every action is written to the audit log in the transaction that does it.

The pages load nothing from elsewhere: CSS and the small script that keeps a running task's
timeline live are served from this package, and the Content-Security-Policy says so.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from api.errors import ApiError, error_pages
from api.runtime import runtime
from shared import audit
from shared.db import Conn
from shared.users import Role, Session, csrf_matches, role_allows, session_for, tokens_match

SESSION_COOKIE = "understudy_console"
# Before sign-in there is no session to hold a CSRF token: the login and invite forms use a
# double-submit cookie instead (the form's hidden field must equal this cookie).
PRESESSION_COOKIE = "understudy_console_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"

# Pages anyone may open (the rest need a session).
PUBLIC_ENDPOINTS = {"console.login", "console.invite", "console.static"}

CSP = (
    "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
)

F = TypeVar("F", bound=Callable[..., Any])


def init_app(app: Flask) -> None:
    """Register the console's pages (importing each module adds its routes to the blueprint)."""
    from api.console import (  # noqa: F401
        audit_log,
        batches,
        sessions,
        settings,
        sops,
        tasks,
        users,
        webhooks,
    )

    app.register_blueprint(bp)
    error_pages(app)[bp.url_prefix or ""] = _routing_error


def _routing_error(err: HTTPException) -> Response:
    """A console address that is no page (or a form's, opened with GET): the console's error
    page, with the console's headers, not the API's JSON."""
    page, status = _http_error(err)
    return _headers(current_app.make_response((page, status)))


# A form's one-time token: what the form does is done once under it, however often the same
# form is sent (a double click, a reload that sends it again).
_SUBMISSION = re.compile(r"[A-Za-z0-9_-]{16,64}")


def new_submission() -> str:
    return secrets.token_urlsafe(18)


def sent_submission() -> str:
    """The sent form's one-time token; a fresh one if it has none of ours."""
    sent = request.form.get("submission", "")
    return sent if _SUBMISSION.fullmatch(sent) else new_submission()


def current() -> Session:
    """The signed-in session of this request."""
    return g.console_session


def actor() -> str:
    return current().user.email


def audit_entry(action: str, target: str, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """The signed-in user's action as an audit entry (the arguments of ``audit.record``)."""
    user = current().user
    return {"account_id": user.account_id, "actor": user.email, "action": action,
            "target": target, "detail": detail}  # fmt: skip


def record(conn: Conn, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
    """Write the signed-in user's action to the audit log, in the caller's transaction."""
    audit.record(conn, **audit_entry(action, target, detail))


def record_if_replayed(entry: dict[str, Any]) -> None:
    """A form sent again (its one-time token's answer was stored) did nothing now: its audit
    entry, which the first sending wrote, is written again saying ``"replayed": true``, as an
    API call's replay is, naming what the first made."""
    if not g.get("idempotent_replayed"):
        return
    detail = {**(entry.get("detail") or {}), **g.get("api_call_detail", {}), "replayed": True}
    with runtime().pool.connection() as conn:
        audit.record(conn, **{**entry, "detail": detail})


def requires(role: Role) -> Callable[[F], F]:
    """Refuse (403) a user whose role is below ``role``."""

    def decorate(view: F) -> F:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if not role_allows(current().user.role, role):
                abort(403, f"This needs the {role} role; you are a {current().user.role}.")
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate


def can(role: str) -> bool:
    """For templates: whether the signed-in user has at least ``role``."""
    session = g.get("console_session")
    return session is not None and role_allows(session.user.role, Role(role))


@bp.before_request
def _authenticate() -> BaseResponse | None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        g.console_session = None
        if request.method == "POST":
            _check_presession_csrf()
        return None
    token = request.cookies.get(SESSION_COOKIE)
    session = None
    if token:
        with runtime().pool.connection() as conn:
            session = session_for(conn, token)
    if session is None:
        if request.method in ("GET", "HEAD"):
            return redirect(url_for("console.login", next=request.full_path.rstrip("?")), 303)
        # A form sent after its session ended does nothing: after signing in, the page it was
        # sent from opens again, saying so (a form's own address answers no GET).
        return redirect(url_for("console.login", next=_sent_from(), ended=1), 303)
    g.console_session = session
    # The API's helpers (SOP validation and storage, say) read the caller's account from here.
    g.account_id = session.user.account_id
    if request.method == "POST" and not csrf_matches(session, _presented_csrf()):
        abort(400, "The form's CSRF token is missing or wrong: reload the page and try again.")
    return None


def _sent_from() -> str:
    """The console page a form was sent from (its Referer on this host), else the tasks."""
    try:
        parts = urlsplit(request.referrer or "")
    except ValueError:
        parts = None
    if parts and parts.netloc == request.host and parts.path.startswith(f"{bp.url_prefix}/"):
        return urlunsplit(("", "", parts.path, parts.query, ""))
    return url_for("console.tasks")


def _presented_csrf() -> str | None:
    return request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)


def _check_presession_csrf() -> None:
    cookie = request.cookies.get(PRESESSION_COOKIE)
    presented = _presented_csrf()
    if not tokens_match(cookie, presented):
        abort(400, "The form's CSRF token is missing or wrong: reload the page and try again.")


def presession_token() -> str:
    """The double-submit token of the login and invite forms (set as a cookie by the view)."""
    if "presession_csrf" not in g:
        g.presession_csrf = request.cookies.get(PRESESSION_COOKIE) or secrets.token_urlsafe(32)
    return str(g.presession_csrf)


def secure_cookie() -> bool:
    return runtime().settings.console_secure_cookie or request.is_secure


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if "presession_csrf" in g:
        response.set_cookie(
            PRESESSION_COOKIE, g.presession_csrf, path="/console", httponly=True,
            samesite="Strict", secure=secure_cookie(),
        )  # fmt: skip
    return response


# What a page says after an action redirected to it (?notice=...): fixed texts only, so a link
# cannot make the console say something of its own.
NOTICES = {
    "redelivered": "Queued again: a new attempt follows shortly.",
    "still_pending": "The message is still being delivered.",
    "recovered": "Failed messages queued again: {count}.",
    "input": "Code sent: the task resumes with it.",
    "reviewed": "Decision recorded.",
    "canceled": "Cancel requested: a queued task ends at once, a running one before its next step.",
    "saved": "Saved as a new version.",
    "unchanged": "Same text as the active version: nothing was stored.",
    "portal_saved": "Portal saved.",
    "batch_created": "Tasks created: they start as workers take them, and this page follows them.",
    "retried": "Sent again as this new task: it starts as a worker takes it.",
    "settings_saved": "Settings saved.",
}


def notice() -> str | None:
    text = NOTICES.get(request.args.get("notice", ""))
    count = request.args.get("count", "")
    return text.format(count=count if count.isdigit() else "?") if text else None


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    session = g.get("console_session")
    return {
        "notice": notice(),
        "console_user": session.user if session else None,
        "console_account": session.account_name if session else None,
        "csrf_token": session.csrf_token if session else None,
        "can": can,
    }


@bp.app_template_filter("when")
def when(value: datetime | str | None) -> str:
    """A time as people read it in a list: ``2026-12-02 13:04:05 UTC``."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@bp.errorhandler(HTTPException)
def _http_error(err: HTTPException):
    status = err.code or 500
    return render_template("console/error.html", status=status, message=err.description), status


@bp.errorhandler(ApiError)
def _api_error(err: ApiError):
    return render_template("console/error.html", status=err.status, message=err.message), err.status
