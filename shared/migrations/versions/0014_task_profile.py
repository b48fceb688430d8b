"""A task records the portal profile its latest run signed in with: the portal, and the
account's version of its profile (NULL for the built-in one).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable and without a default: PostgreSQL adds them without rewriting the table.
    op.execute(
        "ALTER TABLE tasks ADD COLUMN profile_portal text, ADD COLUMN profile_version integer"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE tasks DROP COLUMN profile_portal, DROP COLUMN profile_version")
