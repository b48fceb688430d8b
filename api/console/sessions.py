"""Signing in and out, and accepting an invite (choosing a password)."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import psycopg
from flask import abort, current_app, redirect, render_template, request, url_for
from limits import parse_many
from limits.strategies import SlidingWindowCounterRateLimiter
from werkzeug.wrappers import Response

from api.console import (
    SESSION_COOKIE,
    bp,
    current,
    presession_token,
    record,
    secure_cookie,
)
from api.rate_limits import throttle_storage
from api.runtime import runtime
from shared import audit, users
from shared.db import Conn, in_transaction, whole_number
from shared.runtime import Runtime
from shared.users import UserError

log = logging.getLogger(__name__)

# How long a refused sign-in's audit entries are retried while the database is unavailable
# (after the answer was sent, in the thread that served it).
REFUSAL_RECORD_RETRY_S = 10.0


def _throttle() -> SlidingWindowCounterRateLimiter:
    """The sign-in throttle: the API's rate-limit storage (Redis), with its own limits."""
    if "understudy_login_throttle" not in current_app.extensions:
        current_app.extensions["understudy_login_throttle"] = SlidingWindowCounterRateLimiter(
            throttle_storage(runtime().settings)
        )
    return current_app.extensions["understudy_login_throttle"]


def _allowed(email: str) -> bool:
    """Count a sign-in attempt against the client's address and the email; False when over."""
    limit_text = runtime().settings.console_login_rate_limit
    if limit_text.strip().lower() in ("", "off"):
        return True
    try:
        limiter = _throttle()
        keys = (f"address:{request.remote_addr}", f"email:{email.strip().lower()}")
        return all(
            limiter.hit(limit, "understudy-console-login", key)
            for limit in parse_many(limit_text)
            for key in keys
        )
    except Exception:  # Redis unreachable: sign-in still works, as the API's limits do
        log.warning("console sign-in throttle unavailable", exc_info=True)
        return True


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only, never another site."""
    if target:
        try:
            parts = urlsplit(target)
        except ValueError:  # "http://[::1": not a place to go at all
            return url_for("console.tasks")
        # (a control character, "\r\n" say, cannot be in a Location header)
        if (
            not parts.scheme
            and not parts.netloc
            and parts.path.startswith("/console/")
            and target.isprintable()
        ):
            return target
    return url_for("console.tasks")


def _signed_in(user: users.User, target: str) -> Response:
    settings = runtime().settings
    with runtime().pool.connection() as conn:
        token = users.start_session(conn, user.id, settings.console_session_ttl_s)
        audit.record(
            conn, account_id=user.account_id, actor=user.email, action="user.sign_in",
            target=f"user:{user.id}",
        )  # fmt: skip
    response = redirect(target, 303)
    response.set_cookie(
        SESSION_COOKIE, token, max_age=int(settings.console_session_ttl_s), path="/console",
        httponly=True, samesite="Lax", secure=secure_cookie(),
    )  # fmt: skip
    return response


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in with an email and a password. When they open several accounts (one person, a user
    of several clinics' accounts), the page asks which, and the password is typed again."""
    error, email, choices, chosen = None, "", [], None
    if request.method == "POST":
        email = request.form.get("email", "")[: users.MAX_EMAIL_CHARS]
        password = request.form.get("password", "")
        chosen = whole_number(request.form.get("account", ""))
        if not _allowed(email):
            abort(429, "Too many sign-in attempts: wait a minute and try again.")
        with runtime().pool.connection() as conn:
            found = users.authenticate(conn, email, password, chosen)
            if len(found) > 1:
                choices = users.account_names(conn, found)
        if len(found) == 1:
            return _signed_in(found[0], _safe_next(request.args.get("next")))
        if not found:
            error = "The email or the password is wrong."
    page = render_template(
        "console/login.html", error=error, email=email, choices=choices,
        form_token=presession_token(), ended=request.args.get("ended") == "1",
    )  # fmt: skip
    response = current_app.make_response((page, 401 if error else 200))
    if error:
        rt = runtime()
        response.call_on_close(lambda: _record_refusal(rt, email, chosen))
    return response


def _record_refusal(rt: Runtime, email: str, chosen: int | None) -> None:
    """Record a refused sign-in in the audit log of each account the email is a user of (of the
    chosen one alone, if one was chosen). Called once the answer is sent: a wrong password for a
    known email and any password for an unknown one then take the same time to answer, where
    the entries' commit would have told them apart."""
    address = email.strip().lower()

    def write(conn: Conn) -> None:
        for account_id in users.accounts_of_email(conn, email):
            if chosen in (None, account_id):
                audit.record(
                    conn, account_id=account_id, actor=address,
                    action="user.sign_in_failed", target=f"email:{address}",
                )  # fmt: skip

    try:
        in_transaction(rt.pool, write, retry_s=REFUSAL_RECORD_RETRY_S)
    except psycopg.Error:
        log.warning("a refused sign-in was not written to the audit log", exc_info=True)


@bp.post("/logout")
def logout():
    token = request.cookies.get(SESSION_COOKIE, "")
    with runtime().pool.connection() as conn:
        record(conn, "user.sign_out", f"user:{current().user.id}")
        users.end_session(conn, token)
    response = redirect(url_for("console.login"), 303)
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response


@bp.route("/invite/<token>", methods=["GET", "POST"])
def invite(token: str):
    """An invited person chooses a password, then is signed in."""
    with runtime().pool.connection() as conn:
        invited = users.invited_user(conn, token)
    if invited is None:
        abort(404, "This invite is not valid any more: ask an admin for a new one.")
    error = None
    if request.method == "POST":
        password = request.form.get("password", "")
        if password != request.form.get("confirm", ""):
            error = "The two passwords differ."
        else:
            try:
                with runtime().pool.connection() as conn:
                    user = users.accept_invite(conn, token, password)
                    audit.record(
                        conn, account_id=user.account_id, actor=user.email,
                        action="user.accept_invite", target=f"user:{user.id}",
                    )  # fmt: skip
            except UserError as err:
                error = str(err)
            else:
                return _signed_in(user, url_for("console.tasks"))
    page = render_template(
        "console/invite.html", invited=invited, error=error, form_token=presession_token(),
        min_chars=users.MIN_PASSWORD_CHARS,
    )  # fmt: skip
    return page, 422 if error else 200
