"""The scheduler's webhook claim reads what it claims, not the pending backlog
(shared.webhooks.claim_due_messages, once a second for every account):

- the messages being sent now, by endpoint (account) and lease end: each endpoint's in-flight
  count read every pending message of its account, a backlog of a million for one account cost
  every tick 0.2 to 1 s;
- the pending messages by account, due time and id, the order a claim takes them in: on
  (account_id, next_attempt_at) alone, messages made due at one instant (an endpoint enabled
  again, a recovery) were all read and sorted to claim four;
- and no index of every account's due messages in one order, which no query needs: the planner
  walked it to find one account's oldest, reading every other account's due messages first.

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE INDEX webhook_messages_in_flight ON webhook_messages (account_id, locked_until)
            WHERE status = 'pending' AND locked_until IS NOT NULL;
        CREATE INDEX webhook_messages_due_by_account
            ON webhook_messages (account_id, next_attempt_at, id) WHERE status = 'pending';
        DROP INDEX webhook_messages_pending_account;
        DROP INDEX webhook_messages_due;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        CREATE INDEX webhook_messages_due ON webhook_messages (next_attempt_at)
            WHERE status = 'pending';
        CREATE INDEX webhook_messages_pending_account
            ON webhook_messages (account_id, next_attempt_at) WHERE status = 'pending';
        DROP INDEX webhook_messages_due_by_account;
        DROP INDEX webhook_messages_in_flight;
        """
    )
