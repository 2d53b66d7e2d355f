"""A fork names the run it came from: ``thodare_runs.forked_from``.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    op.add_column("thodare_runs", sa.Column("forked_from", sa.String(64)))


def downgrade() -> None:
    op.drop_column("thodare_runs", "forked_from")
