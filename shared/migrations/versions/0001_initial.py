"""Initial schema: accounts, keys, portals, credentials, SOPs, tasks, trajectories, webhooks.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE accounts (
            id              bigserial PRIMARY KEY,
            name            text NOT NULL,
            task_seq        integer NOT NULL DEFAULT 0,
            created_at      timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE api_keys (
            id              bigserial PRIMARY KEY,
            account_id      bigint NOT NULL REFERENCES accounts(id),
            prefix          text NOT NULL UNIQUE,
            digest          text NOT NULL,
            name            text,
            created_at      timestamptz NOT NULL DEFAULT now(),
            revoked_at      timestamptz
        );

        -- Portals an account registered itself; the sandbox portal is built in.
        CREATE TABLE portals (
            account_id      bigint NOT NULL REFERENCES accounts(id),
            name            text NOT NULL,
            base_url        text NOT NULL,
            created_at      timestamptz NOT NULL DEFAULT now(),
            updated_at      timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (account_id, name)
        );

        -- Username in clear (it is listed); password and TOTP secret only as Fernet tokens.
        CREATE TABLE portal_credentials (
            account_id      bigint NOT NULL REFERENCES accounts(id),
            portal          text NOT NULL,
            username        text NOT NULL,
            secret_token    bytea NOT NULL,
            created_at      timestamptz NOT NULL DEFAULT now(),
            updated_at      timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (account_id, portal)
        );

        -- Every SOP version ever run. Built-in ones have no account and are keyed by digest.
        CREATE TABLE sops (
            id              bigserial PRIMARY KEY,
            account_id      bigint REFERENCES accounts(id),
            task_type       text NOT NULL,
            version         integer NOT NULL,
            body            text NOT NULL,
            digest          text NOT NULL,
            created_at      timestamptz NOT NULL DEFAULT now()
        );
        CREATE UNIQUE INDEX sops_account_version ON sops (account_id, task_type, version)
            WHERE account_id IS NOT NULL;
        CREATE UNIQUE INDEX sops_builtin_digest ON sops (task_type, digest)
            WHERE account_id IS NULL;

        CREATE TABLE tasks (
            id                  bigserial PRIMARY KEY,
            account_id          bigint NOT NULL REFERENCES accounts(id),
            task_number         integer NOT NULL,
            type                text NOT NULL,
            status              text NOT NULL DEFAULT 'pending',
            handler             text NOT NULL DEFAULT 'agent',
            title               text NOT NULL,
            instructions        text NOT NULL,
            sop_id              bigint NOT NULL REFERENCES sops(id),
            data                text,
            inputs              jsonb NOT NULL DEFAULT '{}'::jsonb,
            notes               text,
            result              jsonb,
            trajectory_id       uuid NOT NULL DEFAULT gen_random_uuid(),
            attempts            integer NOT NULL DEFAULT 0,
            lease_expires_at    timestamptz,
            claimed_by          text,
            enqueued_at         timestamptz,
            irreversible_step   text,
            irreversible_at     timestamptz,
            input_requested_at  timestamptz,
            input_token         bytea,
            cancel_requested_at timestamptz,
            created_at          timestamptz NOT NULL DEFAULT now(),
            updated_at          timestamptz NOT NULL DEFAULT now(),
            started_at          timestamptz,
            completed_at        timestamptz,
            failed_at           timestamptz,
            canceled_at         timestamptz,
            UNIQUE (account_id, task_number)
        );
        CREATE INDEX tasks_account_id_desc ON tasks (account_id, id DESC);
        CREATE INDEX tasks_unfinished ON tasks (status)
            WHERE status IN ('pending', 'dispatching', 'running', 'waiting_for_input');

        CREATE TABLE task_files (
            id              bigserial PRIMARY KEY,
            task_id         bigint NOT NULL REFERENCES tasks(id),
            filename        text NOT NULL,
            content_type    text NOT NULL,
            size_bytes      integer NOT NULL,
            content         bytea NOT NULL,
            created_at      timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX task_files_task ON task_files (task_id);

        CREATE TABLE artifacts (
            id              bigserial PRIMARY KEY,
            account_id      bigint NOT NULL REFERENCES accounts(id),
            task_id         bigint NOT NULL REFERENCES tasks(id),
            content_type    text NOT NULL,
            content         bytea NOT NULL,
            created_at      timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE trajectory_steps (
            id              bigserial PRIMARY KEY,
            task_id         bigint NOT NULL REFERENCES tasks(id),
            attempt         integer NOT NULL,
            seq             integer NOT NULL,
            name            text NOT NULL,
            status          text NOT NULL,
            message         text NOT NULL DEFAULT '',
            started_at      timestamptz NOT NULL,
            duration_ms     integer NOT NULL,
            artifact_id     bigint REFERENCES artifacts(id)
        );
        CREATE INDEX trajectory_steps_task ON trajectory_steps (task_id, id);

        -- One endpoint per account. Secrets are Fernet tokens; the previous one stays valid
        -- until previous_secret_expires_at so receivers can rotate without dropping messages.
        CREATE TABLE webhook_endpoints (
            account_id                  bigint PRIMARY KEY REFERENCES accounts(id),
            url                         text,
            enabled                     boolean NOT NULL DEFAULT true,
            disabled_reason             text,
            secret_token                bytea NOT NULL,
            previous_secret_token       bytea,
            previous_secret_expires_at  timestamptz,
            consecutive_failures        integer NOT NULL DEFAULT 0,
            failing_since               timestamptz,
            last_success_at             timestamptz,
            circuit_open_until          timestamptz,
            created_at                  timestamptz NOT NULL DEFAULT now(),
            updated_at                  timestamptz NOT NULL DEFAULT now()
        );

        -- The outbox. A row is written in the same transaction as the state it reports.
        CREATE TABLE webhook_messages (
            id              bigserial PRIMARY KEY,
            msg_id          text NOT NULL UNIQUE,
            account_id      bigint NOT NULL REFERENCES accounts(id),
            task_id         bigint REFERENCES tasks(id),
            event           text NOT NULL,
            payload         jsonb NOT NULL,
            status          text NOT NULL DEFAULT 'pending',
            attempts        integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz,
            locked_until    timestamptz,
            last_attempt_at timestamptz,
            delivered_at    timestamptz,
            failed_at       timestamptz,
            created_at      timestamptz NOT NULL DEFAULT now(),
            updated_at      timestamptz NOT NULL DEFAULT now()
        );
        CREATE UNIQUE INDEX webhook_messages_one_finish ON webhook_messages (task_id, event)
            WHERE event = 'task_finished';
        CREATE INDEX webhook_messages_due ON webhook_messages (next_attempt_at)
            WHERE status = 'pending';
        CREATE INDEX webhook_messages_account ON webhook_messages (account_id, id DESC);

        CREATE TABLE webhook_attempts (
            id              bigserial PRIMARY KEY,
            message_id      bigint NOT NULL REFERENCES webhook_messages(id),
            attempted_at    timestamptz NOT NULL DEFAULT now(),
            url             text NOT NULL,
            status_code     integer,
            latency_ms      integer NOT NULL,
            error_class     text,
            response_body   text
        );
        CREATE INDEX webhook_attempts_message ON webhook_attempts (message_id, id);

        -- Stripe-style idempotency for POST /tasks, kept 24 hours.
        CREATE TABLE idempotency_keys (
            account_id      bigint NOT NULL REFERENCES accounts(id),
            key             text NOT NULL,
            request_digest  text NOT NULL,
            response_status integer NOT NULL,
            response_body   jsonb NOT NULL,
            created_at      timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (account_id, key)
        );
        """
    )
