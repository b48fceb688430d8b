"""/credentials and /portals: where each portal is and how the agent signs in to it.

Credentials are write-only: a password or TOTP secret goes in encrypted and never comes back out
of any endpoint. Listings say only which portals have a login, its username and whether it has
a TOTP secret.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from marshmallow import Schema, ValidationError, fields, validate, validates

from api import idempotency
from api.auth import account_id, require_account
from api.bodies import json_body, validated
from api.errors import ApiError, NotFound, ValidationFailed
from api.limits import within_quota
from api.runtime import check_portal_address, runtime
from shared import outages, totp
from shared import portals as portal_queries
from shared.accounts import (
    Credentials,
    credentials_overview,
    delete_credentials,
    put_credentials,
)
from shared.db import Conn
from shared.portals import SANDBOX_PORTAL
from shared.sop.profile import PORTAL_NAME, PORTAL_NAME_RULE
from shared.ssrf import UrlRefused, origin_of
from shared.tasks import iso

bp = Blueprint("credentials", __name__)
bp.before_request(require_account)


class CredentialsSchema(Schema):
    # Unknown fields are refused (marshmallow's default): a misspelt "totp" must not be dropped
    # silently and leave a login that fails at MFA.
    username = fields.String(required=True, validate=validate.Length(min=1, max=256))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    totp_secret = fields.String(load_default=None, allow_none=True)

    @validates("totp_secret")
    def _base32(self, value: str | None, **_: Any) -> None:
        if value is not None:
            try:
                totp.check_secret(value)
            except totp.InvalidSecret as err:
                raise ValidationError(f"totp_secret is not usable: {err}.") from err


def _valid_base_url(value: str) -> None:
    try:
        check_portal_address(value)
    except UrlRefused as err:
        raise ValidationError(f"base_url is refused: {err}.") from err


MAX_ALLOWED_ORIGINS = 20


class PortalSchema(Schema):
    base_url = fields.String(
        required=True, validate=[validate.Length(min=1, max=2048), _valid_base_url]
    )
    # Other origins the portal's pages need (a sign-in host, a CDN): the agent's browser may
    # reach these too, and nothing else.
    allowed_origins = fields.List(
        fields.String(validate=validate.Length(min=1, max=2048)),
        load_default=list,
        validate=validate.Length(max=MAX_ALLOWED_ORIGINS),
    )

    @validates("allowed_origins")
    def _origins(self, value: list[str], **_: Any) -> None:
        errors = {}
        for index, url in enumerate(value):
            try:
                origin_of(url)
                check_portal_address(url)
            except UrlRefused as err:
                errors[index] = [f"{url!r} is refused: {err}."]
        if errors:
            raise ValidationError(errors)


def portal_name(name: str) -> str:
    """``name`` if it can name a portal; a 422 otherwise."""
    if not PORTAL_NAME.fullmatch(name):
        raise ValidationFailed("Invalid portal name.", {"portal": [PORTAL_NAME_RULE + "."]})
    return name


def _not_builtin(name: str) -> None:
    if name == SANDBOX_PORTAL:
        raise ApiError(
            422,
            "builtin_portal",
            f"'{SANDBOX_PORTAL}' is built in; its address is set by the operator.",
            [{"field": "portal", "message": "is built in; its address is set by the operator"}],
        )


def _credentials_json(row: dict) -> dict[str, Any]:
    return {
        "portal": row["portal"],
        "username": row["username"],
        "has_totp": row["has_totp"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


# --- credentials -------------------------------------------------------------------------------


@bp.put("/credentials/<portal>")
def put_portal_credentials(portal: str):
    portal_name(portal)
    body = validated(CredentialsSchema(), json_body(), "portal login")
    secret = body["totp_secret"]
    creds = Credentials(
        body["username"], body["password"], totp.normalise_secret(secret) if secret else None
    )
    rt = runtime()
    with rt.pool.connection() as conn:
        with within_quota():
            portal_queries.make_room(conn, account_id(), portal, rt.settings.max_portals)
        put_credentials(conn, rt.fernet, account_id(), portal, creds)
        outages.probe_now(conn, account_id(), portal)
        (row,) = credentials_overview(conn, rt.fernet, account_id(), portal)
    return jsonify(_credentials_json(row))


@bp.get("/credentials")
def list_portal_credentials():
    rt = runtime()
    with rt.pool.connection() as conn:
        rows = credentials_overview(conn, rt.fernet, account_id())
    return jsonify({"data": [_credentials_json(r) for r in rows]})


@bp.delete("/credentials/<portal>")
def delete_portal_credentials(portal: str):
    portal_name(portal)

    def forget(conn: Conn) -> idempotency.Carried:
        if not delete_credentials(conn, account_id(), portal):
            raise NotFound("credentials")
        return None, 204

    return idempotency.respond_once(forget)


# --- portals -----------------------------------------------------------------------------------


def _portal_json(
    row: dict, has_credentials: bool, has_profile: bool, *, builtin: bool = False
) -> dict[str, Any]:
    return {
        "name": row["name"],
        "base_url": row["base_url"],
        "allowed_origins": list(row.get("allowed_origins") or []),
        "builtin": builtin,
        "has_credentials": has_credentials,
        "has_profile": has_profile,
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


@bp.put("/portals/<name>")
def put_portal(name: str):
    portal_name(name)
    _not_builtin(name)
    body = validated(PortalSchema(), json_body(), "portal")
    with runtime().pool.connection() as conn:
        origins = sorted({origin_of(url) for url in body["allowed_origins"]})
        with within_quota():
            portal_queries.make_room(conn, account_id(), name, runtime().settings.max_portals)
        row = portal_queries.put_portal(conn, account_id(), name, body["base_url"], origins)
        outages.probe_now(conn, account_id(), name)
        setup = portal_queries.portal_setup(conn, account_id(), name)
        profiled = name in portal_queries.profiled_portals(conn, account_id())
    return jsonify(_portal_json(row, setup["has_credentials"], profiled))


@bp.get("/portals")
def list_portals():
    rt = runtime()
    with rt.pool.connection() as conn:
        rows = portal_queries.list_portals(conn, account_id())
        with_logins = {r["portal"] for r in credentials_overview(conn, rt.fernet, account_id())}
        profiled = portal_queries.profiled_portals(conn, account_id())
    sandbox = {
        "name": SANDBOX_PORTAL,
        "base_url": rt.settings.sandbox_url,
        "created_at": None,
        "updated_at": None,
    }
    portals = [_portal_json(sandbox, SANDBOX_PORTAL in with_logins, True, builtin=True)]
    portals += [_portal_json(r, r["name"] in with_logins, r["name"] in profiled) for r in rows]
    return jsonify({"data": portals})


@bp.delete("/portals/<name>")
def delete_portal(name: str):
    portal_name(name)
    _not_builtin(name)

    def forget(conn: Conn) -> idempotency.Carried:
        if not portal_queries.delete_portal(conn, account_id(), name):
            raise NotFound("portal")
        return None, 204

    return idempotency.respond_once(forget)
