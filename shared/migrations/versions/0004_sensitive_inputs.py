"""Sensitive task inputs: kept only encrypted, beside the plain inputs.

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- A Fernet token (MultiFernet, ENCRYPTION_KEYS) of the JSON object of the task's
        -- sensitive inputs, by name. `data` and `inputs` hold them only as ***.
        ALTER TABLE tasks ADD COLUMN secret_inputs bytea;
        """
    )
