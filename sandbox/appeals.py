"""Appeals: the appeal form, its outcome page, and the searchable list."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, g, redirect, render_template, url_for

from . import forms
from .auth import login_required, payer_required
from .faults import raise_if_error_member
from .store import get_store

bp = Blueprint("appeals", __name__)

MSG_REQUIRED = "Enter Claim Number, Member ID and Reason for Appeal."
MSG_NOT_FOUND = "Claim not found."
MSG_NOT_ELIGIBLE = "Claim is not eligible for appeal."


@bp.get("/appeals/new")
@login_required
@payer_required
def new() -> Any:
    return render_template("appeal_form.html", fields=forms.APPEAL, values={})


@bp.post("/appeals/new")
@login_required
@payer_required
def submit() -> Any:
    given = forms.values(forms.APPEAL)
    raise_if_error_member(given["member_id"])
    if not (given["claim_number"] and given["member_id"] and given["reason"]):
        return render_template(
            "appeal_form.html", fields=forms.APPEAL, values=given, error=MSG_REQUIRED
        )
    store = get_store()
    number, member_id = given["claim_number"].upper(), given["member_id"].upper()
    claim = next((c for c in store.all_claims() if c.claim_number == number), None)
    record = {
        "claim_number": number,
        "member_id": member_id,
        "reason_for_appeal": given["reason"],
        "attachments": forms.files("appeal_letter"),
        "payer": g.portal.payer,
        "username": g.portal.username,
    }
    if claim is None or claim.member_id != member_id:
        reason = MSG_NOT_FOUND
    elif claim.status != "Denied":
        reason = MSG_NOT_ELIGIBLE
    else:
        ref = store.new_reference("APL")
        store.add_appeal(
            {**record, "reference": ref, "status": "Received", "rejection_reason": None}
        )
        return redirect(url_for("appeals.result", reference=ref))
    store.add_appeal(
        {**record, "reference": None, "status": "Not accepted", "rejection_reason": reason}
    )
    return render_template("appeal_rejected.html", reason=reason)


@bp.get("/appeals/<reference>")
@login_required
@payer_required
def result(reference: str) -> Any:
    item = get_store().find_submission("appeals", reference)
    if item is None:
        abort(404)
    return render_template("appeal_received.html", item=item)


@bp.get("/appeals")
@login_required
@payer_required
def listing() -> Any:
    number = forms.value("claim_number").upper()
    items = [
        {**x, "submitted": forms.day_of(x["submitted_at"])}
        for x in reversed(get_store().submissions()["appeals"])
        if x["reference"] and (not number or x["claim_number"] == number)
    ]
    return render_template(
        "appeals_list.html",
        fields=(forms.CLAIM_NUMBER,),
        values={"claim_number": number},
        items=items,
    )
