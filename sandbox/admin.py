"""Test-harness endpoints under /__sandbox: fault switches, reset, submissions, stats.

They need no login and ignore the ``down`` and ``slow_s`` faults (see faults._exempt).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from .faults import FaultError, validate
from .store import get_store

bp = Blueprint("admin", __name__, url_prefix="/__sandbox")


@bp.get("/faults")
def get_faults() -> Any:
    return jsonify(get_store().faults())


@bp.post("/faults")
def set_faults() -> Any:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(error="expected a JSON object of fault switches"), 400
    try:
        changes = validate(body)
    except FaultError as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(get_store().set_faults(changes))


@bp.post("/reset")
def reset() -> Any:
    store = get_store()
    store.reset()
    return jsonify(ok=True, faults=store.faults())


@bp.get("/submissions")
def submissions() -> Any:
    return jsonify(get_store().submissions())


@bp.get("/stats")
def stats() -> Any:
    return jsonify(get_store().stats())


@bp.get("/hub/outbox")
def hub_outbox() -> Any:
    """Care Hub's "sent email": the passcode last sent to each address."""
    return jsonify(get_store().spa_outbox())


@bp.post("/hub/expire")
def hub_expire() -> Any:
    """End every Care Hub session now (its next call sees an expired session)."""
    return jsonify(ended=get_store().spa_expire_sessions())
