"""Resolved params: a step row keeps the params its last attempt ran with (masked).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.add_column("thodare_steps", sa.Column("params_json", sa.Text()))


def downgrade() -> None:
    op.drop_column("thodare_steps", "params_json")
