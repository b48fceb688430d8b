"""/portals/{name}/profile: read, store and validate a portal's profile (docs/portals.md).

Versions are never changed, like SOP versions: the newest is active and the next task on the
portal uses it; past ``MAX_SOP_VERSIONS``, storing one drops the oldest that no task names.
Storing a profile with a ``base_url`` also sets the portal's address (the registration that
``PUT /portals/{name}`` writes), which the agent's egress boundary reads.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from flask import Blueprint, jsonify
from marshmallow import Schema, fields

from api import idempotency
from api.auth import account_id, require_account
from api.bodies import yaml_document
from api.credentials import portal_name
from api.errors import ApiError, NotFound, ValidationFailed
from api.limits import LimitExceeded, within_quota
from api.rate_limits import parsing
from api.runtime import check_portal_address, runtime
from api.versions import history_json, versions_page
from shared import outages
from shared import portals as portal_queries
from shared import tasks as task_queries
from shared.db import Conn
from shared.portals import StoredProfile
from shared.sop.errors import (
    SopInvalid,
    SopLimitExceeded,
    StoredProfileRefused,
    or_refused,
)
from shared.sop.loader import SopLimits
from shared.sop.profile import (
    BUILTIN_PORTALS,
    Profile,
    builtin_profile,
    builtin_profile_text,
    load_profile,
)
from shared.sop.validate import offsite_urls
from shared.ssrf import UrlRefused, url_origin
from shared.tasks import iso

bp = Blueprint("profiles", __name__)
bp.before_request(require_account)


class ProfileBodySchema(Schema):
    profile = fields.String(required=True)


def _line_of_key(text: str, key: str) -> int | None:
    match = re.search(rf"^{re.escape(key)}\s*:", text, re.M)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _invalid(text: str, problems: list[tuple[str, str]]) -> ValidationFailed:
    """A 422 for problems found outside the document's own rules, each on its key's line."""
    return ValidationFailed(
        "The portal profile is not valid.",
        [
            {"line": _line_of_key(text, path.split("[")[0].split(".")[0]), "path": path,
             "message": message}
            for path, message in problems
        ],
    )  # fmt: skip


def _parse(text: str) -> Profile:
    """The validated profile, or 422 listing every problem with its line."""
    settings = runtime().settings
    limit = settings.max_sop_bytes
    if len(text.encode("utf-8", "surrogatepass")) > limit:
        message = f"A portal profile must be at most {limit} bytes (MAX_SOP_BYTES)."
        raise LimitExceeded(413, "MAX_SOP_BYTES", limit, message)
    limits = SopLimits(
        nodes=settings.max_sop_nodes, depth=settings.max_sop_depth, steps=settings.max_sop_steps
    )
    try:
        with parsing():
            profile = load_profile(text, limits)
    except SopLimitExceeded as err:
        message = f"The portal profile is too big: {err.errors[0]['message']}."
        raise LimitExceeded(422, err.limit, err.max, message, errors=err.errors) from err
    except SopInvalid as err:
        raise ValidationFailed("The portal profile is not valid.", err.errors) from err
    problems = []
    for path, url in (
        ("base_url", profile.base_url),
        *((f"allowed_origins[{i}]", o) for i, o in enumerate(profile.allowed_origins)),
    ):
        if url is None:
            continue
        try:
            check_portal_address(url)
        except UrlRefused as err:
            problems.append((path, f"{url} is refused: {err}"))
    if profile.portal in BUILTIN_PORTALS:
        builtin = f"'{profile.portal}' is built in: its address is set by the operator"
        if profile.base_url:
            problems.append(("base_url", builtin))
        if profile.allowed_origins:
            problems.append(("allowed_origins", builtin))
    if problems:
        raise _invalid(text, problems)
    return profile


def _origins(conn: Conn, name: str, profile: Profile) -> set[str]:
    """The origins the profile's pages may be on: its own address, else the registered one."""
    if profile.base_url:
        try:
            return {url_origin(profile.base_url), *profile.allowed_origins}
        except UrlRefused:
            return set()
    return portal_queries.portal_origins(
        conn, account_id(), name, sandbox_url=runtime().settings.sandbox_url, sop_base_url=None
    )


