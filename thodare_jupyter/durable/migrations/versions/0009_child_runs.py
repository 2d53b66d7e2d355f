"""Child runs (``run_workflow``): a run records the run and block that started it.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.add_column("thodare_runs", sa.Column("parent_run_id", sa.String(64)))
    op.add_column("thodare_runs", sa.Column("parent_block_id", sa.String(10240)))
    op.create_index(
        "ix_thodare_runs_parent", "thodare_runs", ["parent_run_id", "parent_block_id"], unique=True
    )


def downgrade() -> None:
    op.drop_index("ix_thodare_runs_parent", "thodare_runs")
    op.drop_column("thodare_runs", "parent_block_id")
    op.drop_column("thodare_runs", "parent_run_id")
