"""/sops and /task-types: read, replace, validate and revert the account's SOP for each task
type, and define task types of the account's own by uploading an SOP for a new name.

An account's SOP versions are never changed: a task points at the exact version it ran, so a
new document is always a new version. Past ``MAX_SOP_VERSIONS`` of a type, storing one drops the
oldest that neither is active nor is named by a task (:func:`shared.versions.drop_oldest`).
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Any

from flask import Blueprint, jsonify
from marshmallow import Schema, fields

from api import idempotency
from api.auth import account_id, require_account
from api.bodies import yaml_document
from api.errors import NotFound, ValidationFailed
from api.limits import LimitExceeded, within_quota
from api.rate_limits import parsing
from api.runtime import check_portal_address, runtime
from api.versions import history_json, versions_page
from shared import tasks as task_queries
from shared.db import Conn
from shared.portals import (
    SANDBOX_PORTAL,
    has_credentials,
    pinned_elsewhere,
    portal_address,
    portal_origins,
    portal_problems,
)
from shared.sop import store as sop_store
from shared.sop.errors import SopInvalid, SopLimitExceeded, StoredSopRefused, or_refused
from shared.sop.library import builtin_sop_text
from shared.sop.loader import SopLimits, load_sop
from shared.sop.model import InputSpec, Sop
from shared.sop.task_types import TASK_TYPES
from shared.sop.validate import offsite_urls
from shared.ssrf import UrlRefused
from shared.tasks import iso

bp = Blueprint("sops", __name__)
bp.before_request(require_account)


class SopBodySchema(Schema):
    sop = fields.String(required=True)


def _read_sop_text() -> str:
    """The YAML text, sent as YAML/plain text or as JSON ``{"sop": "<yaml>"}``."""
    return yaml_document("SOP", SopBodySchema(), "sop")


def _sop_limits() -> SopLimits:
    settings = runtime().settings
    return SopLimits(
        nodes=settings.max_sop_nodes, depth=settings.max_sop_depth, steps=settings.max_sop_steps
    )


def _parse(text: str, task_type: str | None = None) -> Sop:
    """The validated SOP, or 422 listing every problem with its line (413 if too big)."""
    limit = runtime().settings.max_sop_bytes
    if len(text.encode("utf-8", "surrogatepass")) > limit:
        raise LimitExceeded(
            413, "MAX_SOP_BYTES", limit, f"An SOP must be at most {limit} bytes (MAX_SOP_BYTES)."
        )
    try:
        with parsing():
            sop = load_sop(text, _sop_limits())
    except SopLimitExceeded as err:
        message = f"The SOP is too big: {err.errors[0]['message']}."
        raise LimitExceeded(422, err.limit, err.max, message, errors=err.errors) from err
    except SopInvalid as err:
        raise ValidationFailed("The SOP is not valid.", err.errors) from err
    problem = _type_problem(sop.task_type)
    if task_type and sop.task_type != task_type:
        problem = f"must be {task_type}, not {sop.task_type!r}"
    if problem:
        raise ValidationFailed(
            "The SOP is not valid.",
            [{"line": _line_of_key(text, "task_type"), "path": "task_type", "message": problem}],
        )
    return sop


def _type_problem(task_type: str) -> str | None:
    """Why this name cannot be a task type, or None: a built-in one, or a new snake_case name."""
    if task_type in TASK_TYPES:
        return None
    return sop_store.custom_type_problem(task_type)


def _line_of_key(text: str, key: str) -> int | None:
    match = re.search(rf"^{re.escape(key)}\s*:", text, re.M)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _known_type(conn: Conn, task_type: str) -> str:
    """A type the account can use: a built-in one or one of its own; 404 otherwise."""
    if task_type not in TASK_TYPES and not sop_store.is_custom_type(conn, account_id(), task_type):
        raise NotFound("task type")  # is_custom_type is False for any name that cannot be one
    return task_type


def _refuse_offsite_urls(conn: Conn, sop: Sop) -> None:
    """422 for a ``portal.base_url`` that would move the portal (:func:`pinned_elsewhere`) or
    that the agent may not browse (a private address the operator does not allow, as
    ``PUT /portals`` refuses it), and for each literal URL a goto opens outside the portal's
    origins (templates are checked when they run; so is everything when the portal's address
    is not known yet)."""
    moved = sop.base_url and (
        pinned_elsewhere(conn, account_id(), sop.portal, sop.base_url) or _unbrowsable(sop.base_url)
    )
    if moved:
        line = next((n for n, text in enumerate(sop.source.splitlines(), start=1)
                     if re.match(r"\s*base_url\s*:", text)), None)  # fmt: skip
        raise ValidationFailed(
            "The SOP is not valid.",
            [{"field": "portal.base_url", "line": line, "path": "portal.base_url",
              "message": moved}],
        )  # fmt: skip
    origins = portal_origins(
        conn,
        account_id(),
        sop.portal,
        sandbox_url=runtime().settings.sandbox_url,
        sop_base_url=sop.base_url,
    )
    errors = offsite_urls(sop, origins) if origins else []
    if errors:
        raise ValidationFailed("The SOP is not valid.", errors)


def _unbrowsable(url: str) -> str | None:
    """Why the agent may not browse ``url`` (None if it may)."""
    try:
        check_portal_address(url)
    except UrlRefused as err:
        return f"base_url is refused: {err}"
    return None


def _warnings(conn: Conn, sop: Sop) -> list[str]:
    """What would stop this SOP at run time although the document itself is valid: a name its
    templates read that nothing gives (each with its line), and what its portal lacks."""
    names = [
        ("line {line} ({path}): {message}." if w["line"] else "({path}): {message}.").format(**w)
        for w in sop.warnings
    ]
    if sop.portal == SANDBOX_PORTAL:
        return names
    address = portal_address(
        conn,
        account_id(),
        sop.portal,
        sandbox_url=runtime().settings.sandbox_url,
        sop_base_url=sop.base_url,
    )
    problems = portal_problems(
        sop.portal, address=address, has_credentials=has_credentials(conn, account_id(), sop.portal)
    )
    return names + [f"{problem}." for problem in problems]


# A stored version as the API reads it: parsed, or refused by this release's rules (its text
# and problems are still shown; it cannot run until a new version replaces it).
Read = sop_store.StoredSop | StoredSopRefused


def _entry(stored: Read, created_at: datetime, *, body: bool = False) -> dict[str, Any]:
    """A version's entry; ``problems`` lists what this release refuses in it (none: it runs)."""
    if isinstance(stored, StoredSopRefused):
        text = stored.text
        out: dict[str, Any] = {"task_type": stored.task_type, "portal": None, "title": None,
                               "summary": None, "problems": stored.errors}  # fmt: skip
    else:
        sop = stored.sop
        text = sop.source
        out = {"task_type": sop.task_type, "portal": sop.portal, "title": sop.title,
               "summary": stored.instructions, "problems": []}  # fmt: skip
    out.update(version=stored.version, builtin=stored.builtin, created_at=iso(created_at))
    if body:
        out["body"] = text
    return out


