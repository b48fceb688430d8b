"""/settings: the account's own settings. Today one: the task types that require review.

A task of a type listed in ``review_required_types`` pauses in ``pending_review`` before its
SOP's first irreversible step (or at its ``review`` step, if it has one) until a person approves
it. A type whose SOP has neither has nothing to hold back, and is refused (422).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from marshmallow import Schema, fields, validate

from api.auth import account_id, require_account
from api.bodies import json_body, validated
from api.errors import ValidationFailed
from api.runtime import runtime
from shared import review
from shared.accounts import review_required_types, set_review_required_types
from shared.db import Conn
from shared.sop import store as sop_store
from shared.sop.task_types import TASK_TYPES

bp = Blueprint("account_settings", __name__)
bp.before_request(require_account)

MAX_REVIEW_TYPES = 100


class SettingsSchema(Schema):
    # Unknown fields are refused: a misspelt setting must not be silently dropped.
    review_required_types = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)),
        required=True,
        validate=validate.Length(max=MAX_REVIEW_TYPES),
    )


def _settings_json(types: list[str]) -> dict[str, Any]:
    return {"review_required_types": types}


def _check_types(conn: Conn, task_types: list[str]) -> None:
    """422 for a type the account cannot use, or one whose SOP has nothing to review."""
    problems = []
    for n, task_type in enumerate(task_types):
        field = f"review_required_types.{n}"
        if task_type not in TASK_TYPES and not sop_store.is_custom_type(
            conn, account_id(), task_type
        ):
            problems.append({"field": field, "message": f"unknown task type {task_type!r}"})
            continue
        stored = sop_store.active_sop(conn, account_id(), task_type)
        if review.review_point(stored.sop) is None:
            problems.append(
                {
                    "field": field,
                    "message": f"the SOP of {task_type!r} has no review step and no irreversible"
                    " step: nothing would be held for review",
                }
            )
    if problems:
        raise ValidationFailed("The settings are not valid.", problems)


@bp.get("/settings")
def get_settings():
    with runtime().pool.connection() as conn:
        return jsonify(_settings_json(review_required_types(conn, account_id())))


@bp.put("/settings")
def put_settings():
    """Replace the settings (today: the task types whose tasks need a person's approval)."""
    body = validated(SettingsSchema(), json_body(), "settings")
    with runtime().pool.connection() as conn:
        _check_types(conn, body["review_required_types"])
        stored = set_review_required_types(conn, account_id(), body["review_required_types"])
    return jsonify(_settings_json(stored))
