"""The dashboard: payer choice, navigation, and the announcement modal after sign-in."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, g, jsonify, redirect, render_template, request, url_for

from . import forms
from .auth import MSG_CHOOSE_PAYER, login_required
from .store import get_store

bp = Blueprint("portal", __name__)


@bp.get("/")
def index() -> Any:
    return redirect(url_for("portal.dashboard"))


@bp.route("/dashboard", methods=["GET", "POST"])
@login_required
def dashboard() -> Any:
    if request.method == "POST":
        chosen = forms.value("payer")
        if chosen not in dict(forms.PAYERS):
            flash(MSG_CHOOSE_PAYER)
        else:
            get_store().update_session(g.portal.sid, payer=chosen)
        # Post/redirect/get, so a reload does not re-post the form.
        return redirect(url_for("portal.dashboard"))
    return render_template("dashboard.html", fields=forms.PAYER, values={"payer": g.portal.payer})


@bp.post("/announcement/dismiss")
@login_required
def dismiss_announcement() -> Any:
    get_store().update_session(g.portal.sid, show_modal=False)
    if request.headers.get("X-Requested-With") == "fetch":
        return jsonify(ok=True)
    back = request.args.get("back", "")
    ok = back.startswith("/") and not back.startswith("//")
    return redirect(back if ok else url_for("portal.dashboard"))
