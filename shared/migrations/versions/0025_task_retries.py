"""A task sent again (POST /tasks/{id}/retry) names the task it retries.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- Beside tasks, as batch_tasks is: a task that is no retry costs its creation nothing.
        -- retry_of is a plain id: the retried task may be deleted first (shared.retention).
        CREATE TABLE task_retries (
            task_id   bigint PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
            retry_of  bigint NOT NULL
        );
        CREATE INDEX task_retries_of ON task_retries (retry_of, task_id);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE task_retries")
