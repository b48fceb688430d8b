"""An index of the account's pending pings: a test ping (``POST /webhook-endpoint/test``) is
refused while one is pending (409 ``ping_pending``), and finding it reads that ping, not the
account's other pending messages, however many a receiver that is down has left.

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX webhook_messages_pending_ping ON webhook_messages (account_id)"
        " WHERE event = 'ping' AND status = 'pending'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX webhook_messages_pending_ping")
