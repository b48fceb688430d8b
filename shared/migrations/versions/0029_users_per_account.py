"""A console user belongs to one account, and one email may be a user of several accounts (a
billing service working for several clinics): the email is unique within an account, not
across accounts. Inviting an email that another account uses is then an ordinary invite, and
no longer tells the inviting admin that the email is known elsewhere.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX users_email")
    op.execute("CREATE UNIQUE INDEX users_account_email ON users (account_id, lower(email))")
    # Sign-in looks an email up across accounts.
    op.execute("CREATE INDEX users_email ON users (lower(email))")


def downgrade() -> None:
    # Fails while an email is a user of two accounts: remove one of them first.
    op.execute("DROP INDEX users_email")
    op.execute("DROP INDEX users_account_email")
    op.execute("CREATE UNIQUE INDEX users_email ON users (lower(email))")
