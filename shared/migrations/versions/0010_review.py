"""Human review: the decision on a task, the account's review rule, opt-in webhook event types.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- A task paused at a review point (pending_review) and the person's decision on it.
        -- review_decision is NULL until decided; an approved task runs again and passes the
        -- review point without stopping.
        ALTER TABLE tasks
            ADD COLUMN review_step          text,
            ADD COLUMN review_requested_at  timestamptz,
            ADD COLUMN review_decision      text
                CHECK (review_decision IN ('approved', 'rejected')),
            ADD COLUMN reviewed_by          text,
            ADD COLUMN reviewed_at          timestamptz,
            ADD COLUMN review_note          text,
            -- When a task waiting for input gives up (input_requested_at is when it began).
            ADD COLUMN input_expires_at     timestamptz;

        -- The task types whose tasks must be approved by a person before their irreversible
        -- step, for tasks of this account.
        ALTER TABLE accounts
            ADD COLUMN review_required_types text[] NOT NULL DEFAULT '{}';

        -- The event types the endpoint receives. The default is what every
        -- endpoint received before: task_finished only. A ping is always sent.
        ALTER TABLE webhook_endpoints
            ADD COLUMN filter_types text[] NOT NULL DEFAULT '{task_finished}';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE webhook_endpoints DROP COLUMN filter_types;
        ALTER TABLE accounts DROP COLUMN review_required_types;
        ALTER TABLE tasks
            DROP COLUMN review_step, DROP COLUMN review_requested_at,
            DROP COLUMN review_decision, DROP COLUMN reviewed_by, DROP COLUMN reviewed_at,
            DROP COLUMN review_note, DROP COLUMN input_expires_at;
        """
    )
