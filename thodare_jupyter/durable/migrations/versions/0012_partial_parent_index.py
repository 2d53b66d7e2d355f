"""Only child runs are in ``ix_thodare_runs_parent``: every other run has no parent, and a
run's insert then writes one index fewer (its rows stay out of it).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"

_CHILDREN = sa.text("parent_run_id IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_thodare_runs_parent", "thodare_runs")
    op.create_index(
        "ix_thodare_runs_parent", "thodare_runs", ["parent_run_id", "parent_block_id"],
        unique=True, sqlite_where=_CHILDREN, postgresql_where=_CHILDREN,
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_thodare_runs_parent", "thodare_runs")
    op.create_index(
        "ix_thodare_runs_parent", "thodare_runs", ["parent_run_id", "parent_block_id"], unique=True
    )
