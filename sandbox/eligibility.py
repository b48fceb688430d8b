"""Eligibility & Benefits: search form, then results shown behind a spinner.

The search posts, the result is computed and parked in the store under a token, and the
results page fetches it as JSON after ``spinner_s`` - like portals that load results async.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, g, jsonify, redirect, render_template, url_for

from . import forms
from .auth import api_login_required, login_required, payer_required
from .faults import raise_if_error_member
from .records import match_patient
from .store import get_store

bp = Blueprint("eligibility", __name__)

MSG_REQUIRED = "Enter Member ID, Patient First Name, Patient Last Name and Date of Birth."
MSG_DOB_FORMAT = "Enter Date of Birth as MM/DD/YYYY."


def check_patient(given: dict[str, str]) -> tuple[Any, str]:
    """Validate and match the patient fields; ``(member, "")`` or ``(None, alert text)``.

    Shared by eligibility, the claim wizard and prior auth. The error member answers 500.
    """
    raise_if_error_member(given["member_id"])
    if not all(given[k] for k in ("member_id", "first_name", "last_name", "dob")):
        return None, MSG_REQUIRED
    dob = forms.parse_date(given["dob"])
    if dob is None:
        return None, MSG_DOB_FORMAT
    return match_patient(given["member_id"], given["first_name"], given["last_name"], dob)


@bp.route("/eligibility", methods=["GET"])
@login_required
@payer_required
def search_form() -> Any:
    return render_template("eligibility.html", fields=forms.ELIGIBILITY, values={})


@bp.route("/eligibility", methods=["POST"])
@login_required
@payer_required
def search() -> Any:
    given = forms.values(forms.ELIGIBILITY)
    member, error = check_patient(given)
    if error in (MSG_REQUIRED, MSG_DOB_FORMAT):
        # Input mistakes are caught on the form itself; lookups go through the spinner.
        return render_template(
            "eligibility.html", fields=forms.ELIGIBILITY, values=given, error=error
        )
    if member is None:
        result: dict[str, Any] = {"error": error}
    else:
        result = {
            "rows": [
                ["Member ID", member.member_id],
                ["Patient", member.patient],
                ["Coverage Status", "Active" if member.active else "Inactive"],
                ["Plan", member.plan],
                ["Copay", member.copay],
                ["Coverage End", member.coverage_end],
            ]
        }
    result["username"] = g.portal.username
    token = get_store().save_eligibility(result)
    return redirect(url_for("eligibility.results", token=token))


@bp.get("/eligibility/results/<token>")
@login_required
@payer_required
def results(token: str) -> Any:
    if get_store().eligibility(token) is None:
        abort(404)
    return render_template(
        "eligibility_results.html",
        data_url=url_for("eligibility.results_json", token=token),
        delay_ms=int(get_store().faults()["spinner_s"] * 1000),
    )


@bp.get("/eligibility/results/<token>/data")
@api_login_required
def results_json(token: str) -> Any:
    result = get_store().eligibility(token)
    if result is None or result.pop("username") != g.portal.username:
        abort(404)
    return jsonify(result)
