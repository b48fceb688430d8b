"""SOPs and portals: each type's active SOP and history, the text of any version and of the SOP
a task ran with, a diff between versions, an editor that validates as ``PUT /sops/{type}`` does
(every problem with its line), and the portals with their profiles' history, diffs and editor
(validated and stored as ``PUT /portals/{name}/profile``)."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import abort, redirect, render_template, request, url_for
from marshmallow import ValidationError

from api.console import bp, current, record, requires
from api.credentials import PORTAL_NAME, PORTAL_NAME_RULE, PortalSchema
from api.errors import ApiError, field_errors
from api.limits import within_quota
from api.profiles import store_profile
from api.runtime import runtime
from api.sops import store_sop
from shared import portals as portal_queries
from shared import tasks as task_queries
from shared.db import Conn, whole_number
from shared.portals import SANDBOX_PORTAL
from shared.sop import store as sop_store
from shared.sop.errors import (
    StoredProfileRefused,
    StoredSopRefused,
    StoredVersionRefused,
    or_refused,
)
from shared.sop.library import builtin_sop_text
from shared.sop.profile import BUILTIN_PORTALS, builtin_profile_text
from shared.sop.task_types import TASK_TYPES
from shared.users import Role
from shared.versions import HISTORY_SHOWN

BUILTIN = "builtin"


def _types(conn: Conn) -> list[str]:
    return [*TASK_TYPES, *sop_store.custom_types(conn, current().user.account_id)]


def _known(conn: Conn, task_type: str) -> str:
    if task_type not in _types(conn):
        abort(404, "No such task type.")
    return task_type


@dataclass(frozen=True)
class Shown:
    """A stored version as a page shows it: also one that this release's rules refuse, whose
    text is shown with its ``problems`` (no task can use it until a new version is stored)."""

    version: int | None
    builtin: bool
    title: str | None
    portal: str | None
    source: str
    problems: list[dict[str, Any]]
    # What would most likely go wrong though the version is valid (an SOP's unknown names).
    warnings: tuple[dict[str, Any], ...] = ()


def _sop_shown(read: Callable[..., sop_store.StoredSop | None], *args: Any) -> Shown:
    """The SOP version ``read(*args)`` gives, as a page shows it (404 if there is none)."""
    stored = or_refused(StoredSopRefused, read, *args)
    if stored is None:
        abort(404, "No such SOP version.")
    return _shown(stored)


def _shown(stored: sop_store.StoredSop | StoredVersionRefused) -> Shown:
    """A stored SOP version, or this release's refusal of it, as a page shows it."""
    if isinstance(stored, StoredSopRefused):
        return Shown(stored.version, stored.builtin, None, None, stored.text, stored.errors)
    assert isinstance(stored, sop_store.StoredSop)
    sop = stored.sop
    return Shown(
        stored.version, stored.builtin, sop.title, sop.portal, sop.source, [], sop.warnings
    )


def _profile_shown(conn: Conn, account: int, name: str) -> Shown | None:
    """The portal's active profile as a page shows it, or None (no profile)."""
    try:
        stored = portal_queries.active_profile(conn, account, name)
    except StoredProfileRefused as refused:
        return Shown(refused.version, False, None, name, refused.text, refused.errors)
    if stored is None:
        return None
    profile = stored.profile
    return Shown(stored.version, stored.builtin, profile.title, name, profile.source, [])


@bp.get("/sops")
def sops():
    account = current().user.account_id
    with runtime().pool.connection() as conn:
        active = sop_store.active_sops(conn, account)  # one query, whatever the number of types
    entries = []
    for task_type, read in active.items():
        stored = _shown(read)
        entries.append({"task_type": task_type, "version": stored.version,
                        "builtin": stored.builtin, "title": stored.title,
                        "portal": stored.portal, "problems": stored.problems})  # fmt: skip
    return render_template("console/sops.html", sops=entries)


@bp.get("/sops/<task_type>")
def sop(task_type: str):
    account = current().user.account_id
    with runtime().pool.connection() as conn:
        _known(conn, task_type)
        stored = _sop_shown(sop_store.active_sop, conn, account, task_type)
        rows = sop_store.sop_versions(conn, account, task_type, before=_before())
    return render_template(
        "console/sop.html", task_type=task_type, stored=stored, **_history(rows),
        has_builtin=task_type in TASK_TYPES,
        version_url=functools.partial(_version_url, task_type),
    )  # fmt: skip


