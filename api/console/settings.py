"""The account's settings (admins change them, everyone reads them): the task types a person
approves before the agent submits, how long such a task waits for it, and how many days ended
tasks are kept. The same checks as ``PUT /settings``
(:func:`api.account_settings.apply_settings`)."""

from __future__ import annotations

from typing import Any

from flask import redirect, render_template, request, url_for

from api.account_settings import apply_settings, reviewable_types
from api.console import bp, current, record, requires
from api.errors import SopRefused, ValidationFailed, field_errors
from api.runtime import runtime
from shared.accounts import account_settings
from shared.db import whole_number
from shared.retention import MAX_RETENTION_DAYS
from shared.review import MAX_REVIEW_TIMEOUT_HOURS
from shared.users import Role


def _page(status: int = 200, *, shown: dict[str, Any] | None = None, problems=None):
    account = current().user.account_id
    with runtime().pool.connection() as conn:
        stored = account_settings(conn, account)
        reviewable = reviewable_types(conn)
    page = render_template(
        "console/settings.html", settings=shown or stored, reviewable=reviewable,
        max_days=MAX_RETENTION_DAYS, max_hours=MAX_REVIEW_TIMEOUT_HOURS,
        problems=problems or [],
    )  # fmt: skip
    return page, status


@bp.get("/settings")
def settings_page():
    return _page()


@bp.post("/settings")
@requires(Role.ADMIN)
def settings_save():
    body: dict[str, Any] = {
        "review_required_types": request.form.getlist("review_required_types"),
        "review_timeout_hours": _number("review_timeout_hours"),
        "retention_days": _number("retention_days"),
    }
    try:
        with runtime().pool.connection() as conn:
            stored = apply_settings(conn, body)
            record(conn, "settings.save", "settings", stored)
    except (ValidationFailed, SopRefused) as err:  # the same problems, shown on the page
        return _page(422, shown=body, problems=field_errors(err.details))
    return redirect(url_for("console.settings_page", notice="settings_saved"), 303)


def _number(name: str) -> int | str:
    """A number field of the form, as a number when it is one (else as typed, for the 422)."""
    typed = request.form.get(name, "").strip()
    number = whole_number(typed, 6)
    return typed if number is None else number
