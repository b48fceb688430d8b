"""Sign-in, TOTP MFA, sign-out, and the server-side session checks every portal page uses."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlencode

import pyotp
from flask import (
    Blueprint,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from . import forms
from .records import USERS
from .store import PortalSession, get_store

bp = Blueprint("auth", __name__)

MSG_EXPIRED = "Your session has expired. Please sign in again."
MSG_ENDED_ELSEWHERE = (
    "You were signed out because your user name signed in from another browser. Only one"
    " session at a time is allowed."
)
MSG_SIGNED_IN_ELSEWHERE = (
    "This user name is already signed in from another browser. Sign out there first, or wait"
    " for that session to end."
)
MSG_BAD_LOGIN = "Invalid username or password."
MSG_BAD_CODE = "Invalid code."
MSG_CHOOSE_PAYER = "Choose a payer first."

F = TypeVar("F", bound=Callable[..., Any])


class _TOTP(pyotp.TOTP):
    """RFC 6238 TOTP accepting 80-bit secrets.

    The documented secret (like most authenticator-app secrets) is 16 base32 characters =
    80 bits; recent pyotp refuses secrets under 112 bits unless told otherwise.
    """

    min_secret_length_bits = 80


def _safe_next(target: str | None) -> str:
    """Only same-site paths are followed after sign-in (no open redirects)."""
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("portal.dashboard")


def _login_url(next_url: str | None = None) -> str:
    return url_for("auth.login") + ("?" + urlencode({"next": next_url}) if next_url else "")


def _here() -> str:
    """Where to come back to after signing in again: this page (a POST returns to its form)."""
    if request.method == "GET" and request.query_string:
        return request.full_path
    return request.path


def _expired(old: PortalSession | None) -> None:
    """Forget the cookie's session and say so on the sign-in page.

    The payer of an expired (not signed-out) session is remembered in the cookie, so signing
    in again as the same user resumes where the person was, as portals do.
    """
    session.pop("sid", None)
    if old is not None and old.mfa_ok and old.payer:
        session["resume"] = {"username": old.username, "payer": old.payer}
    flash(MSG_ENDED_ELSEWHERE if old is not None and old.ended_elsewhere else MSG_EXPIRED)


def _load(count: bool) -> PortalSession | str:
    """The signed-in session, or the URL to send the browser to instead."""
    sid = session.get("sid")
    if not sid:
        return _login_url(_here())
    portal, old = get_store().touch_session(sid, count=count)
    if portal is None:
        # A cookie without a live server session: idle timeout, request budget, reset, restart.
        _expired(old)
        return _login_url(_here())
    if not portal.mfa_ok:
        return url_for("auth.mfa")
    return portal


def login_required(view: F) -> F:
    """Page needs a signed-in (and MFA-verified) session; counts toward expire_after_requests."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        portal = _load(count=True)
        if isinstance(portal, str):
            return redirect(portal)
        g.portal = portal
        return view(*args, **kwargs)

    return cast(F, wrapped)


def api_login_required(view: F) -> F:
    """Like login_required for JSON fetched by page scripts: 401 + where to go, not counted."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        portal = _load(count=False)
        if isinstance(portal, str):
            # Scripts send the user back to the page they are on, not to this endpoint.
            referrer = request.headers.get("X-Page-Path")
            return jsonify(login=_login_url(referrer) if referrer else portal), 401
        g.portal = portal
        return view(*args, **kwargs)

    return cast(F, wrapped)


def payer_required(view: F) -> F:
    """Form pages need a payer chosen on the dashboard first (use under login_required)."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not g.portal.payer:
            flash(MSG_CHOOSE_PAYER)
            return redirect(url_for("portal.dashboard"))
        return view(*args, **kwargs)

    return cast(F, wrapped)


def _finish_sign_in(portal: PortalSession) -> Response | str:
    store = get_store()
    if store.faults()["single_session"] == "refuse" and store.signed_in_elsewhere(
        portal.username, but=portal.sid
    ):  # another browser finished signing in meanwhile
        store.drop_session(portal.sid)
        session.pop("sid", None)
        return _refused(portal.next_url)
    mode = store.faults()["modal"]
    show = mode == "always" or (mode == "random" and store.chance(0.5))
    store.update_session(portal.sid, mfa_ok=True, show_modal=show)
    return redirect(_safe_next(portal.next_url))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    next_url = request.args.get("next", "")
    if request.method == "GET":
        return render_template("login.html", fields=forms.LOGIN, next_url=next_url)
    given = forms.values(forms.LOGIN)
    username = given["username"].lower()
    store = get_store()
    store.count_login(username)
    user = USERS.get(username)
    if user is None or not hmac.compare_digest(given["password"].encode(), user.password.encode()):
        return render_template(
            "login.html",
            fields=forms.LOGIN,
            next_url=next_url,
            error=MSG_BAD_LOGIN,
            values={"username": given["username"]},
        )
    if old := session.get("sid"):
        store.drop_session(old)
    resume = session.pop("resume", None) or {}
    payer = resume.get("payer") if resume.get("username") == username else None
    portal = store.create_session(username, mfa_ok=False, next_url=next_url, payer=payer)
    if portal is None:
        return _refused(next_url)
    session["sid"] = portal.sid
    if user.totp_secret:
        return redirect(url_for("auth.mfa"))
    return _finish_sign_in(portal)


def _refused(next_url: str) -> str:
    """The sign-in page refusing a user who is signed in from another browser."""
    return render_template(
        "login.html", fields=forms.LOGIN, next_url=next_url, error=MSG_SIGNED_IN_ELSEWHERE
    )


@bp.route("/mfa", methods=["GET", "POST"])
def mfa() -> Any:
    sid = session.get("sid")
    portal, old = get_store().touch_session(sid, count=False) if sid else (None, None)
    if portal is None:
        if sid:
            _expired(old)
        return redirect(_login_url(old.next_url if old else None))
    if portal.mfa_ok:
        return redirect(url_for("portal.dashboard"))
    if request.method == "GET":
        return render_template("mfa.html", fields=forms.MFA)
    get_store().count_mfa(portal.username)
    code = forms.value("code").replace(" ", "")
    secret = USERS[portal.username].totp_secret or ""
    # valid_window=1 tolerates one 30 s step of clock skew, as real portals do.
    if not (code.isdigit() and _TOTP(secret).verify(code, valid_window=1)):
        return render_template("mfa.html", fields=forms.MFA, error=MSG_BAD_CODE)
    return _finish_sign_in(portal)


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Response:
    session.pop("resume", None)
    if sid := session.pop("sid", None):
        get_store().drop_session(sid)
    return redirect(url_for("auth.login"))
