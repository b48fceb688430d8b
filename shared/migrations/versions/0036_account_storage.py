"""The bytes of files each account keeps (``MAX_STORED_FILE_BYTES``): a counter per account,
added to in the transaction that stores a task's files and taken from by the retention purge
that deletes them, so that a creation checks the account's room under one row's lock instead
of summing every file it has. Filled here from the files stored so far.

Revision ID: 0036
Revises: 0035
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE account_storage (
            account_id  bigint PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
            file_bytes  bigint NOT NULL
        )
        """
    )
    op.execute(
        """
        INSERT INTO account_storage (account_id, file_bytes)
        SELECT t.account_id, sum(f.size_bytes)
          FROM task_files f JOIN tasks t ON t.id = f.task_id
         GROUP BY t.account_id
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE account_storage")
