"""A claim returns the run in one statement: the status it was claimed from is kept.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.add_column("thodare_runs", sa.Column("claimed_from", sa.String(16)))


def downgrade() -> None:
    op.drop_column("thodare_runs", "claimed_from")