def _refuse_offsite_urls(conn: Conn, name: str, profile: Profile) -> None:
    origins = _origins(conn, name, profile)
    if origins:
        errors = offsite_urls(profile, origins)  # type: ignore[arg-type]  # needs all_steps()
        sign_in = profile.sign_in
        if sign_in and re.match(r"(?i)https?://", sign_in.url) and "{" not in sign_in.url:
            try:
                offsite = url_origin(sign_in.url) not in origins
            except UrlRefused:
                offsite = True
            if offsite:
                errors.append(
                    {
                        "line": _line_of_key(profile.source, "sign_in"),
                        "path": "sign_in.url",
                        "message": f"{sign_in.url} is not on one of the portal's origins"
                        f" ({', '.join(sorted(origins))})",
                    }
                )
        if errors:
            raise ValidationFailed("The portal profile is not valid.", errors)


def _warnings(conn: Conn, name: str, profile: Profile) -> list[str]:
    """What would stop a task on this portal although the document itself is valid."""
    if name in BUILTIN_PORTALS:
        return []
    address = profile.base_url or portal_queries.portal_base_url(conn, account_id(), name)
    credentials = portal_queries.has_credentials(conn, account_id(), name)
    problems = portal_queries.portal_problems(name, address=address, has_credentials=credentials)
    return [f"{problem}." for problem in problems]


def _version_json(stored: StoredProfile | StoredProfileRefused) -> dict[str, Any]:
    """What a stored version says of itself; ``problems`` lists what this release refuses in a
    version stored under earlier rules (its title and summary are then null)."""
    if isinstance(stored, StoredProfileRefused):
        return {"version": stored.version, "builtin": False, "title": None, "summary": None,
                "body": stored.text, "created_at": iso(stored.created_at),
                "problems": stored.errors}  # fmt: skip
    profile = stored.profile
    return {"version": stored.version, "builtin": stored.builtin, "title": profile.title,
            "summary": profile.summary(), "body": profile.source,
            "created_at": iso(stored.created_at), "problems": []}  # fmt: skip


def _profile_json(conn: Conn, name: str) -> dict[str, Any]:
    stored = or_refused(
        StoredProfileRefused, portal_queries.active_profile, conn, account_id(), name
    )
    if stored is None:
        raise NotFound("portal profile")
    # A refused version has no parsed address: the registration's is the one in force then.
    profile = None if isinstance(stored, StoredProfileRefused) else stored.profile
    base_url: str | None
    if name in BUILTIN_PORTALS:
        base_url, origins = runtime().settings.sandbox_url, []
    else:  # the registration, which a profile with a base_url or PUT /portals/{name} sets
        base_url = portal_queries.portal_base_url(conn, account_id(), name)
        origins = portal_queries.portal_allowed_origins(conn, account_id(), name)
        if base_url is None and profile is not None:
            base_url, origins = profile.base_url, list(profile.allowed_origins)
    history = portal_queries.profile_versions(conn, account_id(), name)
    return {
        "portal": name,
        **_version_json(stored),
        "base_url": base_url,
        "allowed_origins": origins,
        **history_json(history),
    }


@bp.get("/portals/<name>/profile")
def read_profile(name: str):
    portal_name(name)
    with runtime().pool.connection() as conn:
        return jsonify(_profile_json(conn, name))


@bp.get("/portals/<name>/profile/versions")
def list_profile_versions(name: str):
    """The account's versions of the portal's profile, newest first, a page at a time; 404
    for a portal with neither a built-in profile nor a version, as its profile is."""
    portal_name(name)
    with runtime().pool.connection() as conn:
        listed = versions_page(functools.partial(_versions, conn, name))
        # An empty page is also the end of a portal's versions: only then is it worth asking.
        unknown = not listed["data"] and name not in BUILTIN_PORTALS
        if unknown and not portal_queries.has_profile_versions(conn, account_id(), name):
            raise NotFound("portal profile")
    return jsonify(listed)


def _versions(conn: Conn, name: str, before: int | None, limit: int) -> list[dict]:
    return portal_queries.profile_versions(conn, account_id(), name, before=before, limit=limit)


