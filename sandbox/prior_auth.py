"""Prior authorizations: the request form, its decision page, and the searchable list."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, g, redirect, render_template, url_for

from . import forms
from .auth import login_required, payer_required
from .eligibility import check_patient
from .faults import raise_if_error_member
from .store import get_store

bp = Blueprint("prior_auth", __name__)


@bp.get("/prior-auth/new")
@login_required
@payer_required
def new() -> Any:
    return render_template("prior_auth_form.html", fields=forms.PRIOR_AUTH, values={})


@bp.post("/prior-auth/new")
@login_required
@payer_required
def submit() -> Any:
    given = forms.values(forms.PRIOR_AUTH)
    member, error = check_patient(given)
    if member is not None:
        if not forms.NPI_RE.fullmatch(given["npi"]):
            error = "Provider NPI must be 10 digits."
        elif not forms.CPT_RE.fullmatch(given["cpt"]):
            error = "Procedure Code (CPT) must be 5 characters."
        elif not forms.ICD10_RE.fullmatch(given["icd10"]):
            error = "Diagnosis Code (ICD-10) is not a valid ICD-10 code."
    if error or member is None:
        return render_template(
            "prior_auth_form.html", fields=forms.PRIOR_AUTH, values=given, error=error
        )
    decision, details = member.prior_auth
    ref = get_store().new_reference("PA")
    get_store().add_prior_auth(
        {
            "reference": ref,
            "decision": decision,
            "details": details,
            "member_id": member.member_id,
            "patient_first_name": given["first_name"],
            "patient_last_name": given["last_name"],
            "date_of_birth": forms.us_date(member.dob),
            "provider_npi": given["npi"],
            "procedure_code": given["cpt"].upper(),
            "diagnosis_code": given["icd10"].upper(),
            "clinical_notes": given["notes"],
            "attachments": forms.files("clinical_attachments"),
            "payer": g.portal.payer,
            "username": g.portal.username,
        }
    )
    return redirect(url_for("prior_auth.result", reference=ref))


@bp.get("/prior-auth/<reference>")
@login_required
@payer_required
def result(reference: str) -> Any:
    item = get_store().find_submission("prior_auths", reference)
    if item is None:
        abort(404)
    return render_template("prior_auth_result.html", item=item)


@bp.get("/prior-auth")
@login_required
@payer_required
def listing() -> Any:
    member_id = forms.value("member_id")
    raise_if_error_member(member_id)
    items = [
        {**x, "submitted": forms.day_of(x["submitted_at"])}
        for x in reversed(get_store().submissions()["prior_auths"])
        if not member_id or x["member_id"] == member_id.upper()
    ]
    return render_template(
        "prior_auth_list.html",
        fields=(forms.MEMBER_ID,),
        values={"member_id": member_id},
        items=items,
    )