def _active(conn: Conn, task_type: str) -> dict[str, Any]:
    stored = or_refused(StoredSopRefused, sop_store.active_sop, conn, account_id(), task_type)
    out = _entry(stored, sop_store.sop_created_at(conn, stored.id), body=True)
    return out | history_json(sop_store.sop_versions(conn, account_id(), task_type))


@bp.get("/sops")
def list_sops():
    """Every type's active SOP, built-in then the account's own: two queries, whatever the
    number of types."""
    with runtime().pool.connection() as conn:
        active = list(sop_store.active_sops(conn, account_id()).values())
        created = sop_store.sops_created_at(conn, [stored.id for stored in active])
    return jsonify({"data": [_entry(stored, created[stored.id]) for stored in active]})


@bp.get("/sops/<task_type>")
def read_sop(task_type: str):
    with runtime().pool.connection() as conn:
        return jsonify(_active(conn, _known_type(conn, task_type)))


@bp.get("/sops/<task_type>/versions/<int:version>")
def read_sop_version(task_type: str, version: int):
    """One of the account's stored versions of a type's SOP, with its text. A removed type's
    versions stay readable: its tasks name them."""
    with runtime().pool.connection() as conn:
        stored = None
        if task_type in TASK_TYPES or not sop_store.custom_type_problem(task_type):
            stored = or_refused(
                StoredSopRefused, sop_store.sop_version, conn, account_id(), task_type, version
            )
        if stored is None:
            raise NotFound("SOP version")
        return jsonify(_entry(stored, sop_store.sop_created_at(conn, stored.id), body=True))


@bp.get("/sops/<task_type>/versions")
def list_sop_versions(task_type: str):
    """The account's versions of a type's SOP, newest first, a page at a time. A removed
    type's are listed too, as each stays readable."""
    with runtime().pool.connection() as conn:
        known = task_type in TASK_TYPES or sop_store.is_custom_type(
            conn, account_id(), task_type, removed=True
        )
        if not known:
            raise NotFound("task type")
        return jsonify(versions_page(functools.partial(_versions, conn, task_type)))


def _versions(conn: Conn, task_type: str, before: int | None, limit: int) -> list[dict]:
    return sop_store.sop_versions(conn, account_id(), task_type, before=before, limit=limit)


