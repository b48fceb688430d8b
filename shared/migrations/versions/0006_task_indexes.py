"""Task list indexes: filter by status without reading the account's whole history.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- GET /tasks?status=... newest first. Without it a rare status (failed, or none at all)
        -- walks tasks_account_id_desc through every task the account ever had. A common status
        -- still takes that walk, which stops after one page.
        CREATE INDEX tasks_account_status_id ON tasks (account_id, status, id DESC);
        """
    )
