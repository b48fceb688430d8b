"""A creation's audit entry names the task it created: ``task_id`` in its detail.

Before, the entry of ``POST /tasks`` said only the route and the status, so the audit log could
not tell which API key created which task. ``create_task`` (migration 0015) now adds the id it
just inserted to the entry's detail; the API adds it on its other ways of storing a task.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def _load_0015():
    """Migration 0015, whose procedure text this one reuses (migrations load by path)."""
    path = Path(__file__).with_name("0015_create_task_call.py")
    spec = importlib.util.spec_from_file_location("understudy_migration_0015", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_CREATION = _load_0015()


def upgrade() -> None:
    op.execute(
        _CREATION.create_task_procedure(
            "COALESCE(p_detail, '{}'::jsonb) || jsonb_build_object('task_id', id)"
        )
    )


def downgrade() -> None:
    op.execute(_CREATION.create_task_procedure("p_detail"))
