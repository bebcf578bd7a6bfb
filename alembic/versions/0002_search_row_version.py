"""search row version (optimistic concurrency of state changes)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("augsearch_searches", schema=None) as batch_op:
        # Existing rows start at version 1, as new ones do.
        batch_op.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("augsearch_searches", schema=None) as batch_op:
        batch_op.drop_column("version")
