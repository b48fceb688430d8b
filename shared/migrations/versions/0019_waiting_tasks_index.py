"""Fair share at the claim: the accounts with a task waiting, one index probe each.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- shared.tasks.claim_task: which accounts have a task waiting (a skip scan, one probe
        -- per account however long its backlog), and each one's oldest waiting task. Without
        -- it a claim read every waiting task: 28 ms with 20,000 of them, 146 ms when another
        -- account's task was among them.
        CREATE INDEX tasks_waiting ON tasks (account_id, id)
            WHERE status IN ('pending', 'dispatching');
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX tasks_waiting")
