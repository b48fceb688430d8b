"""Form fields of the portal: labels, per-layout names, and reading/parsing submitted values.

Pages are rendered from these Field lists, so the ``alt`` layout can change order, wrappers,
ids and names in one place while label texts stay those of docs/sandbox.md.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from flask import request
from werkzeug.datastructures import MultiDict

from .store import get_store


@dataclass(frozen=True)
class Field:
    """One labelled form control. ``key`` is the canonical (default-layout) name."""

    key: str
    label: str
    kind: str = "text"  # text | password | select | textarea | file
    options: tuple[tuple[str, str], ...] = ()  # (value, visible text) for selects
    placeholder: str = ""
    multiple: bool = False


# Names used by the alt layout; numbered keys ("cpt_2") map to the base name plus the number.
ALT_NAMES = {
    "username": "loginId",
    "password": "passwd",
    "code": "otpValue",
    "payer": "payerSel",
    "member_id": "subscriberId",
    "first_name": "ptGiven",
    "last_name": "ptFamily",
    "dob": "ptBirthDate",
    "npi": "rendNpi",
    "cpt": "procCd",
    "icd10": "dxCd",
    "notes": "clinNarrative",
    "clinical_attachments": "clinDocs",
    "attachments": "claimDocs",
    "service_date": "svcDt",
    "charge": "chgAmt",
    "claim_number": "clmNo",
    "reason": "apReason",
    "appeal_letter": "apLetter",
    "new_username": "usrLogin",
    "new_password": "usrSecret",
    "confirm_password": "usrSecret2",
}

PAYERS = (("sandbox-health", "Sandbox Health"), ("acme-mutual", "Acme Mutual"))

DOB_HINT = "MM/DD/YYYY"
MEMBER_ID = Field("member_id", "Member ID")
PATIENT = (
    MEMBER_ID,
    Field("first_name", "Patient First Name"),
    Field("last_name", "Patient Last Name"),
    Field("dob", "Date of Birth", placeholder=DOB_HINT),
)
NPI = Field("npi", "Provider NPI")
CLAIM_NUMBER = Field("claim_number", "Claim Number")

LOGIN = (Field("username", "Username"), Field("password", "Password", "password"))
MFA = (Field("code", "One-time code"),)
PAYER = (Field("payer", "Payer", "select", (("", "Select a payer"), *PAYERS)),)
ELIGIBILITY = PATIENT
CLAIM_ATTACHMENTS = (Field("attachments", "Attachments", "file", multiple=True),)
PRIOR_AUTH = (
    *PATIENT,
    NPI,
    Field("cpt", "Procedure Code (CPT)"),
    Field("icd10", "Diagnosis Code (ICD-10)"),
    Field("notes", "Clinical Notes", "textarea"),
    Field("clinical_attachments", "Clinical Attachments", "file", multiple=True),
)
APPEAL = (
    CLAIM_NUMBER,
    MEMBER_ID,
    Field("reason", "Reason for Appeal", "textarea"),
    Field("appeal_letter", "Appeal Letter", "file", multiple=True),
)
CLAIM_STATUS = (CLAIM_NUMBER, MEMBER_ID)
# Labelled like the sign-in form ("Username:", "Password:"), as many portals' add forms are: a
# page an agent must not take for the sign-in page.
NEW_STAFF = (
    Field("full_name", "Full Name:"),
    Field("username", "Username:"),
    Field("password", "Password:", "password"),
)
NEW_USER = (
    Field("new_username", "New Username"),
    Field("new_password", "New Password", "password"),
    Field("confirm_password", "Confirm Password", "password"),
)


def service_line(n: int | str) -> tuple[Field, ...]:
    """The four fields of service line ``n`` (``n`` may be a JS placeholder like "__N__")."""
    return (
        Field(f"service_date_{n}", f"Service Date {n}", placeholder=DOB_HINT),
        Field(f"cpt_{n}", f"CPT Code {n}"),
        Field(f"icd10_{n}", f"ICD-10 Code {n}"),
        Field(f"charge_{n}", f"Charge {n}"),
    )


# -- layout ---------------------------------------------------------------------------------


def layout() -> str:
    return get_store().faults()["layout"]


def field_name(key: str, which: str | None = None) -> str:
    """The form ``name`` of a field in a layout (the current one by default)."""
    if (which or layout()) != "alt":
        return key
    if key in ALT_NAMES:
        return ALT_NAMES[key]
    m = re.fullmatch(r"(.+?)_(\d+|__N__)", key)
    if m and m[1] in ALT_NAMES:
        return f"{ALT_NAMES[m[1]]}{m[2]}"
    return key


def ordered(fields: tuple[Field, ...] | list[Field]) -> list[Field]:
    """Fields in the order the current layout shows them (alt reverses them)."""
    return list(reversed(fields)) if layout() == "alt" and len(fields) > 1 else list(fields)


def new_id() -> str:
    """A fresh element id: generated on every page load so SOPs cannot rely on ids."""
    return ("x" if layout() == "alt" else "f-") + secrets.token_hex(5)


# -- reading submissions ----------------------------------------------------------------------


def _source() -> MultiDict[str, str]:
    return request.form if request.method == "POST" else request.args


def value(key: str) -> str:
    """A submitted text value, stripped. Either layout's name is accepted, the current first,
    so a layout switch between rendering and submitting does not lose input."""
    src = _source()
    for which in (layout(), "default", "alt"):
        name = field_name(key, which)
        if name in src:
            return src.get(name, "").strip()
    return ""


def values(fields: tuple[Field, ...] | list[Field]) -> dict[str, str]:
    """Submitted text values of several fields, by canonical key."""
    return {f.key: value(f.key) for f in fields if f.kind != "file"}


def has_any(fields: tuple[Field, ...]) -> bool:
    """Whether any of the fields was present in the request at all (a search was made)."""
    src = _source()
    return any(field_name(f.key, w) in src for f in fields for w in ("default", "alt"))


def files(key: str) -> list[dict[str, object]]:
    """Uploaded files of a file field as ``{"filename", "size"}`` (empty file inputs skipped)."""
    for which in (layout(), "default", "alt"):
        uploads = [f for f in request.files.getlist(field_name(key, which)) if f.filename]
        if uploads:
            return [{"filename": f.filename, "size": len(f.read())} for f in uploads]
    return []


# -- parsing --------------------------------------------------------------------------------


def parse_date(text: str) -> date | None:
    """MM/DD/YYYY (as the portal asks), leniently also YYYY-MM-DD; None if neither."""
    for fmt in ("%m/%d/%Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    return None


def us_date(d: date) -> str:
    return d.strftime("%m/%d/%Y")


def day_of(iso: str) -> str:
    """The MM/DD/YYYY day of an ISO timestamp (for "Submitted" columns)."""
    return us_date(datetime.fromisoformat(iso).date())


def parse_money(text: str) -> Decimal | None:
    """An amount like "125", "125.00" or "$1,250.00"; None unless positive with <= 2 decimals."""
    try:
        amount = Decimal(text.strip().lstrip("$").replace(",", ""))
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount <= 0 or amount.as_tuple().exponent < -2:  # type: ignore[operator]
        return None
    return amount.quantize(Decimal("0.01"))


def money(amount: Decimal) -> str:
    return f"${amount:,.2f}"


NPI_RE = re.compile(r"\d{10}")
CPT_RE = re.compile(r"[0-9A-Z]{5}", re.IGNORECASE)
ICD10_RE = re.compile(r"[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?", re.IGNORECASE)
