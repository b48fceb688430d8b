"""An index of the webhook messages of no task that have ended, by account and end, for the
retention purge (shared.retention): it finds those past an account's days without reading the
messages the account keeps, however many are pending or recent.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE INDEX webhook_messages_ended
            ON webhook_messages (account_id, (COALESCE(delivered_at, failed_at, created_at)))
            WHERE task_id IS NULL AND status IN ('aborted', 'delivered', 'failed')
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX webhook_messages_ended")
