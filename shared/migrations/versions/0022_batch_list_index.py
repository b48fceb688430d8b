"""An account's batches, newest first: the console's list of batches reads this index.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX task_batches_account ON task_batches (account_id, id DESC)")


def downgrade() -> None:
    op.execute("DROP INDEX task_batches_account")
