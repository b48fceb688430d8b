"""The operator console's users and their sessions, and the audit log.

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- A person who signs in to the console: a member of one account. An email belongs to
        -- one account, so the sign-in form needs no account picker. Until the invite is used
        -- the password is NULL; only the invite token's digest is kept.
        CREATE TABLE users (
            id                bigserial PRIMARY KEY,
            account_id        bigint NOT NULL REFERENCES accounts(id),
            email             text NOT NULL,
            role              text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
            password_hash     text,
            invite_digest     text UNIQUE,
            invite_expires_at timestamptz,
            created_at        timestamptz NOT NULL DEFAULT now(),
            updated_at        timestamptz NOT NULL DEFAULT now(),
            disabled_at       timestamptz
        );
        CREATE UNIQUE INDEX users_email ON users (lower(email));
        CREATE INDEX users_account ON users (account_id, id);

        -- A signed-in browser: the cookie holds a random token; only its digest is stored, so
        -- a copy of this table signs nobody in. Each session has its own CSRF token.
        CREATE TABLE user_sessions (
            id           bigserial PRIMARY KEY,
            user_id      bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            token_digest text NOT NULL UNIQUE,
            csrf_token   text NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            expires_at   timestamptz NOT NULL
        );
        CREATE INDEX user_sessions_user ON user_sessions (user_id);

        -- Who did what to which thing, and when: every console action and every mutating API
        -- call. Append-only.
        CREATE TABLE audit_log (
            id          bigserial PRIMARY KEY,
            account_id  bigint NOT NULL REFERENCES accounts(id),
            actor       text NOT NULL,
            action      text NOT NULL,
            target      text NOT NULL,
            detail      jsonb,
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX audit_log_account ON audit_log (account_id, id);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE audit_log; DROP TABLE user_sessions; DROP TABLE users")
