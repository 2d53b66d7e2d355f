"""The SQL of runs and steps (:mod:`.run_store` runs it): the reads, the claim, the
fenced step upserts and the finish, built once per database and kept.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite

from .records import dumps
from .schema import runs, signals, steps

RUN_BY_KEY = sa.select(runs.c.id).where(
    runs.c.namespace == sa.bindparam("p_ns"), runs.c.idempotency_key == sa.bindparam("p_key")
)
_MAX_SIGNAL = sa.select(sa.func.coalesce(sa.func.max(signals.c.id), 0))
GET_RUN = sa.select(runs).where(
    runs.c.id == sa.bindparam("p_run"), runs.c.namespace == sa.bindparam("p_ns")
)
GET_STEPS = (
    sa.select(steps)
    .where(steps.c.run_id == sa.bindparam("p_run"))
    .order_by(sa.func.coalesce(steps.c.started_at, 0))
)

HEX = re.compile(r"[0-9a-f]+")
LIST_COLS = (runs.c.id, runs.c.workflow_name, runs.c.status, runs.c.created_at,
             runs.c.started_at, runs.c.ended_at, runs.c.error, runs.c.failed_block,
             runs.c.parent_run_id, runs.c.parent_block_id, runs.c.forked_from)  # fmt: skip
"""The columns of a runs list row: no input, outputs, workflow or steps."""


def id_prefix_select(prefix: str) -> sa.Select[Any]:
    """The ids and workflow names of the namespace's runs whose id starts with the hex
    ``prefix`` (run ids are UUID hex), newest first, at most 11 (enough to say
    "ambiguous" and list ten): a primary key range, as hex sorts alike in any collation."""
    assert HEX.fullmatch(prefix), prefix
    return (
        sa.select(runs.c.id, runs.c.workflow_name)
        .where(runs.c.namespace == sa.bindparam("p_ns"), runs.c.id >= prefix,
               runs.c.id < f"{prefix}g")
        .order_by(runs.c.created_at.desc())
        .limit(11)
    )  # fmt: skip


def reused_steps() -> sa.ScalarSelect[Any]:
    """How many of a run's steps ended before the run was created: steps a fork
    (``kit.fork``) copied from the run it forked."""
    return (
        sa.select(sa.func.count())
        .where(steps.c.run_id == runs.c.id, steps.c.ended_at < runs.c.created_at)
        .scalar_subquery()
    )


def list_select(
    status: str | None, workflow: str | None, after: float | None, before: float | None
) -> sa.Select[Any]:
    """The namespace's runs list (:data:`LIST_COLS` and ``reused``), newest first,
    filtered by status, workflow name and creation time (``after`` <= t < ``before``)."""
    q = sa.select(*LIST_COLS, reused_steps().label("reused"))
    q = q.where(runs.c.namespace == sa.bindparam("p_ns"))
    if status:
        q = q.where(runs.c.status == status)
    if workflow:
        q = q.where(runs.c.workflow_name == workflow)
    if after is not None:
        q = q.where(runs.c.created_at >= after)
    if before is not None:
        q = q.where(runs.c.created_at < before)
    return q.order_by(runs.c.created_at.desc()).limit(sa.bindparam("p_limit"))


def copy_steps(to_run: str, from_run: str, block_ids: Sequence[str]) -> sa.Insert:
    cols = ["block_id", "type", "status", "attempt", "output_json", "started_at", "ended_at",
            "params_json"]  # fmt: skip
    src = sa.select(sa.literal(to_run), *(steps.c[n] for n in cols)).where(
        steps.c.run_id == from_run,
        steps.c.status == "completed",
        steps.c.block_id.in_(list(block_ids)),
    )
    return steps.insert().from_select(["run_id", *cols], src)


def due_conditions(capable: sa.ColumnElement[bool]) -> list[sa.ColumnElement[bool]]:
    """Runs this worker may take now, as three conditions that each match one range
    of ``ix_thodare_runs_due``: new, woken, or whose lease ran out elsewhere."""
    mine = (runs.c.namespace == sa.bindparam("p_ns"), capable)
    return [
        sa.and_(*mine, runs.c.status == "pending"),
        sa.and_(*mine, runs.c.status == "waiting", runs.c.wake_at <= sa.bindparam("p_now")),
        sa.and_(
            *mine,
            runs.c.status == "running",
            runs.c.lease_expires_at < sa.bindparam("p_now"),
            runs.c.lease_owner != sa.bindparam("p_owner"),  # never what it walks
        ),
    ]


def _memo(is_sqlite: bool) -> sa.Label[Any]:
    """A run's ended steps as one JSON value ``[[block_id, status, output_json], …]``:
    the claim brings them in the same round trip. The items (``block[i]``) of a
    ``for_each`` step that completed are left out: its own row holds every output."""
    cols = (steps.c.block_id, steps.c.status, steps.c.output_json)
    agg = (sa.func.json_group_array(sa.func.json_array(*cols)) if is_sqlite
           else sa.func.json_agg(sa.func.json_build_array(*cols)))  # fmt: skip
    ended = sa.select(agg).where(  # an OR, not IN: a list in RETURNING stays unrendered
        steps.c.run_id == runs.c.id,
        sa.or_(steps.c.status == "completed", steps.c.status == "failed"),
        sa.text(_NOT_DONE_ITEM_SQLITE if is_sqlite else _NOT_DONE_ITEM_PG),
    )
    return ended.scalar_subquery().label("memo")


# Not an item row of a for_each step whose own row completed. Text, with every column
# qualified: SQLAlchemy renders columns unqualified in RETURNING, where the two
# thodare_steps of the EXISTS would be ambiguous.
_NOT_DONE_ITEM = (
    "NOT ({find}(thodare_steps.block_id, '[') > 0 AND EXISTS (SELECT 1 FROM thodare_steps AS "
    "each_step WHERE each_step.run_id = thodare_steps.run_id AND each_step.block_id = {step} "
    "AND each_step.status = 'completed'))"
)
_NOT_DONE_ITEM_SQLITE = _NOT_DONE_ITEM.format(
    find="instr", step="substr(thodare_steps.block_id, 1, instr(thodare_steps.block_id, '[') - 1)"
)
_NOT_DONE_ITEM_PG = _NOT_DONE_ITEM.format(
    find="strpos", step="split_part(thodare_steps.block_id, '[', 1)"
)


_TAKEN = dict(
    status="running", lease_owner=sa.bindparam("p_owner"),
    lease_expires_at=sa.bindparam("p_until"), wake_requested=False,
    updated_at=sa.bindparam("p_now"),
    started_at=sa.func.coalesce(runs.c.started_at, sa.bindparam("p_now")),
)  # fmt: skip


def claim_statement(is_sqlite: bool, capable: sa.ColumnElement[bool]) -> Any:
    """One ``UPDATE … RETURNING`` of the due runs, oldest first, with their ended steps.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` on one OR of the conditions (a bitmap
    OR of index ranges). SQLite (one writer at a time) cannot use an index for an
    OR across statuses: the conditions are a UNION ALL, each an index range.
    """
    if is_sqlite:
        each = sa.union_all(*(sa.select(runs.c.id, runs.c.created_at).where(d)
                              for d in due_conditions(capable))).subquery("due")  # fmt: skip
        pick = sa.select(each.c.id).order_by(each.c.created_at)
    else:
        pick = (
            sa.select(runs.c.id).where(sa.or_(*due_conditions(capable))).order_by(runs.c.created_at)
        )
        pick = pick.with_for_update(skip_locked=True)
    pick = pick.limit(sa.bindparam("p_limit"))
    # The picked ids are a MATERIALIZED CTE, run once: as a subquery PostgreSQL may run
    # it again for each row (a rescan), each time skipping the rows just locked, and so
    # take more than the limit. The outer WHERE repeats the conditions: when a concurrent
    # claim changed a picked row first, PostgreSQL rechecks them on its newest version.
    picked = pick.cte("picked")
    if not is_sqlite:
        picked = picked.prefix_with("MATERIALIZED")
    take = runs.update().where(runs.c.id == picked.c.id, sa.or_(*due_conditions(capable)))
    take = take.values(**_TAKEN, claimed_from=runs.c.status)
    return take.returning(*runs.c, _memo(is_sqlite))


def next_due_select(capable: sa.ColumnElement[bool]) -> sa.Select[Any]:
    """When the next run becomes due: the earliest of three index-ordered
    lookups (a pending run, a timer, another worker's lease), not a scan."""
    mine = (runs.c.namespace == sa.bindparam("p_ns"), capable)
    firsts = [
        sa.select(col).where(*mine, *where).order_by(col).limit(1).scalar_subquery()
        for col, where in (
            (runs.c.wake_at, (runs.c.status == "pending",)),
            (runs.c.wake_at, (runs.c.status == "waiting", runs.c.wake_at.is_not(None))),
            (runs.c.lease_expires_at, (runs.c.status == "running",
                                       runs.c.lease_owner != sa.bindparam("p_owner"))),
        )
    ]  # fmt: skip
    each = sa.union_all(*(sa.select(f.label("at")) for f in firsts)).subquery("firsts")
    return sa.select(sa.func.min(each.c.at))


def capable_of(is_sqlite: bool) -> sa.ColumnElement[bool]:
    """A run whose every connector type is in ``p_types`` (a JSON list), or one from
    before runs recorded their needs."""
    if is_sqlite:
        need = sa.func.json_each(runs.c.needs).table_valued("value").alias("need")
        have = sa.func.json_each(sa.bindparam("p_types")).table_valued("value").alias("have")
        lacking = sa.exists().where(need.c.value.not_in(sa.select(have.c.value)))
        return sa.or_(runs.c.needs.is_(None), ~lacking)
    jsonb = sa.dialects.postgresql.JSONB
    have_all = sa.cast(runs.c.needs, jsonb).op("<@")(sa.cast(sa.bindparam("p_types"), jsonb))
    return sa.or_(runs.c.needs.is_(None), have_all)


@functools.lru_cache(maxsize=128)  # the many runs of one workflow: parsed once
def needs_of(workflow_json: str) -> str:
    """The connector types a run of this workflow needs: a sorted JSON list."""
    blocks = json.loads(workflow_json).get("blocks") or []
    return dumps(sorted({b["type"] for b in blocks if b.get("enabled", True)}))


FINISH = (
    runs.update()
    .where(runs.c.id == sa.bindparam("p_run"), runs.c.lease_owner == sa.bindparam("p_owner"),
           runs.c.status == "running")
    .values(
        status=sa.bindparam("p_status"), outputs_json=sa.bindparam("p_outputs"),
        error=sa.bindparam("p_error"), failed_block=sa.bindparam("p_failed"),
        ended_at=sa.bindparam("p_now"), updated_at=sa.bindparam("p_now"),
        lease_owner=None, lease_expires_at=None, wake_at=None,
    )
)  # fmt: skip
LEASED = sa.exists().where(
    runs.c.id == sa.bindparam("p_run"),
    runs.c.lease_owner == sa.bindparam("p_owner"),
    runs.c.status == "running",
)
STEP_COLS = ("run_id", "block_id", "type", "status", "attempt", "output_json", "error",
             "started_at", "ended_at", "params_json")  # fmt: skip
INSERT_RUN = runs.insert().values(
    {c.name: sa.bindparam(c.name) for c in runs.c if c.name != "signal_horizon"}
    | {"signal_horizon": _MAX_SIGNAL.scalar_subquery()}
)
START_RUN = INSERT_RUN.returning(runs.c.signal_horizon)  # the one value not known before


@functools.lru_cache(maxsize=16)
def step_markers(n: int) -> Any:
    """Insert ``n`` new step rows (``{column}{i}`` parameters), unfenced: the start
    markers a run's insert carries, in the insert's own transaction."""
    return steps.insert().values(
        [{c: sa.bindparam(f"{c}{i}") for c in STEP_COLS} for i in range(n)]
    )


@functools.lru_cache(maxsize=16)
def pg_start_run(n: int) -> Any:
    """PostgreSQL: a run's insert with ``n`` start markers, as one statement (the
    markers' foreign key is checked when the statement ends, the run inserted)."""
    return START_RUN.add_cte(step_markers(n).cte("marked")) if n else START_RUN


@functools.lru_cache(maxsize=64)
def pg_finish(end_channel: str, n: int) -> Any:
    """PostgreSQL: a run's finish with its last ``n`` step rows and the announcement of
    its end on ``end_channel``, as one statement."""
    done = FINISH.returning(runs.c.id).cte("done")
    finish = sa.select(sa.func.pg_notify(end_channel, done.c.id)).select_from(done)
    return finish.add_cte(step_upsert(False, n).cte("ended")) if n else finish


@functools.lru_cache(maxsize=64)
def step_upsert(is_sqlite: bool, n: int) -> Any:
    """Upsert ``n`` step rows in one statement that lands only while the writer holds
    the run's lease (the fence is in the statement). A start marker (status
    ``running``) counts an attempt; an end keeps the highest attempt seen."""
    rows = [
        sa.select(*(sa.cast(sa.bindparam(f"{c}{i}"), steps.c[c].type).label(c)
                    for c in STEP_COLS))
        for i in range(n)
    ]  # fmt: skip
    src = (sa.union_all(*rows) if n > 1 else rows[0]).subquery("v")
    new = (sa.dialects.sqlite.insert if is_sqlite else sa.dialects.postgresql.insert)(steps)
    ins = new.from_select(list(STEP_COLS), sa.select(*src.c).where(LEASED))
    ex = ins.excluded
    attempt = sa.case(
        (ex.status == "running", steps.c.attempt + 1),
        (steps.c.attempt >= ex.attempt, steps.c.attempt),
        else_=ex.attempt,
    )
    set_ = {c: ex[c] for c in ("type", "status", "output_json", "error", "ended_at")}
    params = sa.func.coalesce(ex.params_json, steps.c.params_json)  # an end without: kept
    return ins.on_conflict_do_update(
        index_elements=[steps.c.run_id, steps.c.block_id],
        set_={**set_, "attempt": attempt, "params_json": params},
    ).returning(steps.c.block_id, steps.c.attempt)