@bp.get("/tasks/<int:task_id>/sop")
def read_task_sop(task_id: int):
    """The SOP version a task runs, or ran, with its text: the account's or the built-in one,
    as it was when the task was created (a later edit makes a new version)."""
    with runtime().pool.connection() as conn:
        task = task_queries.get_task(conn, task_id, account_id())
        if task is None:
            raise NotFound("task")
        stored = or_refused(StoredSopRefused, sop_store.sop_by_id, conn, task["sop_id"])
        return jsonify(_entry(stored, sop_store.sop_created_at(conn, stored.id), body=True))


@bp.put("/sops/<task_type>")
def put_sop(task_type: str):
    """A new version: 201. The same text as the active version: 200 and nothing stored.

    A new snake_case name defines a task type of the account's own (or defines again one it
    removed, its history continuing).
    """
    out, created = store_sop(task_type, _read_sop_text())
    return jsonify(out), 201 if created else 200


def store_sop(task_type: str, text: str) -> tuple[dict[str, Any], bool]:
    """Validate ``text`` and store it as the account's next version of ``task_type``'s SOP.

    The active SOP (with ``warnings``) and whether a version was created; a 422 (or 413)
    naming every problem and its line otherwise. ``PUT /sops/{type}`` and the console's
    editor both save through here.
    """
    problem = _type_problem(task_type)
    if problem:
        raise ValidationFailed("The task type's name is not valid.", {"task_type": problem})
    sop = _parse(text, task_type)
    with runtime().pool.connection() as conn:
        _refuse_offsite_urls(conn, sop)
        if task_type not in TASK_TYPES:
            with within_quota():
                sop_store.add_custom_type(
                    conn, account_id(), task_type, runtime().settings.max_custom_types
                )
        with within_quota():
            _version, created = sop_store.put_sop_version(
                conn,
                account_id(),
                task_type,
                text,
                max_versions=runtime().settings.max_sop_versions,
            )
        out = _active(conn, task_type)
        out["warnings"] = _warnings(conn, sop)
    return out, created


@bp.delete("/sops/<task_type>")
def revert_sop(task_type: str):
    """Go back to the built-in SOP by storing its current text as the account's next version.

    Versions never change (tasks point at their version), so a revert is a new version too.
    An account that never overrode the SOP is already on the built-in one: nothing changes.
    A custom type is removed from the account's types: no new task can use it, while its
    versions stay for the tasks that ran them.
    """

    def revert(conn: Conn) -> idempotency.Carried:
        _known_type(conn, task_type)
        if task_type not in TASK_TYPES:
            sop_store.remove_custom_type(conn, account_id(), task_type)
            return {"task_type": task_type, "removed": True}, 200
        if sop_store.has_sop_versions(conn, account_id(), task_type):
            with within_quota():
                sop_store.put_sop_version(
                    conn, account_id(), task_type, builtin_sop_text(task_type),
                    max_versions=runtime().settings.max_sop_versions,
                )  # fmt: skip
        return _active(conn, task_type), 200

    return idempotency.respond_once(revert)


@bp.post("/sops/validate")
def validate_sop():
    """Check a document without storing it: the summary it would give, or every error."""
    sop = _parse(_read_sop_text())
    with runtime().pool.connection() as conn:
        _refuse_offsite_urls(conn, sop)
        warnings = _warnings(conn, sop)
    return jsonify(
        {
            "valid": True,
            "task_type": sop.task_type,
            "title": sop.title,
            "summary": sop.summary(),
            "warnings": warnings,
        }
    )


def _input_entry(spec: InputSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "required": spec.required,
        "format": spec.format,
        "sensitive": spec.sensitive,
        "aliases": list(spec.aliases),
        "description": spec.description,
    }


def _type_entry(stored: Read) -> dict[str, Any]:
    """What a task of the type takes; nothing, with the problems, for a refused version."""
    if isinstance(stored, StoredSopRefused):
        return {"title": None, "portal": None, "inputs": [], "require_one_of": [],
                "problems": stored.errors}  # fmt: skip
    sop = stored.sop
    return {
        "title": sop.title,
        "portal": sop.portal,
        "inputs": [_input_entry(spec) for spec in sop.inputs],
        "require_one_of": [list(group) for group in sop.require_one_of],
        "problems": [],
    }


@bp.get("/task-types")
def list_task_types():
    """The task types the account can use, built-in then its own, with the inputs each takes."""
    with runtime().pool.connection() as conn:
        active = sop_store.active_sops(conn, account_id())
    entries = [
        {"name": task_type, "builtin": task_type in TASK_TYPES, **_type_entry(stored)}
        for task_type, stored in active.items()
    ]
    return jsonify({"data": entries})
