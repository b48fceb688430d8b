"""Portal profiles: versioned documents saying how to sign in to a portal and what every task
on it shares (docs/portals.md).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- An account's versions of one portal's profile, numbered 1, 2, 3; the newest is
        -- active. Never updated or deleted, like SOP versions. Built-in profiles are files.
        CREATE TABLE portal_profiles (
            id          bigserial PRIMARY KEY,
            account_id  bigint NOT NULL REFERENCES accounts(id),
            portal      text NOT NULL,
            version     integer NOT NULL,
            body        text NOT NULL,
            digest      text NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            UNIQUE (account_id, portal, version)
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE portal_profiles")
