"""checkpoint variants (compressed checkpoints: ONNX, int8, pruned)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 07:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "augsearch_checkpoint_variants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("search_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("sparsity", sa.Float(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("request", sa.String(length=100), nullable=False),
        sa.Column("artifact_id", sa.String(length=200), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("card", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["search_id"],
            ["augsearch_searches.id"],
            name=op.f("fk_augsearch_checkpoint_variants_search_id_augsearch_searches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_augsearch_checkpoint_variants")),
        sa.UniqueConstraint("request", name=op.f("uq_augsearch_checkpoint_variants_request")),
        sa.UniqueConstraint("search_id", "name", name="uq_augsearch_checkpoint_variants_name"),
    )
    with op.batch_alter_table("augsearch_checkpoint_variants", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_augsearch_checkpoint_variants_search_id"), ["search_id"], unique=False
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("augsearch_checkpoint_variants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_augsearch_checkpoint_variants_search_id"))
    op.drop_table("augsearch_checkpoint_variants")
