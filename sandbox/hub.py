"""Care Hub: a second sandbox portal under /hub, a single-page app unlike the first in kind.

The browser loads one page (every /hub/... path serves the same shell) and plain JavaScript
(sandbox/static/hub/app.js, no build step) draws each screen, moving between them with
``history.pushState``. Its member fields live in a shadow-DOM component, its coverage type is a
custom (non-<select>) dropdown, eligibility results show in an iframe, and sign-in is an email
and a 6-digit passcode. The JSON API below is what the page calls; docs/sandbox.md describes
what a person sees.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from flask import Blueprint, abort, g, jsonify, make_response, request
from markupsafe import escape

from .auth import _TOTP as TOTP
from .faults import raise_if_error_member
from .forms import parse_date
from .records import HUB_USERS, MEMBERS, MSG_DOB_MISMATCH, MSG_NOT_FOUND
from .store import get_store

bp = Blueprint("hub", __name__, url_prefix="/hub")

COOKIE = "hub_session"
COVERAGE_TYPES = ("Medical", "Dental", "Vision")

MSG_NO_ACCOUNT = "We could not find an account for that email address."
MSG_BAD_PASSCODE = "That passcode is not valid. Check it and try again."
MSG_REQUIRED = "Enter Member ID, Last name and Date of birth, and choose a Coverage type."
MSG_DOB_FORMAT = "Enter Date of birth as MM/DD/YYYY."
MSG_NO_CLAIM = "No claim found with that number."
MSG_CLAIM_REQUIRED = "Enter a claim number."

_SHELL = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Care Hub</title>
<link rel="stylesheet" href="/static/hub/hub.css"></head>
<body>
<header><span class="brand">Care Hub</span>
<nav aria-label="Main" hidden>
<a href="/hub/" data-route>Home</a> <a href="/hub/eligibility" data-route>Eligibility</a>
<a href="/hub/claims" data-route>Claim status</a>
<button type="button" id="sign-out" class="link">Sign out</button></nav></header>
<main id="view" aria-live="polite"><p role="status">Loading…</p></main>
<script src="/static/hub/app.js"></script>
</body></html>"""

