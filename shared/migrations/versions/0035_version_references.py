"""Which tasks name a stored version, by index: an account keeps at most MAX_SOP_VERSIONS of
each SOP and portal profile, and a save drops the oldest that no task names
(shared.versions.drop_oldest).

Without them, each version a save looked at (and the foreign key's check of each SOP version
dropped) read every task of every account.

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Only the tasks whose run signed in with a stored profile have an entry in the second.
    op.execute(
        """
        CREATE INDEX tasks_sop ON tasks (sop_id);
        CREATE INDEX tasks_profile ON tasks (account_id, profile_portal, profile_version)
            WHERE profile_version IS NOT NULL;
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX tasks_profile; DROP INDEX tasks_sop")
