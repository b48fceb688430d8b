"""An index of the finished batches, by account and end, for the retention purge
(shared.retention): it finds those past an account's days without reading the batches the
account keeps, however many are unfinished or recent.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX task_batches_finished ON task_batches (account_id, finished_at)"
        " WHERE finished_at IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX task_batches_finished")
