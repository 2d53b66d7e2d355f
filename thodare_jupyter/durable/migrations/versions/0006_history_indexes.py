"""Indexes that match the queries: their cost does not grow with the finished runs.

With 1,000,000 finished and 100,000 parked runs (``tests/test_history_cost.py`` EXPLAINs
the SQL the store sends; ``bench/history.py`` measures throughput):

- ``ix_thodare_runs_due`` (namespace, status, wake_at) replaces ``ix_thodare_runs_claim``
  (same columns). The claim (one index range per arm of its OR: pending; waiting with
  ``wake_at <= now``; running with an expired lease), the next due time, the wake-up of
  signalled runs, a worker's held count and its release on shutdown (status 'running')
  read only active runs. PostgreSQL: a partial index of the runs that have not ended, so
  finished runs never enter it (and finishing a run adds no entry). SQLite: a full index
  (its planner cannot prove a partial index from the OR of the claim).
- ``ix_thodare_runs_list`` (namespace, created_at): the runs list, newest first, read
  backward from the newest row (was a scan and a sort of every run).
- ``ix_thodare_runs_status_list`` (namespace, status, created_at): the runs list of one
  status (e.g. the failed ones among a million completed), newest first.
- ``ix_thodare_steps_waiting`` (wait_event, wait_key) WHERE status = 'waiting' replaces
  ``ix_thodare_steps_wait`` (status, wait_event): a signal finds the steps waiting for its
  event and key (both databases: partial); completed steps never enter it.
- ``ix_thodare_signals_event_id`` (namespace, event, id) replaces
  ``ix_thodare_signals_event`` (namespace, event): a run takes the oldest signal of its
  event after its horizon in id order, without sorting the event's history (PostgreSQL;
  SQLite's index already ended with the rowid).
- ``ix_thodare_consumptions_run`` (run_id): the signals a run already took (the primary
  key starts with signal_id, so that lookup scanned every consumption).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

ACTIVE = "status IN ('pending', 'waiting', 'running')"
WAITING = "status = 'waiting'"


def upgrade() -> None:
    op.drop_index("ix_thodare_runs_claim", table_name="thodare_runs")
    op.drop_index("ix_thodare_steps_wait", table_name="thodare_steps")
    op.drop_index("ix_thodare_signals_event", table_name="thodare_signals")
    op.create_index(
        "ix_thodare_runs_due",
        "thodare_runs",
        ["namespace", "status", "wake_at"],
        postgresql_where=sa.text(ACTIVE),
    )
    op.create_index("ix_thodare_runs_list", "thodare_runs", ["namespace", "created_at"])
    op.create_index(
        "ix_thodare_runs_status_list", "thodare_runs", ["namespace", "status", "created_at"]
    )
    op.create_index(
        "ix_thodare_steps_waiting",
        "thodare_steps",
        ["wait_event", "wait_key"],
        postgresql_where=sa.text(WAITING),
        sqlite_where=sa.text(WAITING),
    )
    op.create_index("ix_thodare_signals_event_id", "thodare_signals", ["namespace", "event", "id"])
    op.create_index("ix_thodare_consumptions_run", "thodare_signal_consumptions", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_thodare_consumptions_run", table_name="thodare_signal_consumptions")
    op.drop_index("ix_thodare_signals_event_id", table_name="thodare_signals")
    op.drop_index("ix_thodare_steps_waiting", table_name="thodare_steps")
    op.drop_index("ix_thodare_runs_status_list", table_name="thodare_runs")
    op.drop_index("ix_thodare_runs_list", table_name="thodare_runs")
    op.drop_index("ix_thodare_runs_due", table_name="thodare_runs")
    op.create_index("ix_thodare_signals_event", "thodare_signals", ["namespace", "event"])
    op.create_index("ix_thodare_steps_wait", "thodare_steps", ["status", "wait_event"])
    op.create_index("ix_thodare_runs_claim", "thodare_runs", ["namespace", "status", "wake_at"])
