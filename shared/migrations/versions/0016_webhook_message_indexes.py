"""Webhook message list indexes: filter by status or by task without reading the account's
history.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- GET /webhooks/messages?status=... newest first (and the console's webhooks page).
        -- Without it, listing failed messages walks webhook_messages_account through every
        -- message the account ever had, and listing delivered ones reads and drops every newer
        -- message still pending: a receiver that was down leaves thousands of them.
        CREATE INDEX webhook_messages_account_status
            ON webhook_messages (account_id, status, id DESC);
        -- GET /webhooks/messages?task_id=...: a task has one or two messages, found here
        -- instead of among all of its account's.
        CREATE INDEX webhook_messages_task ON webhook_messages (task_id, id DESC)
            WHERE task_id IS NOT NULL;
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX webhook_messages_task; DROP INDEX webhook_messages_account_status")