def _before() -> int | None:
    """The ``?before=<version>`` of a history page: its versions are older than that one."""
    raw = request.args.get("before")
    if raw is None:
        return None
    before = whole_number(raw, 9)
    if before is None:
        abort(400, "before must be a version number.")
    return before


def _history(rows: list[dict]) -> dict[str, Any]:
    """The newest HISTORY_SHOWN of ``rows`` (read one more), and the ``?before=`` of the page
    of older ones when there are more: an account keeps up to MAX_SOP_VERSIONS, which may be
    set above it."""
    history = rows[:HISTORY_SHOWN]
    older = history[-1]["version"] if len(rows) > HISTORY_SHOWN else None
    return {"history": history, "older_than": older}


def _version_url(task_type: str, version: int | str) -> str:
    return url_for("console.sop_version", task_type=task_type, version=version)


def _version_ref(stored: Shown) -> str:
    """How a version page and the diff name a stored SOP: its version, or ``builtin``."""
    return BUILTIN if stored.builtin else str(stored.version)


@bp.get("/sops/<task_type>/versions/<version>")
def sop_version(task_type: str, version: str):
    """One version's text (a number, or ``builtin``), and a diff of it against the active one."""
    with runtime().pool.connection() as conn:
        _known(conn, task_type)
        text = _text_of(conn, task_type, version)
        account = current().user.account_id
        active = _version_ref(_sop_shown(sop_store.active_sop, conn, account, task_type))
        number = whole_number(version, 9)
        problems = []
        if number is not None:  # the built-in SOP of this release has none
            problems = _sop_shown(sop_store.sop_version, conn, account, task_type, number).problems
    return _sop_text_page(task_type, version, text, active, problems=problems)


def _sop_text_page(
    task_type: str, version: str, text: str, active: str | None, *, ran_by: int | None = None,
    back: str | None = None, problems: list[dict[str, Any]] | None = None,
) -> str:  # fmt: skip
    """The page of one SOP text (``version``: a number, or ``builtin``); with ``active`` (when
    it differs), a link to the diff between them; with ``ran_by``, as that task ran it; with
    ``problems``, what this release refuses in it."""
    label = "the built-in SOP" if version == BUILTIN else f"version {version}"
    if ran_by is not None:
        label += f", as task {ran_by} ran it"
    compare = None
    if active is not None and version != active:
        between: dict[str, Any] = {"from": version, "to": active}  # "from": a keyword
        compare = url_for("console.sop_diff", task_type=task_type, **between)
    return render_template(
        "console/sop_version.html", task_type=task_type, label=label, text=text,
        compare=compare, problems=problems or [],
        back=back or url_for("console.sop", task_type=task_type),
    )  # fmt: skip


def _version_text(
    version: str, builtin: Callable[[], str] | None, stored: Callable[[int], str | None], what: str
) -> str:
    """The text of one version of a document (an SOP, a profile), or its built-in text."""
    if version == BUILTIN and builtin is not None:
        return builtin()
    number = whole_number(version, 9)
    if number is None:
        abort(400, "A version is a number or 'builtin'.")
    text = stored(number)
    if text is None:
        abort(404, f"No version {version} of {what}.")
    return text


def _text_of(conn: Conn, task_type: str, version: str) -> str:
    account = current().user.account_id
    return _version_text(
        version,
        functools.partial(builtin_sop_text, task_type) if task_type in TASK_TYPES else None,
        functools.partial(sop_store.sop_version_body, conn, account, task_type),
        task_type,
    )


@bp.get("/tasks/<int:task_id>/sop")
def task_sop(task_id: int):
    """The SOP a task ran with, as it was when the task was created (an edit since is a new
    version), and a diff of it against the type's active version."""
    account = current().user.account_id
    with runtime().pool.connection() as conn:
        row = task_queries.get_task(conn, task_id, account)
        if row is None:
            abort(404, "No such task.")
        ran = _sop_shown(sop_store.sop_by_id, conn, row["sop_id"])
        active = None
        if not ran.builtin and row["type"] in _types(conn):
            active = _version_ref(_sop_shown(sop_store.active_sop, conn, account, row["type"]))
    return _sop_text_page(
        row["type"], _version_ref(ran), ran.source, active, ran_by=task_id,
        back=url_for("console.task", task_id=task_id), problems=ran.problems,
    )  # fmt: skip


