"""Why an account's portal is waited on: ``down`` (unreachable, 5xx, an error page) or
``signed_in_elsewhere`` (it refuses the sign-in while the user is signed in elsewhere), so
operators tell a payer's outage from a clinic's own open session (``/metrics``, the alerts).

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE portal_outages ADD COLUMN cause text NOT NULL DEFAULT 'down'"
        " CHECK (cause IN ('down', 'signed_in_elsewhere'))"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE portal_outages DROP COLUMN cause")
