"""Tasks that wait for their portal: for one of their account's sessions on it, or for it to
come back from an outage.

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
        -- shared.tasks.wake_session_waiters, shared.outages: an account's tasks waiting on one
        -- portal, for a session (max_sessions in its profile) or for an outage to end.
        CREATE INDEX tasks_held ON tasks (account_id, profile_portal, id)
            WHERE status IN ('waiting_for_session', 'waiting_for_portal');
        -- /metrics counts the unfinished tasks from this index: the new statuses are some.
        DROP INDEX tasks_unfinished;
        CREATE INDEX tasks_unfinished ON tasks (status)
            WHERE status IN ('pending', 'dispatching', 'running', 'waiting_for_input',
                             'waiting_for_session', 'waiting_for_portal');
        -- When the task first waited for its portal to come back (PORTAL_OUTAGE_WAIT_S).
        ALTER TABLE tasks ADD COLUMN portal_down_since timestamptz;
        -- An account's portal that failed before a task's own steps (shared.outages).
        CREATE TABLE portal_outages (
            account_id      bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            portal          text NOT NULL,
            since           timestamptz NOT NULL DEFAULT now(),
            error           text NOT NULL,
            probes          integer NOT NULL DEFAULT 0,
            next_probe_at   timestamptz NOT NULL,
            probe_task_id   bigint,
            PRIMARY KEY (account_id, portal)
        );
        CREATE INDEX portal_outages_next_probe ON portal_outages (next_probe_at);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE portal_outages;
        ALTER TABLE tasks DROP COLUMN portal_down_since;
        DROP INDEX tasks_held;
        DROP INDEX tasks_unfinished;
        CREATE INDEX tasks_unfinished ON tasks (status)
            WHERE status IN ('pending', 'dispatching', 'running', 'waiting_for_input');
        """
    )
