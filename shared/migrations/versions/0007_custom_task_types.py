"""Custom task types: the task types an account defined by uploading an SOP for a new name.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- One row per account and custom type. Removing the type sets removed_at: its SOP
        -- versions stay, because tasks point at the exact version they ran.
        CREATE TABLE custom_task_types (
            account_id  bigint NOT NULL REFERENCES accounts(id),
            task_type   text NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            removed_at  timestamptz,
            PRIMARY KEY (account_id, task_type)
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE custom_task_types")
