"""The tables of the durable runtime (SQLAlchemy Core). Migrations live in ``migrations/``.

Times are UNIX seconds (floats). Every table carries ``namespace``; every
query filters on it, so tenants never see each other's runs or signals.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

ACTIVE = "status IN ('pending', 'waiting', 'running')"  # runs that have not ended
CHILDREN = "parent_run_id IS NOT NULL"  # child runs (of run_workflow steps)
WAITING = "status = 'waiting'"

runs = Table(
    "thodare_runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("namespace", String(128), nullable=False),
    Column("workflow_name", String(256)),
    Column("workflow_json", Text, nullable=False),
    Column("input_json", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("idempotency_key", String(512)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("deadline_at", Float),
    Column("lease_owner", String(128)),
    Column("lease_expires_at", Float),
    Column("wake_at", Float),
    Column("wake_requested", Boolean, nullable=False, default=False),
    Column("signal_horizon", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("failed_block", String(512)),
    Column("outputs_json", Text),
    Column("needs", Text),  # JSON list of the connector types the run uses; NULL: any worker
    Column("claimed_from", String(16)),  # the status before the last claim
    # A child run (``run_workflow``): the run and block that started it; one child per both.
    Column("parent_run_id", String(64)),
    Column("parent_block_id", String(10240)),
    Column("forked_from", String(64)),  # a fork (``kit.fork``): the run it reused steps of
    UniqueConstraint("namespace", "idempotency_key", name="uq_thodare_runs_idem"),
    # The indexes match the queries, so their cost does not grow with the finished runs
    # (migration 0006 says why each exists; tests/test_history_cost.py EXPLAINs them).
    # Claims, the next due time, signal wake-ups, held counts, releases: the active runs
    # by status, waiting ones by wake time. PostgreSQL keeps only active runs in it.
    Index(
        "ix_thodare_runs_due",
        "namespace",
        "status",
        "wake_at",
        postgresql_where=sa.text(ACTIVE),
    ),
    Index("ix_thodare_runs_list", "namespace", "created_at"),  # the runs list, newest first
    Index("ix_thodare_runs_status_list", "namespace", "status", "created_at"),  # ... by status
    # A parent's children (describe, cancel cascade); a parent step never starts two.
    # Child runs only: a run's insert writes no entry for the others (migration 0012).
    Index(
        "ix_thodare_runs_parent",
        "parent_run_id",
        "parent_block_id",
        unique=True,
        sqlite_where=sa.text(CHILDREN),
        postgresql_where=sa.text(CHILDREN),
    ),
)

steps = Table(
    "thodare_steps",
    metadata,
    Column(
        "run_id", String(64), ForeignKey("thodare_runs.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("block_id", String(10240), primary_key=True),
    Column("type", String(256), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempt", Integer, nullable=False, default=0),
    Column("output_json", Text),
    Column("error", Text),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("wait_event", String(512)),
    Column("wait_key", String(512)),
    Column("wake_at", Float),
    Column("params_json", Text),  # the params the last attempt ran with, masked (0010)
    # A signal wakes the steps waiting for its event (and key): only waiting steps.
    Index(
        "ix_thodare_steps_waiting",
        "wait_event",
        "wait_key",
        postgresql_where=sa.text(WAITING),
        sqlite_where=sa.text(WAITING),
    ),
)

signals = Table(
    "thodare_signals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("namespace", String(128), nullable=False),
    Column("event", String(512), nullable=False),
    Column("correlation_key", String(512)),
    Column("payload_json", Text, nullable=False),
    Column("idempotency_key", String(512)),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("namespace", "idempotency_key", name="uq_thodare_signals_idem"),
    # A run takes the oldest signal of its event after its horizon: in id order.
    Index("ix_thodare_signals_event_id", "namespace", "event", "id"),
)

consumptions = Table(
    "thodare_signal_consumptions",
    metadata,
    Column(
        "signal_id", Integer, ForeignKey("thodare_signals.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("run_id", String(64), primary_key=True),
    Column("block_id", String(10240), nullable=False),
    Index("ix_thodare_consumptions_run", "run_id"),  # the signals a run already took
)

schedules = Table(
    "thodare_schedules",
    metadata,
    Column("namespace", String(128), primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("workflow_name", String(256)),
    Column("workflow_json", Text, nullable=False),
    Column("input_json", Text, nullable=False),
    Column("cron", String(256), nullable=False),
    Column("tz", String(64), nullable=False),
    Column("missed", String(8), nullable=False),
    Column("until_at", Float),
    Column("status", String(16), nullable=False),
    Column("next_at", Float),
    Column("last_tick_at", Float),
    Column("last_run_id", String(64)),
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_thodare_schedules_due", "namespace", "status", "next_at"),
)

definitions = Table(
    "thodare_definitions",
    metadata,
    Column("namespace", String(128), primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("workflow_json", Text, nullable=False),
    Column("source", Text),
    Column("origin", String(16), nullable=False),
    Column("note", Text),
    Column("undone", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
)

workers = Table(
    "thodare_workers",
    metadata,
    Column("namespace", String(128), primary_key=True),
    Column("id", String(128), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("connector_types", Text, nullable=False),  # JSON list, sorted
    Column("concurrency", Integer, nullable=False),
    Column("lease_s", Float, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
)

step_logs = Table(
    "thodare_step_logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("thodare_runs.id", ondelete="CASCADE"), nullable=False),
    Column("block_id", String(10240), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("lines_json", Text, nullable=False),  # JSON list of [at, stream, text], masked
    Column("cut_bytes", Integer, nullable=False, default=0),  # text over the cap, not kept
    Column("created_at", Float, nullable=False),
    Index("ix_thodare_step_logs_run", "run_id", "id"),  # a run's logs, in the order written
)

# Flow control (``define_connector(concurrency=, rate=)``), namespace-wide: a slot
# row for each attempt in flight, alive until ``expires_at`` (the holder's
# heartbeat extends it with its lease: a crashed worker's slots free themselves),
# and a token bucket per rate-limited connector type.
flow_slots = Table(
    "thodare_flow_slots",
    metadata,
    Column("namespace", String(128), primary_key=True),
    Column("type", String(256), primary_key=True),
    Column("holder", String(64), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("block_id", String(10240), nullable=False),
    Column("owner", String(128), nullable=False),
    Column("expires_at", Float, nullable=False),
)

flow_buckets = Table(
    "thodare_flow_buckets",
    metadata,
    Column("namespace", String(128), primary_key=True),
    Column("type", String(256), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("refilled_at", Float, nullable=False),
)
