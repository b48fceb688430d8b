"""Deleting a screenshot checks that no trajectory step still points at it: by an index.

Without one, the foreign key's check read every trajectory step of every account once per
screenshot deleted, so the retention purge (shared.retention) of 500 tasks read 500 times the
whole table: 380 ms with 16,000 steps, 105 s for 20,000 tasks with 160,000 steps, and more as
the table grows.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Only the steps with a screenshot have an entry: the check looks for a given screenshot.
    op.execute(
        "CREATE INDEX trajectory_steps_artifact ON trajectory_steps (artifact_id)"
        " WHERE artifact_id IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX trajectory_steps_artifact")
