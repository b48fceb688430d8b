"""Task list by type: a type the account seldom uses without reading the account's history.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- GET /tasks?type=... newest first, without a status filter. Without it, listing the
        -- account's appeals walks tasks_account_id_desc through every newer eligibility check.
        CREATE INDEX tasks_account_type_id ON tasks (account_id, type, id DESC);
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX tasks_account_type_id")
