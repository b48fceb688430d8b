"""A creation's audit entry names the task it created: ``task_id`` in its detail.

Before, the entry of ``POST /tasks`` said only the route and the status, so the audit log could
not tell which API key created which task. ``create_task`` (migration 0015) now adds the id it
just inserted to the entry's detail; the API adds it on its other ways of storing a task.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

from shared.db import earlier_migration

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


_CREATION = earlier_migration("0015_create_task_call")  # its procedure text, reused


def upgrade() -> None:
    op.execute(
        _CREATION.create_task_procedure(
            "COALESCE(p_detail, '{}'::jsonb) || jsonb_build_object('task_id', id)"
        )
    )


def downgrade() -> None:
    op.execute(_CREATION.create_task_procedure("p_detail"))