@bp.get("/portals/<name>/profile/versions/<int:version>")
def read_profile_version(name: str, version: int):
    """One of the account's stored versions of the portal's profile, with its text (a task's
    ``profile`` names the version its run signed in with)."""
    portal_name(name)
    with runtime().pool.connection() as conn:
        stored = or_refused(
            StoredProfileRefused, portal_queries.profile_version, conn, account_id(), name, version
        )
    if stored is None:
        raise NotFound("profile version")
    return jsonify({"portal": name, **_version_json(stored)})


@bp.put("/portals/<name>/profile")
def put_profile(name: str):
    """A new version: 201. The same text as the active version: 200 and nothing stored."""
    portal_name(name)
    out, created = store_profile(
        name, yaml_document("portal profile", ProfileBodySchema(), "profile")
    )
    return jsonify(out), 201 if created else 200


def store_profile(name: str, text: str) -> tuple[dict[str, Any], bool]:
    """Validate and store a new version (the API's and the console's one path): the profile's
    JSON with its warnings, and whether a version was created. Raises ApiError if invalid."""
    profile = _parse(text)
    if profile.portal != name:
        raise _invalid(text, [("portal", f"must be {name}, not {profile.portal!r}")])
    with runtime().pool.connection() as conn:
        _refuse_offsite_urls(conn, name, profile)
        with within_quota():
            portal_queries.make_room(conn, account_id(), name, runtime().settings.max_portals)
            _version, created = portal_queries.put_profile_version(
                conn, account_id(), name, text, max_versions=runtime().settings.max_sop_versions
            )
        if profile.base_url:
            portal_queries.put_portal(
                conn, account_id(), name, profile.base_url, list(profile.allowed_origins)
            )
        woken = _profile_changed(conn, name, profile)
        out = _profile_json(conn, name)
        out["warnings"] = _warnings(conn, name, profile)
    _send(woken)
    return out, created


def _profile_changed(conn: Conn, name: str, profile: Profile) -> list[int]:
    """What a new version of the portal's profile changes for the tasks that wait on it: an
    outage's next probe is due at once (the fix may be in it), and the tasks waiting for a
    session go back in line up to its ``max_sessions`` (a raised or dropped limit has room
    now; they went one at a time, each when a running task ended). The woken, to send once
    the version is committed."""
    outages.probe_now(conn, account_id(), name)
    return task_queries.wake_session_waiters(conn, account_id(), name, profile.max_sessions)


def _send(woken: list[int]) -> None:
    for task_id in woken:
        task_queries.send_now(runtime(), task_id)


@bp.delete("/portals/<name>/profile")
def revert_profile(name: str):
    """A built-in portal: go back to its built-in profile, stored as the next version (the
    versions never change). Another portal's profile is changed by storing a new version."""
    portal_name(name)
    if name not in BUILTIN_PORTALS:
        raise ApiError(
            422,
            "not_builtin",
            f"'{name}' has no built-in profile to go back to: store a new version with"
            f" PUT /portals/{name}/profile.",
            [{"field": "portal", "message": "has no built-in profile"}],
        )

    woken: list[int] = []

    def revert(conn: Conn) -> idempotency.Carried:
        if portal_queries.has_profile_versions(conn, account_id(), name):
            with within_quota():
                portal_queries.put_profile_version(
                    conn, account_id(), name, builtin_profile_text(name),
                    max_versions=runtime().settings.max_sop_versions,
                )  # fmt: skip
            woken[:] = _profile_changed(conn, name, builtin_profile(name))
        return _profile_json(conn, name), 200

    answer = idempotency.respond_once(revert)
    _send(woken)
    return answer


@bp.post("/portals/profiles/validate")
def validate_profile():
    """Check a profile without storing it: the summary it would give, or every error."""
    profile = _parse(yaml_document("portal profile", ProfileBodySchema(), "profile"))
    with runtime().pool.connection() as conn:
        _refuse_offsite_urls(conn, profile.portal, profile)
        warnings = _warnings(conn, profile.portal, profile)
    return jsonify(
        {
            "valid": True,
            "portal": profile.portal,
            "title": profile.title,
            "summary": profile.summary(),
            "warnings": warnings,
        }
    )
