"""Workflow definition versions (history and undo).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "thodare_definitions",
        sa.Column("namespace", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("workflow_json", sa.Text, nullable=False),
        sa.Column("source", sa.Text),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("undone", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("thodare_definitions")
