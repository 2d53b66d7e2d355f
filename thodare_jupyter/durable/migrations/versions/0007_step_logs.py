"""Step logs: what each attempt of a step printed or logged (masked, capped).

One row an attempt that wrote anything, written in the transaction of the step's
end (or of its retry's start); steps that write nothing add no row and no statement.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "thodare_step_logs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "run_id",
            sa.String(64),
            sa.ForeignKey("thodare_runs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("block_id", sa.String(10240), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("lines_json", sa.Text, nullable=False),
        sa.Column("cut_bytes", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_thodare_step_logs_run", "thodare_step_logs", ["run_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_thodare_step_logs_run", table_name="thodare_step_logs")
    op.drop_table("thodare_step_logs")
