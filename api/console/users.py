"""Users of the account (admins only): the list, invites, and disabling someone."""

from __future__ import annotations

from flask import abort, redirect, render_template, request, url_for

from api.console import bp, current, record, requires
from api.runtime import runtime
from shared import users
from shared.users import Role, UserError


@bp.get("/users")
@requires(Role.ADMIN)
def users_page():
    with runtime().pool.connection() as conn:
        rows = users.list_users(conn, current().user.account_id)
    return render_template("console/users.html", users=rows, roles=[r.value for r in Role])


@bp.post("/users/invite")
@requires(Role.ADMIN)
def users_invite():
    """Invite a person; the one-time link is shown on this page only."""
    email, role = request.form.get("email", ""), request.form.get("role", "")
    try:
        with runtime().pool.connection() as conn:
            token = users.invite_user(
                conn, account_id=current().user.account_id, email=email, role=role,
                ttl_s=runtime().settings.console_invite_ttl_s, limit=runtime().settings.max_users,
            )  # fmt: skip
            record(conn, "user.invite", f"email:{users.normalize_email(email)}", {"role": role})
            rows = users.list_users(conn, current().user.account_id)
    except UserError as err:
        with runtime().pool.connection() as conn:
            rows = users.list_users(conn, current().user.account_id)
        page = render_template(
            "console/users.html", users=rows, roles=[r.value for r in Role], error=str(err)
        )
        return page, 422
    link = url_for("console.invite", token=token, _external=True)
    return render_template(
        "console/users.html", users=rows, roles=[r.value for r in Role], invite_link=link,
        invited=email,
    )  # fmt: skip


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
