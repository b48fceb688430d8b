"""Batches: the tasks one POST /tasks/batch created, and how many of them have yet to end.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- One call's tasks. `unfinished` counts down as they end (shared.batches.task_ended,
        -- in the transaction that ends each): at 0 the batch is finished.
        CREATE TABLE task_batches (
            id           bigserial PRIMARY KEY,
            account_id   bigint NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
            size         integer NOT NULL,
            unfinished   integer NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            finished_at  timestamptz
        );
        -- Which batch a task is in, and where: a task's batch by its id when it ends, a
        -- batch's tasks in order by the second index. Kept beside tasks, so a task outside
        -- any batch costs its creation nothing.
        CREATE TABLE batch_tasks (
            task_id   bigint PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
            batch_id  bigint NOT NULL REFERENCES task_batches(id) ON DELETE CASCADE,
            position  integer NOT NULL
        );
        CREATE UNIQUE INDEX batch_tasks_batch ON batch_tasks (batch_id, position);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE batch_tasks; DROP TABLE task_batches")
