"""An account's weight in fair share (shared.tasks.claim_task): with both waiting, an account
of share 3 runs three tasks for each one an account of share 1 runs. Set by the operator
(``understudy accounts share``), never by the clinic. Every account starts at 1, which is
fair share as it was.

From 1, since an account of share 0 would never be less busy than another and its tasks
would wait behind every other account's; to 100, since beyond that the lesser account all
but stops while a greater one has a backlog, and the product of a running count and a share
stays small.

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE accounts ADD COLUMN share integer NOT NULL DEFAULT 1"
        " CONSTRAINT accounts_share_range CHECK (share BETWEEN 1 AND 100)"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE accounts DROP COLUMN share")
