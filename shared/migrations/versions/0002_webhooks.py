"""Webhook delivery: a fencing token per delivery, error detail per attempt, a claim index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- locked_until alone says "claimed by a scheduler"; lease_token says "a dispatcher thread
        -- is sending it now". A duplicate queue message finds the token set and does nothing,
        -- and a dispatcher whose lease expired cannot overwrite the state its successor wrote.
        ALTER TABLE webhook_messages ADD COLUMN lease_token text;

        ALTER TABLE webhook_attempts ADD COLUMN error_detail text;

        -- The scheduler's claim and the per-endpoint in-flight count both look up pending
        -- messages by endpoint (account).
        CREATE INDEX webhook_messages_pending_account
            ON webhook_messages (account_id, next_attempt_at)
            WHERE status = 'pending';
        """
    )
