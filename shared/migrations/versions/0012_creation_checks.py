"""A creation's checks, re-made by its INSERT: a function that stops the statement when what the
API validated a task against (the active SOP, the type, the portal's login) has changed.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- True, or an error with SQLSTATE UQ001 (shared.tasks.CHECKS_CHANGED) that aborts the
        -- statement and its transaction: the API then reads what changed and validates again.
        CREATE FUNCTION creation_checks_hold(hold boolean) RETURNS boolean
        LANGUAGE plpgsql AS $$
        BEGIN
            IF hold IS NOT TRUE THEN
                RAISE EXCEPTION 'what the task was validated against has changed'
                      USING ERRCODE = 'UQ001';
            END IF;
            RETURN true;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION creation_checks_hold(boolean)")
