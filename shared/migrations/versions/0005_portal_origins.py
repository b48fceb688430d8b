"""Portals: the extra origins an account declares, which the agent's browser may also reach.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- Besides its base URL's origin, a portal may need others (a sign-in host, a CDN).
        -- The agent's egress proxy lets the browser reach exactly these and nothing else.
        ALTER TABLE portals ADD COLUMN allowed_origins text[] NOT NULL DEFAULT '{}';
        """
    )
