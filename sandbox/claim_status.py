"""Claim Status: the slow search page with paginated results."""

from __future__ import annotations

import math
import time
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, render_template, request, url_for

from . import forms
from .auth import login_required, payer_required
from .faults import raise_if_error_member
from .store import get_store

bp = Blueprint("claim_status", __name__)

PAGE_SIZE = 10
MSG_EMPTY = "Enter a Claim Number or Member ID."
MSG_NONE = "No claims found."


@bp.get("/claim-status")
@login_required
@payer_required
def search() -> Any:
    given = forms.values(forms.CLAIM_STATUS)
    ctx: dict[str, Any] = {"fields": forms.CLAIM_STATUS, "values": given}
    if not forms.has_any(forms.CLAIM_STATUS):
        return render_template("claim_status.html", **ctx)
    # The slow part of a real portal is the search itself, so only searches wait.
    time.sleep(get_store().faults()["slow_page_s"])
    number, member_id = given["claim_number"].upper(), given["member_id"].upper()
    if not (number or member_id):
        return render_template("claim_status.html", error=MSG_EMPTY, **ctx)
    raise_if_error_member(member_id)
    rows = [
        c
        for c in get_store().all_claims()
        if (not number or c.claim_number == number) and (not member_id or c.member_id == member_id)
    ]
    if not rows:
        return render_template("claim_status.html", error=MSG_NONE, **ctx)
    pages = math.ceil(len(rows) / PAGE_SIZE)
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), pages)

    def page_url(n: int) -> str:
        # Keep the search (in whatever field names were used) and change only the page.
        args = [(k, v) for k, v in request.args.items(multi=True) if k != "page"]
        return url_for("claim_status.search") + "?" + urlencode([*args, ("page", n)])

    return render_template(
        "claim_status.html",
        rows=rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE],
        page=page,
        pages=pages,
        prev_url=page_url(page - 1) if page > 1 else None,
        next_url=page_url(page + 1) if page < pages else None,
        money=forms.money,
        us_date=forms.us_date,
        **ctx,
    )
