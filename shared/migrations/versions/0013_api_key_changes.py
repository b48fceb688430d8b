"""API key changes are announced: every UPDATE, DELETE or TRUNCATE of api_keys NOTIFYs the
``api_keys`` channel, on which the API's processes forget the keys they remembered.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION announce_api_key_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('api_keys', '');  -- sent at commit; nothing if rolled back
            RETURN NULL;
        END
        $$;
        -- A new key needs no announcement: nothing can remember it yet.
        CREATE TRIGGER api_key_changed AFTER UPDATE OR DELETE ON api_keys
            FOR EACH STATEMENT EXECUTE FUNCTION announce_api_key_change();
        CREATE TRIGGER api_keys_truncated AFTER TRUNCATE ON api_keys
            FOR EACH STATEMENT EXECUTE FUNCTION announce_api_key_change();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TRIGGER api_keys_truncated ON api_keys;
        DROP TRIGGER api_key_changed ON api_keys;
        DROP FUNCTION announce_api_key_change();
        """
    )