_FRAME = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Eligibility result</title>
<link rel="stylesheet" href="/static/hub/hub.css"></head>
<body class="frame">{body}</body></html>"""


def _email() -> str | None:
    sid = request.cookies.get(COOKIE, "")
    return get_store().spa_session(sid) if sid else None


def _signed_in() -> None:
    """Abort with a JSON 401 unless a live Care Hub session is on the request."""
    email = _email()
    if email is None:
        abort(make_response(jsonify(error="signed_out"), 401))
    g.hub_email = email


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    return value.strip() if isinstance(value, str) else ""


# -- the page shell: every client-side route loads the same document ------------------------


@bp.get("/")
@bp.get("/<path:route>")
def shell(route: str = "") -> Any:
    if route.startswith(("api/", "frame/")):
        abort(404)
    return _SHELL, 200, {"Content-Type": "text/html; charset=utf-8"}


# -- sign-in: email, then a passcode ----------------------------------------------------------


@bp.post("/api/passcode")
def send_passcode() -> Any:
    email = _text(_body(), "email").lower()
    get_store().count_login(email)
    if email not in HUB_USERS:
        return jsonify(error=MSG_NO_ACCOUNT), 404
    get_store().spa_send_passcode(email)
    return jsonify(sent=True)


def _passcode_ok(email: str, code: str) -> bool:
    if get_store().spa_take_passcode(email, code):
        return True
    secret = HUB_USERS.get(email)
    if not secret:
        return False
    # The first portal's TOTP rules: 80-bit secrets, one 30 s step of clock skew.
    return code.isdigit() and TOTP(secret).verify(code, valid_window=1)


@bp.post("/api/session")
def sign_in() -> Any:
    body = _body()
    email, code = _text(body, "email").lower(), _text(body, "passcode").replace(" ", "")
    get_store().count_mfa(email)
    if email not in HUB_USERS or not _passcode_ok(email, code):
        return jsonify(error=MSG_BAD_PASSCODE), 401
    response = jsonify(email=email)
    response.set_cookie(
        COOKIE,
        get_store().spa_create_session(email),
        httponly=True,
        samesite="Lax",
        path="/hub",
    )
    return response


@bp.delete("/api/session")
def sign_out() -> Any:
    if sid := request.cookies.get(COOKIE):
        get_store().spa_drop_session(sid)
    response = jsonify(ok=True)
    response.delete_cookie(COOKIE, path="/hub")
    return response


@bp.get("/api/me")
def me() -> Any:
    _signed_in()
    return jsonify(email=g.hub_email)


# -- eligibility: the result is a document shown in an iframe --------------------------------


def _eligibility_rows(body: dict[str, Any]) -> tuple[list[list[str]] | None, str]:
    member_id, last = _text(body, "member_id").upper(), _text(body, "last_name")
    dob_text, coverage = _text(body, "dob"), _text(body, "coverage_type")
    raise_if_error_member(member_id)
    if not (member_id and last and dob_text and coverage in COVERAGE_TYPES):
        return None, MSG_REQUIRED
    dob = parse_date(dob_text)
    if dob is None:
        return None, MSG_DOB_FORMAT
    found = MEMBERS.get(member_id)
    if found is None or found.last_name.casefold() != last.casefold():
        return [], MSG_NOT_FOUND
    if found.dob != dob:
        return [], MSG_DOB_MISMATCH
    covered = coverage == "Medical" and found.active
    status = "Active" if covered else ("Inactive" if coverage == "Medical" else "Not covered")
    return [
        ["Member ID", found.member_id],
        ["Patient", found.patient],
        ["Coverage Type", coverage],
        ["Coverage Status", status],
        ["Plan", found.plan if coverage == "Medical" else "—"],
        ["Copay", found.copay if covered else "—"],
        ["Coverage End", found.coverage_end],
    ], ""


@bp.post("/api/eligibility")
def eligibility() -> Any:
    _signed_in()
    rows, error = _eligibility_rows(_body())
    if rows is None:  # an input mistake stays on the form
        return jsonify(error=error), 400
    # The lookup is the slow part, as on the first portal's spinner page.
    time.sleep(get_store().faults()["spinner_s"])
    token = get_store().spa_save_result({"rows": rows, "error": error, "email": g.hub_email})
    return jsonify(frame=f"/hub/frame/{token}")


@bp.get("/frame/<token>")
def result_frame(token: str) -> Any:
    result = get_store().spa_result(token)
    email = _email()
    if email is None:
        body = '<p role="alert">Your session has expired. Please sign in again.</p>'
        return _FRAME.format(body=body), 401, {"Content-Type": "text/html; charset=utf-8"}
    if result is None or not hmac.compare_digest(result["email"].encode(), email.encode()):
        abort(404)
    if result["error"]:
        body = f'<p role="alert">{escape(result["error"])}</p>'
    else:
        cells = "".join(
            f'<tr><th scope="row">{escape(k)}</th><td>{escape(v)}</td></tr>'
            for k, v in result["rows"]
        )
        body = f"<table><caption>Eligibility</caption>{cells}</table>"
    return _FRAME.format(body=body), 200, {"Content-Type": "text/html; charset=utf-8"}


# -- claim status ---------------------------------------------------------------------------


@bp.get("/api/claims/<number>")
def claim(number: str) -> Any:
    _signed_in()
    number = number.strip().upper()
    time.sleep(get_store().faults()["slow_page_s"])
    for c in get_store().all_claims():
        if c.claim_number == number:
            raise_if_error_member(c.member_id)
            return jsonify(
                claim_number=c.claim_number,
                member_id=c.member_id,
                service_date=c.service_date.strftime("%m/%d/%Y"),
                status=c.status,
                billed=f"${c.billed:,.2f}",
                paid=f"${c.paid:,.2f}",
                details=c.details,
            )
    return jsonify(error=MSG_NO_CLAIM), 404
