"""Portal users: a form that creates a user of the portal, with a password and its confirmation.

It gives SOPs a page where a task's own secret (a new user's password) must be typed.
"""

from __future__ import annotations

import hashlib
from typing import Any

from flask import Blueprint, g, render_template

from . import forms
from .auth import login_required
from .store import get_store

bp = Blueprint("users", __name__)

MSG_REQUIRED = "Enter Username, Password and Confirm Password."
MSG_SHORT = "Password must be at least 8 characters."
MSG_MISMATCH = "Passwords do not match."


@bp.get("/users/new")
@login_required
def new() -> Any:
    return render_template("user_form.html", fields=forms.NEW_USER, values={})


@bp.post("/users/new")
@login_required
def create() -> Any:
    given = forms.values(forms.NEW_USER)
    error = None
    if not (given["new_username"] and given["new_password"] and given["confirm_password"]):
        error = MSG_REQUIRED
    elif len(given["new_password"]) < 8:
        error = MSG_SHORT
    elif given["new_password"] != given["confirm_password"]:
        error = MSG_MISMATCH
    if error:
        # Like real portals, a refused form keeps the username and never the passwords.
        keep = {"new_username": given["new_username"]}
        return render_template("user_form.html", fields=forms.NEW_USER, values=keep, error=error)
    # Only a digest is kept, so tests can check what was typed without the portal echoing it.
    digest = hashlib.sha256(given["new_password"].encode()).hexdigest()
    get_store().add_user(
        {"username": given["new_username"], "password_sha256": digest, "by": g.portal.username}
    )
    return render_template("user_created.html", username=given["new_username"])
