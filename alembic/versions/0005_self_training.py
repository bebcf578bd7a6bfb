"""self-training: unlabelled image sets and self-training jobs

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 07:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column],
        [f"{target}.id"],
        name=op.f(f"fk_{table}_{column}_{target}"),
        ondelete="CASCADE" if target != "augsearch_users" else None,
    )


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "augsearch_unlabelled_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("num_images", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _fk("augsearch_unlabelled_sets", "dataset_id", "augsearch_datasets"),
        _fk("augsearch_unlabelled_sets", "owner_id", "augsearch_users"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_augsearch_unlabelled_sets")),
    )
    with op.batch_alter_table("augsearch_unlabelled_sets", schema=None) as batch_op:
        for column in ("dataset_id", "owner_id"):
            batch_op.create_index(
                batch_op.f(f"ix_augsearch_unlabelled_sets_{column}"), [column], unique=False
            )
    op.create_table(
        "augsearch_self_trainings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("search_id", sa.Integer(), nullable=False),
        sa.Column("unlabelled_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("trainings", sa.Integer(), nullable=False),
        sa.Column("best_step", sa.Integer(), nullable=True),
        sa.Column("best_value", sa.Float(), nullable=True),
        sa.Column("teacher_value", sa.Float(), nullable=True),
        sa.Column("checkpoint_path", sa.Text(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("card", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        _fk("augsearch_self_trainings", "search_id", "augsearch_searches"),
        _fk("augsearch_self_trainings", "unlabelled_id", "augsearch_unlabelled_sets"),
        _fk("augsearch_self_trainings", "owner_id", "augsearch_users"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_augsearch_self_trainings")),
    )
    with op.batch_alter_table("augsearch_self_trainings", schema=None) as batch_op:
        for column in ("search_id", "unlabelled_id", "owner_id", "state"):
            batch_op.create_index(
                batch_op.f(f"ix_augsearch_self_trainings_{column}"), [column], unique=False
            )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("augsearch_self_trainings", schema=None) as batch_op:
        for column in ("search_id", "unlabelled_id", "owner_id", "state"):
            batch_op.drop_index(batch_op.f(f"ix_augsearch_self_trainings_{column}"))
    op.drop_table("augsearch_self_trainings")
    with op.batch_alter_table("augsearch_unlabelled_sets", schema=None) as batch_op:
        for column in ("dataset_id", "owner_id"):
            batch_op.drop_index(batch_op.f(f"ix_augsearch_unlabelled_sets_{column}"))
    op.drop_table("augsearch_unlabelled_sets")
