"""A task paused for review waits until a deadline, the account's ``review_timeout_hours``
after it paused (7 days unless set); the scheduler ends it after that (shared.review).

Tasks already paused get the default deadline from the time they paused.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE accounts ADD COLUMN review_timeout_hours integer NOT NULL DEFAULT 168;
        ALTER TABLE tasks ADD COLUMN review_expires_at timestamptz;
        -- 'expired': nobody decided before the deadline.
        ALTER TABLE tasks DROP CONSTRAINT tasks_review_decision_check,
            ADD CONSTRAINT tasks_review_decision_check
                CHECK (review_decision IN ('approved', 'rejected', 'expired'));
        UPDATE tasks SET review_expires_at = review_requested_at + interval '168 hours'
         WHERE status = 'pending_review';
        -- The scheduler's look for reviews past their deadline: the due ones, and only those.
        CREATE INDEX tasks_review_due ON tasks (review_expires_at)
            WHERE status = 'pending_review';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX tasks_review_due;
        UPDATE tasks SET review_decision = 'rejected' WHERE review_decision = 'expired';
        ALTER TABLE tasks DROP CONSTRAINT tasks_review_decision_check,
            ADD CONSTRAINT tasks_review_decision_check
                CHECK (review_decision IN ('approved', 'rejected'));
        ALTER TABLE tasks DROP COLUMN review_expires_at;
        ALTER TABLE accounts DROP COLUMN review_timeout_hours;
        """
    )
