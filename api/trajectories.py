"""GET a task's trajectory (every step the agent took, per attempt) and its screenshots."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from api.auth import account_id, require_account
from api.errors import NotFound
from api.runtime import runtime
from shared.tasks import iso
from shared.trajectories import account_artifact, task_trajectory_id, trajectory_steps

bp = Blueprint("trajectories", __name__)
bp.before_request(require_account)


def _step_json(row: dict) -> dict[str, Any]:
    artifact = row["artifact_id"]
    return {
        "seq": row["seq"],
        "attempt": row["attempt"],
        "name": row["name"],
        "status": row["status"],
        "message": row["message"],
        "started_at": iso(row["started_at"]),
        "duration_ms": row["duration_ms"],
        "screenshot": {"id": artifact, "url": f"/artifacts/{artifact}"} if artifact else None,
    }


@bp.get("/tasks/<int:task_id>/trajectory")
def read_trajectory(task_id: int):
    with runtime().pool.connection() as conn:
        trajectory_id = task_trajectory_id(conn, task_id, account_id())
        if trajectory_id is None:
            raise NotFound("task")
        steps = trajectory_steps(conn, task_id)
    return jsonify(
        {
            "task_id": task_id,
            "trajectory_id": trajectory_id,
            "steps": [_step_json(s) for s in steps],
        }
    )


@bp.get("/artifacts/<int:artifact_id>")
def read_artifact(artifact_id: int):
    with runtime().pool.connection() as conn:
        row = account_artifact(conn, artifact_id, account_id())
    if row is None:
        raise NotFound("artifact")
    # Patient data: no-store and nosniff, as on every answer (api.limits).
    return Response(bytes(row["content"]), mimetype=row["content_type"])
