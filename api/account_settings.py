"""/settings: the account's own settings. ``PUT`` sets those it names; the others stay.

- ``review_required_types``: a task of a type listed pauses in ``pending_review`` before its
  SOP's first irreversible step (or at its ``review`` step, if it has one) until a person
  approves it. A type whose SOP has neither has nothing to hold back, and is refused (422).
- ``review_timeout_hours``: how long a paused task waits for that decision; undecided, it ends
  ``completed_with_issues`` (:func:`shared.review.expire_due`).
- ``retention_days``: how long the account's tasks are kept after they end, with their data,
  files, screenshots and webhook messages (:mod:`shared.retention` deletes them after).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.auth import account_id, require_account
from api.bodies import json_body, validated
from api.errors import SopRefused, ValidationFailed
from api.runtime import runtime
from shared import review
from shared.accounts import SETTINGS, account_settings, update_account_settings
from shared.db import Conn
from shared.retention import MAX_RETENTION_DAYS
from shared.review import MAX_REVIEW_TIMEOUT_HOURS
from shared.sop import store as sop_store
from shared.sop.errors import StoredSopRefused, StoredVersionRefused

bp = Blueprint("account_settings", __name__)
bp.before_request(require_account)

MAX_REVIEW_TYPES = 100


class SettingsSchema(Schema):
    # Unknown fields are refused: a misspelt setting must not be silently dropped.
    review_required_types = fields.List(
        fields.String(validate=validate.Length(min=1, max=64)),
        validate=validate.Length(max=MAX_REVIEW_TYPES),
    )
    review_timeout_hours = fields.Integer(
        strict=True,
        validate=validate.Range(
            min=1,
            max=MAX_REVIEW_TIMEOUT_HOURS,
            error="must be a number of hours from {min} to {max}",
        ),
        metadata={
            "description": "hours a task paused for review waits for a decision; undecided, it"
            " ends completed_with_issues with nothing submitted (168 unless set)"
        },
    )
    retention_days = fields.Integer(
        strict=True,
        validate=validate.Range(
            min=1, max=MAX_RETENTION_DAYS, error="must be a number of days from {min} to {max}"
        ),
        metadata={
            "description": "days an ended task is kept, with its data, files, screenshots"
            " and webhook messages; deleted after (90 unless set)"
        },
    )

    @validates_schema
    def _names_one(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if not data:
            raise ValidationError("name at least one setting: " + ", ".join(SETTINGS))


def _pauses(stored: sop_store.StoredSop | StoredVersionRefused) -> bool:
    """Whether the SOP has a point a review would pause at (not when this release refuses the
    type's active version: no task of the type runs until it is replaced)."""
    return isinstance(stored, sop_store.StoredSop) and review.review_point(stored.sop) is not None


def reviewable_types(conn: Conn) -> list[str]:
    """The types the account can require review for (the console offers these)."""
    active = sop_store.active_sops(conn, account_id())
    return [task_type for task_type, stored in active.items() if _pauses(stored)]


def _check_types(conn: Conn, task_types: list[str]) -> None:
    """422 for a type the account cannot use, or one whose SOP has nothing to review; then 422
    ``sop_refused`` (as a task of it gets) for one whose active SOP this release refuses."""
    active = sop_store.active_sops(conn, account_id())
    problems, refused = [], []
    for n, task_type in enumerate(task_types):
        field = f"review_required_types.{n}"
        stored = active.get(task_type)
        if stored is None:
            problems.append({"field": field, "message": f"unknown task type {task_type!r}"})
        elif isinstance(stored, StoredSopRefused):
            refused.append(SopRefused(stored, field, "set review_required_types again"))
        elif not _pauses(stored):
            problems.append(
                {
                    "field": field,
                    "message": f"the SOP of {task_type!r} has no review step and no irreversible"
                    " step: nothing would be held for review",
                }
            )
    if problems:
        raise ValidationFailed("The settings are not valid.", problems)
    if refused:
        raise refused[0]


@bp.get("/settings")
def get_settings():
    with runtime().pool.connection() as conn:
        return jsonify(account_settings(conn, account_id()))


@bp.put("/settings")
def put_settings():
    """Set the settings the body names (the task types whose tasks need a person's approval,
    how long such a task waits for it, how long ended tasks are kept); the others stay as they
    were."""
    with runtime().pool.connection() as conn:
        return jsonify(apply_settings(conn, json_body()))


def apply_settings(conn: Conn, body: dict[str, Any]) -> dict[str, Any]:
    """Check ``body`` and set the settings it names, in the caller's transaction; the settings
    as stored. 422 (:class:`ValidationFailed`) naming each problem. For ``PUT /settings`` and
    the console's settings page."""
    changes = validated(SettingsSchema(), body, "settings")
    if "review_required_types" in changes:
        _check_types(conn, changes["review_required_types"])
    return update_account_settings(conn, account_id(), changes)
