"""The files an API process of the previous release stores count in ``account_storage`` too.

During a rollout the previous release's API processes go on creating tasks (migration 0037
keeps their ``insert_task`` for them) until the new ones replace them, and they never counted
their files' bytes: the retention purge later took those bytes off anyway, leaving the account's
counter below the files it holds, for good, and MAX_STORED_FILE_BYTES that much too loose. So
their ``insert_task`` (migration 0015's, 15 arguments) adds its files' bytes to the account's
row first, then stores the task as before (no limit: that release's API checks none). The row
is taken before the account's, in the order of today's creations, so the two never wait on
each other in turn.

The counter is counted again from the files, under locks that hold back every creation and
purge of files until the commit: migration 0036 filled it without them, so a file stored while
it ran, or stored by the previous release since, was left out.

Revision ID: 0038
Revises: 0037
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from shared.db import earlier_migration

revision = "0038"
down_revision = "0037"
branch_labels = None
depends_on = None


_CREATION = earlier_migration("0015_create_task_call")

# The previous release's insert_task: its argument types, and its arguments passed on.
_TYPES = ", ".join(parameter.split()[1] for parameter in _CREATION._TASK_PARAMETERS.split(","))
_ARGUMENTS = """p_account_id, p_type, p_title, p_instructions, p_sop_id, p_sop_digest,
                p_own_sop_id, p_custom_type, p_portal, p_data, p_inputs, p_secret_inputs,
                p_names, p_types, p_contents"""


def upgrade() -> None:
    op.execute(
        f"""
        ALTER FUNCTION insert_task({_TYPES}) RENAME TO insert_task_uncounted;

        CREATE FUNCTION insert_task({_CREATION._TASK_PARAMETERS})
            RETURNS TABLE ({_CREATION._CREATED})
        LANGUAGE plpgsql AS $$
        #variable_conflict use_column
        BEGIN
            IF cardinality(p_contents) > 0 THEN
                INSERT INTO account_storage AS s (account_id, file_bytes)
                SELECT p_account_id, sum(length(c)) FROM unnest(p_contents) AS c
                ON CONFLICT (account_id)
                DO UPDATE SET file_bytes = s.file_bytes + excluded.file_bytes;
            END IF;
            RETURN QUERY SELECT * FROM insert_task_uncounted({_ARGUMENTS});
        END
        $$;

        -- The creations' order: the counter's rows, then the files.
        LOCK TABLE account_storage IN EXCLUSIVE MODE;
        LOCK TABLE task_files IN SHARE MODE;
        INSERT INTO account_storage AS s (account_id, file_bytes)
        SELECT a.id, COALESCE((SELECT sum(f.size_bytes) FROM task_files f
                                 JOIN tasks t ON t.id = f.task_id
                                WHERE t.account_id = a.id), 0)
          FROM accounts a
         WHERE EXISTS (SELECT FROM account_storage WHERE account_id = a.id)
            OR EXISTS (SELECT FROM tasks t JOIN task_files f ON f.task_id = t.id
                        WHERE t.account_id = a.id)
        ON CONFLICT (account_id) DO UPDATE SET file_bytes = excluded.file_bytes;
        """
    )


def downgrade() -> None:
    op.execute(
        f"""
        DROP FUNCTION insert_task({_TYPES});
        ALTER FUNCTION insert_task_uncounted({_TYPES}) RENAME TO insert_task;
        """
    )
