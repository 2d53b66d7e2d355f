"""Runs, steps, signals and signal consumptions.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "thodare_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("namespace", sa.String(128), nullable=False),
        sa.Column("workflow_name", sa.String(256)),
        sa.Column("workflow_json", sa.Text, nullable=False),
        sa.Column("input_json", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.String(512)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("ended_at", sa.Float),
        sa.Column("deadline_at", sa.Float),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_expires_at", sa.Float),
        sa.Column("wake_at", sa.Float),
        sa.Column("wake_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("signal_horizon", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
        sa.Column("failed_block", sa.String(512)),
        sa.Column("outputs_json", sa.Text),
        sa.UniqueConstraint("namespace", "idempotency_key", name="uq_thodare_runs_idem"),
    )
    op.create_index("ix_thodare_runs_claim", "thodare_runs", ["namespace", "status", "wake_at"])
    op.create_table(
        "thodare_steps",
        sa.Column(
            "run_id",
            sa.String(64),
            sa.ForeignKey("thodare_runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("block_id", sa.String(10240), primary_key=True),
        sa.Column("type", sa.String(256), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
        sa.Column("output_json", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("started_at", sa.Float),
        sa.Column("ended_at", sa.Float),
        sa.Column("wait_event", sa.String(512)),
        sa.Column("wait_key", sa.String(512)),
        sa.Column("wake_at", sa.Float),
    )
    op.create_index("ix_thodare_steps_wait", "thodare_steps", ["status", "wait_event"])
    op.create_table(
        "thodare_signals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("namespace", sa.String(128), nullable=False),
        sa.Column("event", sa.String(512), nullable=False),
        sa.Column("correlation_key", sa.String(512)),
        sa.Column("payload_json", sa.Text, nullable=False),
        sa.Column("idempotency_key", sa.String(512)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("namespace", "idempotency_key", name="uq_thodare_signals_idem"),
    )
    op.create_index("ix_thodare_signals_event", "thodare_signals", ["namespace", "event"])
    op.create_table(
        "thodare_signal_consumptions",
        sa.Column(
            "signal_id",
            sa.Integer,
            sa.ForeignKey("thodare_signals.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("block_id", sa.String(10240), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("thodare_signal_consumptions")
    op.drop_table("thodare_signals")
    op.drop_table("thodare_steps")
    op.drop_table("thodare_runs")
