"""Sessions per user: tasks waiting for one of their account's sessions on a portal.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- shared.tasks.wake_parked and stranded_sessions: an account's tasks waiting for a
        -- session on one portal (max_sessions in the portal's profile), oldest first.
        CREATE INDEX tasks_parked ON tasks (account_id, profile_portal, id)
            WHERE status = 'waiting_for_session';
        -- /metrics counts the unfinished tasks from this index: the new status is one of them.
        DROP INDEX tasks_unfinished;
        CREATE INDEX tasks_unfinished ON tasks (status)
            WHERE status IN ('pending', 'dispatching', 'running', 'waiting_for_input',
                             'waiting_for_session');
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX tasks_parked;
        DROP INDEX tasks_unfinished;
        CREATE INDEX tasks_unfinished ON tasks (status)
            WHERE status IN ('pending', 'dispatching', 'running', 'waiting_for_input');
        """
    )
