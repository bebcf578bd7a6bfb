"""token expiry

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Tokens issued before expiry existed keep working this long after the upgrade (the default
# lifetime, ``Settings.token_lifetime_days``), so no client is locked out at once.
EXISTING_TOKENS_LIFETIME = timedelta(days=90)


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("augsearch_api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    tokens = sa.table("augsearch_api_tokens", sa.column("expires_at", sa.DateTime(timezone=True)))
    op.execute(tokens.update().values(expires_at=datetime.now(UTC) + EXISTING_TOKENS_LIFETIME))
    with op.batch_alter_table("augsearch_api_tokens", schema=None) as batch_op:
        batch_op.alter_column(
            "expires_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("augsearch_api_tokens", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