@bp.get("/sops/<task_type>/diff")
def sop_diff(task_type: str):
    """A unified diff between two versions (or the built-in SOP), rendered here."""
    old, new = request.args.get("from", ""), request.args.get("to", "")
    with runtime().pool.connection() as conn:
        _known(conn, task_type)
        before, after = _text_of(conn, task_type, old), _text_of(conn, task_type, new)
    return render_template(
        "console/sop_diff.html", task_type=task_type, old=old, new=new,
        lines=_diff_lines(before, after, f"{task_type} {old}", f"{task_type} {new}"),
    )  # fmt: skip


def _diff_lines(before: str, after: str, old: str, new: str) -> list[tuple[str, str]]:
    """A unified diff of two documents (SOPs, portal profiles), each line with its kind."""
    lines = difflib.unified_diff(
        before.splitlines(), after.splitlines(), fromfile=old, tofile=new, lineterm=""
    )
    return [(_line_kind(line), line) for line in lines]


def _line_kind(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "file"
    return {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "same")


def _editor(
    task_type: str,
    text: str,
    errors: list[dict[str, Any]],
    status: int = 200,
    *,
    opened_at: str | None = None,
):
    """The editor of ``task_type``'s SOP: "New task type" until the account has the type. Its
    form carries ``opened_at``, the version the text was opened on (by default the active
    one): a save checks that it is still the active one (:func:`_changed_since`)."""
    with runtime().pool.connection() as conn:
        is_new = task_type not in _types(conn)
        opened_at = _active_ref(conn, task_type) if opened_at is None else opened_at
    page = render_template(
        "console/sop_edit.html", task_type=task_type, text=text, errors=errors,
        excerpt=_excerpt(text, {e["line"] for e in errors if e.get("line")}), is_new=is_new,
        opened_at=opened_at,
    )  # fmt: skip
    return page, status


def _active_ref(conn: Conn, task_type: str) -> str:
    """The active version of the account's ``task_type`` as the editor names it: its number,
    ``builtin``, or "" for a type the account does not have."""
    if task_type not in _types(conn):
        return ""
    account = current().user.account_id
    return _version_ref(_sop_shown(sop_store.active_sop, conn, account, task_type))


def _changed_since(now: str, opened_at: str | None, kind: str) -> str | None:
    """Why a save of the text opened on ``opened_at`` would replace a version it never saw
    (another admin saved, or reverted, meanwhile; ``now`` is the active one); None if nothing
    changed since, or if the form does not say what it opened on."""
    if opened_at is None or now == opened_at:
        return None
    active = {"": f"no {kind} is active", BUILTIN: f"the built-in {kind} is active"}.get(
        now, f"version {now} is active"
    )
    return (
        f"This {kind} changed since you opened it: {active} now. Your text is kept below;"
        " compare it with the active version, then save again to replace it."
    )


def _errors(err: ApiError) -> list[dict[str, Any]]:
    """What an editor lists for a refused save: each field's error, or the refusal's message."""
    errors = field_errors(err.details) if isinstance(err.details, list) else []
    return errors or [_page_error(err.message)]


def _page_error(message: str) -> dict[str, Any]:
    """An error of the whole document, at no line."""
    return {"line": None, "path": None, "message": message}


def _excerpt(text: str, bad: set[int], context: int = 3) -> list[tuple[int, str, bool] | None]:
    """The numbered lines around each bad line (None marks a gap), for the error listing."""
    lines = text.splitlines()
    shown = sorted({n for b in bad for n in range(b - context, b + context + 1)
                    if 1 <= n <= len(lines)})  # fmt: skip
    out: list[tuple[int, str, bool] | None] = []
    for n in shown:
        if out and out[-1] is not None and out[-1][0] != n - 1:
            out.append(None)
        out.append((n, lines[n - 1], n in bad))
    return out


@bp.get("/sops/<task_type>/edit")
@requires(Role.ADMIN)
def sop_edit(task_type: str):
    with runtime().pool.connection() as conn:
        _known(conn, task_type)
        account = current().user.account_id
        stored = _sop_shown(sop_store.active_sop, conn, account, task_type)
    # A version this release refuses opens with its problems, as a save of it would show them.
    return _editor(task_type, stored.source, stored.problems)


@bp.get("/sops/new")
@requires(Role.ADMIN)
def sop_new():
    """A custom task type: start from the eligibility check's SOP under a new name."""
    name = request.args.get("name", "").strip()
    if not name:
        return render_template("console/sop_new.html")
    problem = sop_store.custom_type_problem(name) if name not in TASK_TYPES else None
    if problem:
        return render_template("console/sop_new.html", error=f"{name!r} {problem}", name=name)
    with runtime().pool.connection() as conn:
        exists = name in _types(conn)
    if exists:  # a new type's template saved over it would replace the type's own SOP
        return render_template(
            "console/sop_new.html", name=name, existing=name,
            error=f"{name!r} is already one of your task types: edit its SOP instead.",
        ), 409  # fmt: skip
    template = builtin_sop_text("check_eligibility").replace(
        "task_type: check_eligibility", f"task_type: {name}", 1
    )
    return _editor(name, template, [])


@bp.post("/sops/<task_type>/edit")
@requires(Role.ADMIN)
def sop_save(task_type: str):
    """Validate and store a new version, through the same function as ``PUT /sops/{type}``."""
    text = request.form.get("sop", "").replace("\r\n", "\n")
    opened_at = request.form.get("opened_at")
    with runtime().pool.connection() as conn:
        changed = _changed_since(_active_ref(conn, task_type), opened_at, "SOP")
    if changed:  # the form opened on it now: a second save replaces it knowingly
        return _editor(task_type, text, [_page_error(changed)], 409)
    try:
        out, created = store_sop(task_type, text)
    except ApiError as err:
        return _editor(task_type, text, _errors(err), err.status, opened_at=opened_at)
    if created:  # the version this save stored (read after it, another admin's could be newer)
        with runtime().pool.connection() as conn:
            record(conn, "sop.save", f"sop:{task_type}", {"version": out["version"]})
    notice = "saved" if created else "unchanged"
    return redirect(url_for("console.sop", task_type=task_type, notice=notice), 303)


# --- portals ------------------------------------------------------------------------------------


@bp.get("/portals")
def portals():
    with runtime().pool.connection() as conn:
        rows = portal_queries.list_portals(conn, current().user.account_id)
    return render_template(
        "console/portals.html", portals=rows, sandbox_url=runtime().settings.sandbox_url
    )


@bp.route("/portals/edit", methods=["GET", "POST"])
@requires(Role.ADMIN)
def portal_edit():
    """Register a portal or change one: validated as ``PUT /portals/{name}`` is."""
    account = current().user.account_id
    form = {"name": request.values.get("name", "").strip(), "base_url": "", "allowed_origins": ""}
    errors: list[str] = []
    if request.method == "GET" and form["name"]:
        with runtime().pool.connection() as conn:
            for row in portal_queries.list_portals(conn, account):
                if row["name"] == form["name"]:
                    form["base_url"] = row["base_url"]
                    form["allowed_origins"] = "\n".join(row["allowed_origins"] or [])
    if request.method == "POST":
        form["base_url"] = request.form.get("base_url", "").strip()
        form["allowed_origins"] = request.form.get("allowed_origins", "")
        origins = [o.strip() for o in form["allowed_origins"].splitlines() if o.strip()]
        if not PORTAL_NAME.match(form["name"]):
            errors.append(f"name: {PORTAL_NAME_RULE}")
        elif form["name"] == SANDBOX_PORTAL:
            errors.append("name: 'sandbox' is built in; its address is set by the operator.")
        try:
            body = PortalSchema().load({"base_url": form["base_url"], "allowed_origins": origins})
        except ValidationError as err:
            errors += [f"{e['field']}: {e['message']}" for e in field_errors(err.messages)]
        if not errors:
            try:
                with runtime().pool.connection() as conn, within_quota():
                    limit = runtime().settings.max_portals
                    portal_queries.make_room(conn, account, form["name"], limit)
                    portal_queries.put_portal(
                        conn, account, form["name"], body["base_url"], body["allowed_origins"]
                    )
                    record(conn, "portal.save", f"portal:{form['name']}", body)
            except ApiError as err:
                errors.append(err.message)
            else:
                return redirect(url_for("console.portals", notice="portal_saved"), 303)
    page = render_template("console/portal_edit.html", form=form, errors=errors)
    return page, 422 if errors else 200


def _known_portal(conn: Conn, name: str) -> str:
    account = current().user.account_id
    registered = {row["name"] for row in portal_queries.list_portals(conn, account)}
    if not (name in BUILTIN_PORTALS or name in registered
            or name in portal_queries.profiled_portals(conn, account)):  # fmt: skip
        abort(404, "No such portal.")
    return name


def _profile_text_of(conn: Conn, name: str, version: str) -> str:
    account = current().user.account_id
    return _version_text(
        version,
        functools.partial(builtin_profile_text, name) if name in BUILTIN_PORTALS else None,
        functools.partial(portal_queries.profile_version_body, conn, account, name),
        f"{name}'s profile",
    )


@bp.get("/portals/<name>/profile")
def portal_profile(name: str):
    account = current().user.account_id
    with runtime().pool.connection() as conn:
        _known_portal(conn, name)
        stored = _profile_shown(conn, account, name)
        rows = portal_queries.profile_versions(conn, account, name, before=_before())
    return render_template(
        "console/portal_profile.html", name=name, stored=stored, **_history(rows),
        has_builtin=name in BUILTIN_PORTALS,
    )  # fmt: skip


@bp.get("/portals/<name>/profile/diff")
def portal_profile_diff(name: str):
    old, new = request.args.get("from", ""), request.args.get("to", "")
    with runtime().pool.connection() as conn:
        _known_portal(conn, name)
        before, after = _profile_text_of(conn, name, old), _profile_text_of(conn, name, new)
    return render_template(
        "console/sop_diff.html", task_type=f"{name} profile", old=old, new=new,
        back=url_for("console.portal_profile", name=name),
        lines=_diff_lines(before, after, f"{name} {old}", f"{name} {new}"),
    )  # fmt: skip


def _profile_editor(
    name: str,
    text: str,
    errors: list[dict[str, Any]],
    status: int = 200,
    *,
    opened_at: str | None = None,
):
    """The editor of portal ``name``'s profile; its form carries the version it opened on, as
    the SOP editor's does (:func:`_editor`)."""
    if opened_at is None:
        with runtime().pool.connection() as conn:
            opened_at = _profile_ref(conn, name)
    page = render_template(
        "console/portal_profile_edit.html", name=name, text=text, errors=errors,
        excerpt=_excerpt(text, {e["line"] for e in errors if e.get("line")}),
        opened_at=opened_at,
    )  # fmt: skip
    return page, status


def _profile_ref(conn: Conn, name: str) -> str:
    """The portal's active profile as the editor names it: its version, ``builtin``, or ""
    (none)."""
    stored = _profile_shown(conn, current().user.account_id, name)
    return "" if stored is None else _version_ref(stored)


@bp.get("/portals/<name>/profile/edit")
@requires(Role.ADMIN)
def portal_profile_edit(name: str):
    with runtime().pool.connection() as conn:
        _known_portal(conn, name)
        stored = _profile_shown(conn, current().user.account_id, name)
    if stored is None:
        return _profile_editor(name, f"portal: {name}\n", [])
    return _profile_editor(name, stored.source, stored.problems)


@bp.post("/portals/<name>/profile/edit")
@requires(Role.ADMIN)
def portal_profile_save(name: str):
    """Validate and store a new version, through the same function as the API's PUT."""
    text = request.form.get("profile", "").replace("\r\n", "\n")
    opened_at = request.form.get("opened_at")
    with runtime().pool.connection() as conn:
        _known_portal(conn, name)
        changed = _changed_since(_profile_ref(conn, name), opened_at, "profile")
    if changed:  # the form opened on it now: a second save replaces it knowingly
        return _profile_editor(name, text, [_page_error(changed)], 409)
    try:
        out, created = store_profile(name, text)
    except ApiError as err:
        return _profile_editor(name, text, _errors(err), err.status, opened_at=opened_at)
    if created:
        with runtime().pool.connection() as conn:
            record(conn, "portal.profile.save", f"portal:{name}", {"version": out["version"]})
    notice = "saved" if created else "unchanged"
    return redirect(url_for("console.portal_profile", name=name, notice=notice), 303)
