"""An account has at most ``MAX_QUEUED_TASKS`` unfinished tasks: the INSERT that stores a task
refuses one more (SQLSTATE UQ002), in the statement that stores it.

Counting the account's unfinished tasks on every creation would read them all, so the count is
kept instead, as two numbers whose difference it is:

- the tasks created: ``accounts.task_seq``, the task number each creation already counts under
  the account row's lock;
- the tasks ended: ``account_tasks_ended.ended``, counted by triggers on ``tasks`` whatever ends
  a task (a worker, a cancel, the scheduler giving up, a review's deadline), a task that starts
  again counted back, and an unfinished task deleted counted as ended.

They live in two rows so that a task's end never locks the account row: its transaction holds
the counter's row until it commits durably, and the account's creations, which lock the account
row, would otherwise wait for that flush. A creation reads the ended count as of its statement's
start (an end committing meanwhile only makes it stricter), and concurrent creations of the
account take the account row in turn, each checking the count its predecessor left: two
cannot both take the last place.

``insert_task`` (migration 0015) takes the limit as one more argument, ``p_max_unfinished``, and
``create_task_within`` is ``create_task`` (migration 0018) passing it on. The previous release's
``insert_task`` and ``create_task`` stay for the API processes of that release, which run until
the new ones replace them: they count their tasks' numbers as before, so the count stays exact,
and a later migration drops them.

Revision ID: 0037
Revises: 0036
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from shared.db import earlier_migration

revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = None


_CREATION = earlier_migration("0015_create_task_call")

_ENDED = "('completed', 'completed_with_issues', 'failed', 'canceled')"
_TASK_PARAMETERS = f"{_CREATION._TASK_PARAMETERS.rstrip()}, p_max_unfinished bigint"
_ARGUMENTS = """p_account_id, p_type, p_title, p_instructions, p_sop_id, p_sop_digest,
                               p_own_sop_id, p_custom_type, p_portal, p_data, p_inputs,
                               p_secret_inputs, p_names, p_types, p_contents, p_max_unfinished"""
# The argument types of the new insert_task, to drop it beside the previous release's.
_TASK_TYPES = ", ".join(parameter.split()[1] for parameter in _TASK_PARAMETERS.split(","))


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE account_tasks_ended (
            account_id  bigint PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
            ended       bigint NOT NULL
        );

        CREATE FUNCTION count_task_end() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            -- TG_ARGV[0]: 1 for a task that ended, -1 for one that starts again.
            INSERT INTO account_tasks_ended AS e (account_id, ended)
            VALUES (OLD.account_id, TG_ARGV[0]::bigint)
            ON CONFLICT (account_id) DO UPDATE SET ended = e.ended + excluded.ended;
            RETURN NULL;
        END
        $$;

        CREATE TRIGGER tasks_ended AFTER UPDATE OF status ON tasks FOR EACH ROW
            WHEN (OLD.status NOT IN {_ENDED} AND NEW.status IN {_ENDED})
            EXECUTE FUNCTION count_task_end('1');
        CREATE TRIGGER tasks_started_again AFTER UPDATE OF status ON tasks FOR EACH ROW
            WHEN (OLD.status IN {_ENDED} AND NEW.status NOT IN {_ENDED})
            EXECUTE FUNCTION count_task_end('-1');
        CREATE TRIGGER tasks_unfinished_deleted AFTER DELETE ON tasks FOR EACH ROW
            WHEN (OLD.status NOT IN {_ENDED})
            EXECUTE FUNCTION count_task_end('1');

        -- The triggers' lock on tasks holds its writes back until this commits: the count is
        -- taken from the rows as they are.
        INSERT INTO account_tasks_ended (account_id, ended)
        SELECT a.id, a.task_seq - (SELECT count(*) FROM tasks t
                                    WHERE t.account_id = a.id AND t.status NOT IN {_ENDED})
          FROM accounts a;

        CREATE FUNCTION queued_tasks_within(unfinished bigint, max_unfinished bigint)
            RETURNS boolean
        LANGUAGE plpgsql AS $$
        BEGIN
            IF unfinished >= max_unfinished THEN
                RAISE EXCEPTION 'the account has % unfinished tasks (MAX_QUEUED_TASKS is %)',
                                unfinished, max_unfinished
                      USING ERRCODE = 'UQ002';
            END IF;
            RETURN true;
        END
        $$;
        """
    )
    op.execute(_insert_task())
    op.execute(_create_task())


def _insert_task() -> str:
    """Migration 0015's ``insert_task``, counting the account's unfinished tasks first."""
    return f"""
        CREATE FUNCTION insert_task({_TASK_PARAMETERS}) RETURNS TABLE ({_CREATION._CREATED})
        LANGUAGE plpgsql AS $$
        #variable_conflict use_column
        BEGIN
            RETURN QUERY
            WITH number AS (
                -- The tasks the account created less those that ended: its unfinished ones,
                -- checked again on the row's newest version when a concurrent creation held it.
                UPDATE accounts SET task_seq = task_seq + 1
                 WHERE id = p_account_id
                   AND queued_tasks_within(
                           task_seq - COALESCE((SELECT ended FROM account_tasks_ended
                                                 WHERE account_id = p_account_id), 0),
                           p_max_unfinished)
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


def _create_task() -> str:
    """Migration 0018's ``create_task``, passing the limit on to ``insert_task``: another name,
    as one more argument would make a call of the previous release's ambiguous (its last
    arguments are optional)."""
    inout = ", ".join(
        f"INOUT {column.strip()} DEFAULT NULL" for column in _CREATION._CREATED.split(",")
    )
    return f"""
        CREATE PROCEDURE create_task_within(
            {_TASK_PARAMETERS}, p_actor text, p_action text, p_target text, p_detail jsonb,
            {inout})
        LANGUAGE plpgsql AS $$
        BEGIN
            -- The audit entry's commit below is the durable one.
            PERFORM set_config('synchronous_commit', 'off', true);
            SELECT * INTO id, task_number, handler, notes, result, trajectory_id, attempts,
                          created_at, updated_at, started_at, completed_at, failed_at,
                          canceled_at, files
              FROM insert_task({_ARGUMENTS});
            COMMIT;
            INSERT INTO audit_log (account_id, actor, action, target, detail)
            VALUES (p_account_id, p_actor, p_action, p_target,
                    COALESCE(p_detail, '{{}}'::jsonb) || jsonb_build_object('task_id', id));
        END
        $$
        """


def downgrade() -> None:
    op.execute(
        f"""
        DROP PROCEDURE create_task_within;
        DROP FUNCTION insert_task({_TASK_TYPES});
        DROP FUNCTION queued_tasks_within(bigint, bigint);
        DROP TRIGGER tasks_unfinished_deleted ON tasks;
        DROP TRIGGER tasks_started_again ON tasks;
        DROP TRIGGER tasks_ended ON tasks;
        DROP FUNCTION count_task_end();
        DROP TABLE account_tasks_ended;
        """
    )
