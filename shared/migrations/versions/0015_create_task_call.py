"""A task's INSERT lives in the database, and a creation without an Idempotency-Key is one CALL.

``insert_task(...)`` is the statement that stores a task and its files, counts the account's
next task number and checks what the task was validated against (``creation_checks_hold``,
migration 0012); it returns the row the API answers with. Both ways of creating a task run it:

- ``CALL create_task(...)``: the task committed without waiting for the disk, then the call's
  audit entry committed durably, in one statement, so one round trip. PostgreSQL flushes the
  WAL in order, so the audit entry's commit makes the task durable too, and the account's row
  is locked only while the INSERT runs, never during a disk flush.
- ``SELECT * FROM insert_task(...)`` inside a transaction the API sends itself, for a creation
  with an Idempotency-Key (its stored answer is written in the same transaction) or one that
  read what to validate against first.

The same work as BEGIN, SET LOCAL, the INSERT, COMMIT and the audit INSERT sent in one pipeline,
at about a third of the client's CPU: each statement of a pipeline costs the API its own
protocol round of Python work, and PL/pgSQL keeps the statement's plan for the session.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# The task's inputs, shared by the function and the procedure.
_TASK_PARAMETERS = """
    p_account_id bigint, p_type text, p_title text, p_instructions text, p_sop_id bigint,
    p_sop_digest text, p_own_sop_id bigint, p_custom_type boolean, p_portal text, p_data text,
    p_inputs jsonb, p_secret_inputs bytea, p_names text[], p_types text[], p_contents bytea[]
"""
# What a created task's row holds beyond what the API sent: tasks' RETURNING, and its files.
_CREATED = """
    id bigint, task_number integer, handler text, notes text, result jsonb, trajectory_id uuid,
    attempts integer, created_at timestamptz, updated_at timestamptz, started_at timestamptz,
    completed_at timestamptz, failed_at timestamptz, canceled_at timestamptz, files json
"""


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION insert_task({_TASK_PARAMETERS}) RETURNS TABLE ({_CREATED})
        LANGUAGE plpgsql AS $$
        #variable_conflict use_column
        BEGIN
            RETURN QUERY
            WITH number AS (
                UPDATE accounts SET task_seq = task_seq + 1 WHERE id = p_account_id
                RETURNING task_seq
            ), task AS (
                INSERT INTO tasks (account_id, task_number, type, title, instructions, sop_id,
                                   data, inputs, secret_inputs, status, enqueued_at)
                SELECT p_account_id, number.task_seq, p_type, p_title, p_instructions, p_sop_id,
                       p_data, p_inputs, p_secret_inputs, 'dispatching', now()
                  FROM number
                 -- What the task was validated against still holds, else an error (UQ001): the
                 -- SOP's text, the account's newest own version of it (none for the built-in
                 -- one), the type, a login.
                 WHERE creation_checks_hold(
                           EXISTS (SELECT FROM sops WHERE id = p_sop_id AND digest = p_sop_digest)
                       AND (SELECT id FROM sops
                             WHERE account_id = p_account_id AND task_type = p_type
                             ORDER BY version DESC LIMIT 1) IS NOT DISTINCT FROM p_own_sop_id
                       AND (NOT p_custom_type
                            OR EXISTS (SELECT FROM custom_task_types
                                        WHERE account_id = p_account_id AND task_type = p_type
                                          AND removed_at IS NULL))
                       AND EXISTS (SELECT FROM portal_credentials
                                    WHERE account_id = p_account_id AND portal = p_portal))
                RETURNING id, task_number, handler, notes, result, trajectory_id, attempts,
                          created_at, updated_at, started_at, completed_at, failed_at,
                          canceled_at
            ), files AS (
                INSERT INTO task_files (task_id, filename, content_type, size_bytes, content)
                SELECT task.id, f.filename, f.content_type, length(f.content), f.content
                  FROM task, unnest(p_names, p_types, p_contents)
                             WITH ORDINALITY AS f(filename, content_type, content, n)
                 ORDER BY f.n
                RETURNING id, filename, content_type, size_bytes
            )
            SELECT task.*,
                   COALESCE((SELECT json_agg(json_build_object('id', f.id, 'filename', f.filename,
                               'content_type', f.content_type, 'size', f.size_bytes)
                               ORDER BY f.id)
                             FROM files f), '[]'::json)
              FROM task;
        END
        $$
        """
    )
    op.execute(create_task_procedure("p_detail"))


def create_task_procedure(detail: str) -> str:
    """The ``CREATE OR REPLACE`` of ``create_task``, whose audit entry's detail is the SQL
    expression ``detail`` (migration 0018 adds the created task's id to it)."""
    inout = ", ".join(f"INOUT {column.strip()} DEFAULT NULL" for column in _CREATED.split(","))
    return f"""
        CREATE OR REPLACE PROCEDURE create_task(
            {_TASK_PARAMETERS}, p_actor text, p_action text, p_target text, p_detail jsonb,
            {inout})
        LANGUAGE plpgsql AS $$
        BEGIN
            -- The audit entry's commit below is the durable one.
            PERFORM set_config('synchronous_commit', 'off', true);
            SELECT * INTO id, task_number, handler, notes, result, trajectory_id, attempts,
                          created_at, updated_at, started_at, completed_at, failed_at,
                          canceled_at, files
              FROM insert_task(p_account_id, p_type, p_title, p_instructions, p_sop_id,
                               p_sop_digest, p_own_sop_id, p_custom_type, p_portal, p_data,
                               p_inputs, p_secret_inputs, p_names, p_types, p_contents);
            COMMIT;
            INSERT INTO audit_log (account_id, actor, action, target, detail)
            VALUES (p_account_id, p_actor, p_action, p_target, {detail});
        END
        $$
        """


def downgrade() -> None:
    op.execute("DROP PROCEDURE create_task")
    op.execute("DROP FUNCTION insert_task")
