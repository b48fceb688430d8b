"""An account keeps its ended tasks for ``retention_days``; the scheduler deletes them after.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE accounts ADD COLUMN retention_days integer NOT NULL DEFAULT 90;
        -- shared.retention: an account's tasks that ended before its cutoff, as one index range
        -- (a task gets its entry when it ends, never at POST /tasks).
        CREATE INDEX tasks_ended ON tasks
            (account_id, (COALESCE(completed_at, failed_at, canceled_at)))
            WHERE status IN ('completed', 'completed_with_issues', 'failed', 'canceled');
        -- A purged task's screenshots, found by task (they are written by the worker only).
        CREATE INDEX artifacts_task ON artifacts (task_id);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX artifacts_task;
        DROP INDEX tasks_ended;
        ALTER TABLE accounts DROP COLUMN retention_days;
        """
    )
