"""Users of the account (admins only): the list, invites, and disabling someone."""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, render_template, request, url_for

from api.console import (
    audit_entry,
    bp,
    current,
    new_submission,
    record,
    record_if_replayed,
    requires,
    sent_submission,
)
from api.errors import ApiError
from api.idempotency import Carried, answer_once
from api.runtime import runtime
from shared import audit, users
from shared.db import Conn
from shared.users import Role, UserError


def _page(status: int = 200, **shown: Any):
    """The users, and the invite form with a fresh one-time token."""
    with runtime().pool.connection() as conn:
        rows = users.list_users(conn, current().user.account_id)
    page = render_template(
        "console/users.html", users=rows, roles=[r.value for r in Role],
        submission=new_submission(), **shown,
    )  # fmt: skip
    return page, status


@bp.get("/users")
@requires(Role.ADMIN)
def users_page():
    return _page()


@bp.post("/users/invite")
@requires(Role.ADMIN)
def users_invite():
    """Invite a person; the one-time link is shown on this page only. The form is carried out
    once under its one-time token: sent again (a reload), it shows the same link, where a new
    invite would end the link just shown, which may be in someone's inbox already."""
    email, role = request.form.get("email", ""), request.form.get("role", "")

    def invite(conn: Conn) -> Carried:
        token = users.invite_user(
            conn, account_id=current().user.account_id, email=email, role=role,
            ttl_s=runtime().settings.console_invite_ttl_s, limit=runtime().settings.max_users,
        )  # fmt: skip
        audit.record(conn, **entry)
        return {"link": url_for("console.invite", token=token, _external=True)}, 200

    try:
        entry = audit_entry("user.invite", f"email:{users.normalize_email(email)}", {"role": role})
        with runtime().pool.connection() as conn:
            answer = answer_once(conn, invite, key=f"console-invite-{sent_submission()}")
    except UserError as err:
        return _page(422, error=str(err))
    except ApiError as err:  # the same form, sent again with another email or role
        return _page(err.status, error="This form was already sent with another person or role:"
                     " the invite it made stands. Use this new form to invite again.")  # fmt: skip
    record_if_replayed(entry)
    assert answer.body is not None
    return _page(invite_link=answer.body["link"], invited=email)


@bp.post("/users/<int:user_id>/disable")
@requires(Role.ADMIN)
def users_disable(user_id: int):
    if user_id == current().user.id:
        abort(409, "You cannot disable yourself.")
    with runtime().pool.connection() as conn:
        try:
            disabled = users.disable_user(conn, current().user.account_id, user_id)
        except UserError as err:
            abort(409, str(err))
        if not disabled:
            abort(404, "No such user.")
        record(conn, "user.disable", f"user:{user_id}")
    return redirect(url_for("console.users_page"), 303)
