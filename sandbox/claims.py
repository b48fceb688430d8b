"""New Claim: a five-step wizard whose draft lives in the server-side session.

Each step posts to itself and redirects to the next (post/redirect/get); a step reached
without the earlier ones (e.g. after the session expired) starts the wizard over.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from flask import Blueprint, abort, g, redirect, render_template, url_for

from . import forms
from .auth import login_required, payer_required
from .eligibility import check_patient
from .records import MEMBERS, MSG_COVERAGE_INACTIVE
from .store import get_store

bp = Blueprint("claims", __name__)

STEPS = {1: "Patient", 2: "Provider", 3: "Service Lines", 4: "Attachments", 5: "Review"}
# Which draft keys each step fills; reaching step n needs all earlier ones.
_DRAFT_KEYS = {1: "patient", 2: "provider", 3: "service_lines", 4: "attachments"}
_MAX_LINES = 50


def _draft() -> dict[str, Any]:
    return g.portal.claim_draft


def _save_draft(draft: dict[str, Any]) -> None:
    get_store().update_session(g.portal.sid, claim_draft=draft)


def _render(step: int, error: str = "", **ctx: Any) -> str:
    return render_template("claim_step.html", step=step, step_name=STEPS[step], error=error, **ctx)


def _step_page(step: int, error: str = "", submitted: dict[str, Any] | None = None) -> str:
    """Render a step, prefilled from what was just submitted or else from the draft."""
    draft = _draft()
    if step == 1:
        return _render(1, error, fields=forms.PATIENT, values=submitted or draft.get("patient", {}))
    if step == 2:
        return _render(2, error, fields=(forms.NPI,), values=submitted or draft.get("provider", {}))
    if step == 3:
        lines = submitted.get("lines") if submitted else draft.get("service_lines")
        lines = lines or [{}]
        return _render(
            3,
            error,
            lines=lines,
            line_fields=forms.service_line,
            template_fields=forms.service_line("__N__"),
        )
    if step == 4:
        return _render(
            4,
            error,
            fields=forms.CLAIM_ATTACHMENTS,
            values={},
            attachments=draft.get("attachments", []),
        )
    return _render(5, error, draft=draft, total=_total(draft))


def _total(draft: dict[str, Any]) -> str:
    lines = draft.get("service_lines", [])
    return forms.money(sum((Decimal(x["charge"]) for x in lines), Decimal("0")))


def _read_lines() -> tuple[list[dict[str, str]], str]:
    """Service lines as submitted (line 1 .. the last one present) and the first error."""
    raw: list[dict[str, str]] = []
    for n in range(1, _MAX_LINES + 1):
        fields = forms.service_line(n)
        if n > 1 and not forms.has_any(fields):
            break
        got = forms.values(fields)
        raw.append(
            {
                "service_date": got[f"service_date_{n}"],
                "cpt_code": got[f"cpt_{n}"],
                "icd10_code": got[f"icd10_{n}"],
                "charge": got[f"charge_{n}"],
            }
        )
    # A fully blank added line is ignored, as if it had not been added.
    lines = [raw[0]] + [x for x in raw[1:] if any(x.values())]
    for n, line in enumerate(lines, start=1):
        if not all(line.values()):
            return lines, f"Complete every field of service line {n}."
        day = forms.parse_date(line["service_date"])
        if day is None:
            return lines, f"Enter Service Date {n} as MM/DD/YYYY."
        if not forms.CPT_RE.fullmatch(line["cpt_code"]):
            return lines, f"CPT Code {n} must be 5 characters."
        if not forms.ICD10_RE.fullmatch(line["icd10_code"]):
            return lines, f"ICD-10 Code {n} is not a valid ICD-10 code."
        amount = forms.parse_money(line["charge"])
        if amount is None:
            return lines, f"Charge {n} must be an amount such as 125.00."
        line.update(
            service_date=forms.us_date(day),
            cpt_code=line["cpt_code"].upper(),
            icd10_code=line["icd10_code"].upper(),
            charge=str(amount),
        )
    return lines, ""


@bp.get("/claims/new")
@login_required
@payer_required
def start() -> Any:
    _save_draft({})
    return _step_page(1)


@bp.get("/claims/new/step/<int:step>")
@login_required
@payer_required
def show_step(step: int) -> Any:
    if step not in STEPS:
        abort(404)
    if any(_DRAFT_KEYS[n] not in _draft() for n in range(1, step)):
        return redirect(url_for("claims.start"))
    return _step_page(step)


@bp.post("/claims/new/step/<int:step>")
@login_required
@payer_required
def submit_step(step: int) -> Any:
    if step not in STEPS:
        abort(404)
    draft = dict(_draft())
    if any(_DRAFT_KEYS[n] not in draft for n in range(1, step)):
        return redirect(url_for("claims.start"))
    if step == 1:
        given = forms.values(forms.PATIENT)
        member, error = check_patient(given)
        if member is None:
            return _step_page(1, error, given)
        draft["patient"] = {
            **given,
            "member_id": member.member_id,
            "dob": forms.us_date(member.dob),
        }
    elif step == 2:
        given = forms.values((forms.NPI,))
        if not forms.NPI_RE.fullmatch(given["npi"]):
            return _step_page(2, "Provider NPI must be 10 digits.", given)
        draft["provider"] = given
    elif step == 3:
        lines, error = _read_lines()
        if error:
            return _step_page(3, error, {"lines": lines})
        draft["service_lines"] = lines
    elif step == 4:
        draft["attachments"] = forms.files("attachments")
    else:
        return _submit(draft)
    _save_draft(draft)
    return redirect(url_for("claims.show_step", step=step + 1))


def _submit(draft: dict[str, Any]) -> Any:
    store = get_store()
    patient = draft["patient"]
    member = MEMBERS[patient["member_id"]]
    record = {
        "member_id": member.member_id,
        "patient_first_name": patient["first_name"],
        "patient_last_name": patient["last_name"],
        "date_of_birth": patient["dob"],
        "provider_npi": draft["provider"]["npi"],
        "service_lines": draft["service_lines"],
        "total_billed": str(sum(Decimal(x["charge"]) for x in draft["service_lines"])),
        "attachments": draft["attachments"],
        "payer": g.portal.payer,
        "username": g.portal.username,
    }
    _save_draft({})
    if not member.active:
        store.add_claim(
            {
                **record,
                "reference": None,
                "status": "Rejected",
                "rejection_reason": MSG_COVERAGE_INACTIVE,
            }
        )
        return render_template("claim_rejected.html", reason=MSG_COVERAGE_INACTIVE)
    ref = store.new_reference("CLM")
    store.add_claim({**record, "reference": ref, "status": "Received", "rejection_reason": None})
    return redirect(url_for("claims.confirmation", reference=ref))


@bp.get("/claims/<reference>")
@login_required
@payer_required
def confirmation(reference: str) -> Any:
    claim = get_store().find_submission("claims", reference)
    if claim is None:
        abort(404)
    return render_template("claim_submitted.html", claim=claim)
