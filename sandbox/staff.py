"""Staff records: an "add" form labelled like the sign-in form, and a report that fails with a
500 page in its own words.

Both reproduce what an agent must not get wrong on a real portal: a form with a "Password:"
field is not the sign-in page, and a 5xx answer is a portal error whatever the page says.
"""

from __future__ import annotations

import hashlib
from typing import Any

from flask import Blueprint, g, render_template

from . import forms
from .auth import login_required
from .store import get_store

bp = Blueprint("staff", __name__)

MSG_REQUIRED = "Enter Full Name, Username and Password."

# What the report answers: no "Internal Server Error", no alert, only the portal's own words.
_BROKEN_REPORT = """<!doctype html>
<html><head><title>Oops</title></head>
<body><h1>Oops!</h1><p>We hit a snag while building your report. Reference E-5017.</p></body>
</html>"""


@bp.get("/staff")
@login_required
def directory() -> Any:
    return render_template("staff_list.html", staff=get_store().submissions()["staff"])


@bp.get("/staff/new")
@login_required
def new() -> Any:
    return render_template("staff_form.html", fields=forms.NEW_STAFF, values={})


@bp.post("/staff/new")
@login_required
def create() -> Any:
    given = forms.values(forms.NEW_STAFF)
    if not all(given.values()):
        keep = {k: v for k, v in given.items() if k != "password"}
        return render_template(
            "staff_form.html", fields=forms.NEW_STAFF, values=keep, error=MSG_REQUIRED
        )
    digest = hashlib.sha256(given["password"].encode()).hexdigest()
    get_store().add_staff(
        {
            "full_name": given["full_name"],
            "username": given["username"],
            "password_sha256": digest,
            "by": g.portal.username,
        }
    )
    return render_template("staff_added.html", full_name=given["full_name"])


@bp.get("/staff/report")
@login_required
def report() -> Any:
    return _BROKEN_REPORT, 500, {"Content-Type": "text/html; charset=utf-8"}
