"""Flow control: connector slots in flight and token buckets, namespace-wide.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.create_table(
        "thodare_flow_slots",
        sa.Column("namespace", sa.String(128), primary_key=True),
        sa.Column("type", sa.String(256), primary_key=True),
        sa.Column("holder", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("block_id", sa.String(10240), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_table(
        "thodare_flow_buckets",
        sa.Column("namespace", sa.String(128), primary_key=True),
        sa.Column("type", sa.String(256), primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("refilled_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("thodare_flow_buckets")
    op.drop_table("thodare_flow_slots")
