"""Cron schedules.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "thodare_schedules",
        sa.Column("namespace", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("workflow_name", sa.String(256)),
        sa.Column("workflow_json", sa.Text, nullable=False),
        sa.Column("input_json", sa.Text, nullable=False),
        sa.Column("cron", sa.String(256), nullable=False),
        sa.Column("tz", sa.String(64), nullable=False),
        sa.Column("missed", sa.String(8), nullable=False),
        sa.Column("until_at", sa.Float),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("next_at", sa.Float),
        sa.Column("last_tick_at", sa.Float),
        sa.Column("last_run_id", sa.String(64)),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index(
        "ix_thodare_schedules_due", "thodare_schedules", ["namespace", "status", "next_at"]
    )


def downgrade() -> None:
    op.drop_table("thodare_schedules")
