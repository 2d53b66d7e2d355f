"""A seeded fuzzer for ``apply_operations``: random workflows, op batches laced with hostile values.

A module, not a test file: :func:`fuzz` runs N batches and returns a :class:`FuzzReport`;
``tests/test_patch_fuzz.py`` runs a fast share and ``bench/fuzz_patch.py`` the full run. Each
batch mixes valid ops (adds with ``{{refs}}``, edits, deletes, connects, disconnects) with what a
hostile or broken model sends: ints over 4,300 digits, nesting 1,200 deep, self-containing lists,
objects whose ``__repr__`` raises, sets, bytes, NaN, tuples, non-str keys, ops that are not
objects, ids that are not strings, new ``{{env.X}}`` refs, ids that shadow a referenced name, and
hidden or user-only params. After every batch :func:`check` verifies the invariants: no
exception, input unchanged, the result validates and round-trips, ok == (no skips and no
issues), acyclic, every bad ref (disabled blocks too) reported, no hidden value (nor a hidden
name the ops did not send) in the feedback, no new env ref outside ``allow_env``, hidden and
user-only params neither set nor lost.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
from pydantic import BaseModel

from thodare_jupyter import (
    ApplyResult,
    Catalog,
    Hidden,
    SerializedWorkflow,
    UserOnly,
    apply_operations,
    define_connector,
)
from thodare_jupyter.ref_checks import check_refs
from thodare_jupyter.templates import env_refs
from thodare_jupyter.wire import AddOp, EditBlockOp


class VaultParams(BaseModel):
    query: str
    limit: int = 10
    vaultSecretKey: Hidden[str]
    vaultRegion: UserOnly[str] = "eu"


class VaultOut(BaseModel):
    rows: list[Any] = []
    count: int = 0


VAULT = define_connector(
    type="vault_query",
    params=VaultParams,
    outputs=VaultOut,
    run=lambda p: VaultOut(rows=[p.query], count=1),
    description="Query the vault.",
)
CATALOG = Catalog(VAULT)
TYPES = CATALOG.types()
HIDDEN = {c.type: sorted(c.hidden_params) for c in CATALOG}
VISIBLE_NAMES = {n for c in CATALOG for n, s in c.param_specs.items() if s.visibility != "hidden"}
HIDDEN_NAMES = sorted({n for names in HIDDEN.values() for n in names} - VISIBLE_NAMES)
"""Hidden names no connector shows: never in the feedback. A name hidden on one type
but visible on another (``url``: hidden on ``sql``, the address of ``http``) may be;
its hidden use is checked by :data:`HIDDEN_USES`."""
HIDDEN_USES = sorted(
    f"({t}) param '{n}'" for t, names in HIDDEN.items() for n in names if n in VISIBLE_NAMES
)
USER_ONLY = {
    c.type: sorted(n for n, s in c.param_specs.items() if s.visibility == "user-only")
    for c in CATALOG
}
HIDDEN_VALUE = "HIDDEN-VALUE-5f0c"  # in the input workflows' hidden params; never echoed
KNOWN_ENV = ["API_BASE", "DB_URL"]
NEW_ENV = ["AWS_SECRET", "NEW_KEY", "X.Y"]
OUTPUTS = sorted({f for c in CATALOG for f in (c.output_fields or ())})


class Boom:
    """Every string form raises."""

    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __str__(self) -> str:
        raise RuntimeError("str")


class BoomStr(str):
    """A str whose repr and str raise."""

    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __str__(self) -> str:
        raise RuntimeError("str")


def _deep(n: int, as_dict: bool) -> Any:
    v: Any = "{{trigger.x}}"
    for _ in range(n):
        v = {"k": v} if as_dict else [v]
    return v


def _cyclic() -> list[Any]:
    a: list[Any] = ["{{env.AWS_SECRET}}"]
    a.append(a)
    return a


# Built once and shared between batches (apply_operations must not mutate them).
HOSTILE: list[Any] = [
    10**5000,
    -(10**120),
    _deep(1200, False),
    _deep(1200, True),
    _cyclic(),
    Boom(),
    BoomStr("{{env.AWS_SECRET}}"),
    {1, 2},
    frozenset({"a"}),
    b"\x00\xff",
    bytearray(b"x"),
    float("nan"),
    float("inf"),
    -float("inf"),
    (1, "{{trigger.x}}"),
    {1: "a"},
    {10**5000: "a"},
    {Boom(): 1},
    {("a",): 1},
    object(),
    complex(1, 2),
    [1, [2, {"x": Boom()}]],
    {"ok": [1, 2, float("nan")]},
    "{{" + " " * 3000,  # the template regex once took minutes on this
]


@dataclass
class FuzzReport:
    """What a run found: counts, timing and every invariant violation (with its batch)."""

    seed: int
    batches: int = 0
    seconds: float = 0.0
    ok: int = 0
    ops: int = 0
    skips: Counter[str] = field(default_factory=Counter)
    issues: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Batches per second."""
        return self.batches / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        """A few lines for a person."""
        skips = ", ".join(f"{k}={v}" for k, v in self.skips.most_common())
        return (
            f"seed {self.seed}: {self.batches} batches, {self.ops} ops in {self.seconds:.1f} s "
            f"({self.rate:.0f} batches/s); ok={self.ok}, validation issues={self.issues}\n"
            f"skips: {skips or '(none)'}\n"
            f"violations: {len(self.violations)}"
        )


# ── workflows ──


def _params(rng: random.Random, typ: str, refs: list[str]) -> dict[str, Any]:
    """Valid-ish params for ``typ``, with refs from ``refs`` sprinkled in."""

    def text(base: str) -> str:
        return f"{base} {rng.choice(refs)}" if refs and rng.random() < 0.5 else base

    table: dict[str, dict[str, Any]] = {
        "trigger_webhook": {"path": "/hook"},
        "http": {"url": text("https://api.example/v1"), "method": rng.choice(["GET", "POST"])},
        "slack": {"operation": "send", "channel": "#ops", "text": text("hi")},
        "transform": {"template": {"v": text("x"), "n": rng.randint(-5, 5)}},
        "wait_duration": {"duration": rng.randint(0, 9), "unit": rng.choice(["s", "m"])},
        "wait_for_event": {"eventName": text("order.paid")},
        "human_approval": {"prompt": text("ok?")},
        "vault_query": {"query": text("select 1"), "limit": rng.randint(0, 50)},
        "sql": {"query": text("select 1"), "params": {"n": rng.randint(0, 9)}},
        "run_workflow": {"workflow": text("child"), "input": {"n": text("1")}},
    }
    return dict(table.get(typ, {}))


def _ref(head: str, fieldname: str | None) -> str:
    return f"{{{{{head}.{fieldname}}}}}" if fieldname else f"{{{{{head}}}}}"


def workflow(rng: random.Random) -> SerializedWorkflow:
    """A random DAG of 1-8 blocks in list order: names, disabled blocks, env refs, secrets."""
    n = rng.randint(1, 8)
    blocks: list[dict[str, Any]] = []
    conns: list[dict[str, str]] = []
    for i in range(n):
        bid = f"b{i}"
        typ = "trigger_webhook" if i == 0 else rng.choice(TYPES)
        preds = rng.sample(range(i), k=min(i, rng.randint(0, 2)))
        conns += [{"source": f"b{j}", "target": bid} for j in preds]
        refs = [_ref("env", rng.choice(KNOWN_ENV)), "{{trigger.email}}"]
        for j in preds:
            refs.append(_ref(blocks[j].get("name") or f"b{j}", rng.choice(OUTPUTS)))
        params = _params(rng, typ, refs)
        for name in HIDDEN[typ]:
            if rng.random() < 0.7:
                params[name] = f"{HIDDEN_VALUE}-{bid}"
        for name in USER_ONLY[typ]:
            if rng.random() < 0.5:
                params[name] = "https://user.example"
        block: dict[str, Any] = {"id": bid, "type": typ, "params": params}
        if i and rng.random() < 0.15:
            block["enabled"] = False
        if rng.random() < 0.3:
            block["name"] = f"Name{i}"
        blocks.append(block)
    return SerializedWorkflow.model_validate({"blocks": blocks, "connections": conns})


# ── op batches ──


@dataclass
class Batch:
    """One batch and what the generator knows about it."""

    ops: Any
    allow_env: list[str]
    mentions_hidden: bool = False


def _value(rng: random.Random, wf: SerializedWorkflow, batch: Batch) -> Any:
    """A param value: mostly ordinary, sometimes a ref, sometimes hostile."""
    r = rng.random()
    if r < 0.08:
        return rng.choice(HOSTILE)
    if r < 0.3:
        head = rng.choice([b.id for b in wf.blocks] + ["ghost", "trigger", "Name1", "b9"])
        return _ref(head, rng.choice([*OUTPUTS, "nope", None]))
    if r < 0.38:
        return _ref("env", rng.choice(KNOWN_ENV + NEW_ENV))
    if r < 0.42:
        batch.mentions_hidden = True
        return rng.choice(HIDDEN_NAMES)
    return rng.choice(["text", 3, 2.5, True, None, [1, "a"], {"k": "v"}, "", "#ch", 10**99])


def _op_params(
    rng: random.Random, wf: SerializedWorkflow, typ: str, batch: Batch
) -> dict[str, Any]:
    refs = [_ref(b.name or b.id, rng.choice(OUTPUTS)) for b in wf.blocks]
    p = _params(rng, typ, refs)
    for _ in range(rng.randint(0, 2)):
        r = rng.random()
        if r < 0.15 and HIDDEN.get(typ):
            batch.mentions_hidden = True
            p[rng.choice(HIDDEN[typ])] = rng.choice(["stolen", _ref("env", "AWS_SECRET")])
        elif r < 0.25 and USER_ONLY.get(typ):
            p[rng.choice(USER_ONLY[typ])] = "https://evil.example"
        elif p:
            p[rng.choice(sorted(p))] = _value(rng, wf, batch)
        else:
            p[rng.choice(["template", "x", "__proto__"])] = _value(rng, wf, batch)
    return p


def _some_id(rng: random.Random, wf: SerializedWorkflow) -> Any:
    r = rng.random()
    if r < 0.6 and wf.blocks:
        return rng.choice(wf.blocks).id
    if r < 0.85:
        return rng.choice(["n1", "n2", "n3", "trigger", "a.b", "", "Name0", "Name2"])
    return rng.choice([7, None, ["b0"], {"id": "b0"}, 10**5000, Boom(), BoomStr("b0"), 1.5])


def _op(rng: random.Random, wf: SerializedWorkflow, batch: Batch) -> Any:
    kind = rng.choice(
        ["add", "add", "edit", "edit", "delete", "connect", "connect", "disconnect",
         "shadow", "hostile_op", "model", "garbage"]
    )  # fmt: skip
    if kind == "add":
        typ = rng.choice([*TYPES, "nope"])
        op = {
            "operation_type": "add",
            "block_id": _some_id(rng, wf),
            "type": typ,
            "params": _op_params(rng, wf, typ, batch),
        }
        if rng.random() < 0.3:
            op["name"] = rng.choice(["Name0", "Name1", "Fresh", Boom(), 10**5000])
        return op
    if kind == "edit":
        bid = _some_id(rng, wf)
        typ = next((b.type for b in wf.blocks if b.id == bid), rng.choice(TYPES))
        return {
            "operation_type": rng.choice(["edit", "update"]),
            "block_id": bid,
            "params": _op_params(rng, wf, typ, batch),
        }
    if kind == "delete":
        return {"operation_type": rng.choice(["delete", "remove"]), "block_id": _some_id(rng, wf)}
    if kind in ("connect", "disconnect"):
        op = {
            "operation_type": kind,
            "block_id": _some_id(rng, wf),
            "target_block_id": _some_id(rng, wf),
        }
        if kind == "connect" and rng.random() < 0.2:
            op["source_handle"] = rng.choice(["true", "false", "", Boom()])
        return op
    if kind == "shadow":  # an id equal to some block's name (maybe one a ref reads)
        named = [b.name for b in wf.blocks if b.name]
        return {
            "operation_type": "add",
            "block_id": rng.choice(named or ["Name1"]),
            "type": "transform",
            "params": {"template": "x"},
        }
    if kind == "hostile_op":
        return rng.choice([*HOSTILE, None, 42, "add", ["add"], {"operation_type": "add"}])
    if kind == "model":
        if rng.random() < 0.5:
            return AddOp.model_construct(
                operation_type="add",
                block_id=_some_id(rng, wf),
                type="transform",
                params={"template": _value(rng, wf, batch)},
            )
        return EditBlockOp(
            operation_type="edit",
            block_id=rng.choice([b.id for b in wf.blocks] or ["b0"]),
            params={"template": "{{trigger.x}}"},
        )
    return {  # garbage: a dict with odd keys and values
        rng.choice(["operation_type", "block_id", 1, Boom(), "__proto__"]): _value(rng, wf, batch)
        for _ in range(rng.randint(0, 4))
    }


def _gen(ops: list[Any]) -> Iterator[Any]:
    yield from ops


def batch(rng: random.Random, wf: SerializedWorkflow) -> Batch:
    """A batch of 0-12 ops for ``wf``; now and then not a list at all."""
    b = Batch(ops=None, allow_env=rng.sample(NEW_ENV, k=rng.randint(0, 1)))
    ops = [_op(rng, wf, b) for _ in range(rng.randint(0, 12))]
    r = rng.random()
    b.ops = ops if r < 0.95 else _gen(ops) if r < 0.97 else rng.choice([None, 5, "ops", {}])
    return b


# ── invariants ──


def _feedback(res: ApplyResult) -> str:
    return json.dumps(
        {
            "summary": res.summary,
            "skipped": [s.model_dump(mode="json") for s in res.skipped_items],
            "errors": [i.model_dump(mode="json") for i in res.validation_errors],
        }
    )


def check(
    wf: SerializedWorkflow, arg: Any, before: str, b: Batch, res: Any, out_before: set[str]
) -> list[str]:
    """Every invariant a batch broke (empty when it kept them all)."""
    bad: list[str] = []
    if not isinstance(res, ApplyResult):
        return [f"returned {type(res).__name__}, not an ApplyResult"]
    now = wf.to_json() if not isinstance(arg, dict) else json.dumps(arg, sort_keys=True)
    if now != before:
        bad.append("the input workflow was mutated")
    if res.ok != (not res.skipped_items and not res.validation_errors):
        bad.append(f"ok={res.ok} with {len(res.skipped_items)} skips")
    try:
        text = res.workflow.to_json()
        back = SerializedWorkflow.from_json(text)
        again = SerializedWorkflow.model_validate(res.workflow.to_dict())
        if back.to_json() != text or again.to_json() != text:
            bad.append("the result does not round-trip through to_json/from_json")
        ApplyResult.model_validate_json(res.model_dump_json())
    except Exception as e:
        return [*bad, f"the result does not serialize: {_describe(e)}"]
    g: nx.DiGraph[str] = nx.DiGraph()
    g.add_nodes_from(blk.id for blk in res.workflow.blocks)
    g.add_edges_from((c.source, c.target) for c in res.workflow.connections)
    if not nx.is_directed_acyclic_graph(g):
        bad.append(f"cycle: {nx.find_cycle(g)}")
    if len(g) != len(res.workflow.blocks):
        bad.append("duplicate block ids or a connection to a missing block")
    feedback = _feedback(res)
    if HIDDEN_VALUE in feedback:
        bad.append("a hidden value reached the feedback")
    if not b.mentions_hidden:
        bad += [f"hidden name {n!r} in feedback" for n in HIDDEN_NAMES if n in feedback]
        bad += [f"hidden param {u} in feedback" for u in HIDDEN_USES if u in feedback]
    reported = {(i.block_id, i.field) for i in res.validation_errors}
    for i in check_refs(res.workflow, CATALOG, disabled=True):  # disabled blocks included
        hidden = i.field in HIDDEN.get(i.block_type, ())
        if (i.block_id, None if hidden else i.field) not in reported:
            bad.append(f"unreported bad ref {i.value} at {i.block_id}")
    new_env = env_refs(res.workflow) - out_before - set(b.allow_env)
    if new_env:
        bad.append(f"new env refs landed: {sorted(new_env)}")
    old = {blk.id: blk for blk in wf.blocks}
    deleted = _deleted(b.ops)
    for blk in res.workflow.blocks:
        prev = old.get(blk.id)
        fresh = prev is None or blk.id in deleted
        for name in [*HIDDEN[blk.type], *USER_ONLY[blk.type]]:
            was = None if fresh or prev is None else prev.params.get(name)
            if blk.params.get(name) != was:
                bad.append(f"{blk.id}.{name} was set or lost by an op")
    return bad


def _describe(e: Exception) -> str:
    try:
        return f"{type(e).__name__}: {str(e)[:300]}"
    except Exception:  # a message built from a hostile value
        return type(e).__name__


def _deleted(ops: Any) -> set[str]:
    """Ids a delete op in ``ops`` names (such a block may come back, re-added, without secrets)."""
    if not isinstance(ops, list):
        return set()
    return {
        op["block_id"]
        for op in ops
        if type(op) is dict
        and op.get("operation_type") in ("delete", "remove")
        and type(op.get("block_id")) is str
    }


def fuzz(batches: int, seed: int, *, max_violations: int = 20) -> FuzzReport:
    """Run ``batches`` random batches from ``seed``; stop after ``max_violations`` violations."""
    rng = random.Random(seed)
    report = FuzzReport(seed=seed)
    t0 = time.perf_counter()
    wf = workflow(rng)
    for i in range(batches):
        if i % 4 == 0:
            wf = workflow(rng)
        b = batch(rng, wf)
        form = rng.choice(["model", "dict", "json"])
        arg: Any = {"model": wf, "dict": wf.to_dict(), "json": wf.to_json()}[form]
        before = wf.to_json() if form != "dict" else json.dumps(arg, sort_keys=True)
        out_before = env_refs(wf)
        res: ApplyResult | None = None
        try:
            res = apply_operations(arg, b.ops, CATALOG, allow_env=b.allow_env)
        except Exception as e:
            report.violations.append(f"batch {i}: raised {_describe(e)}")
        if res is not None:
            for v in check(wf, arg, before, b, res, out_before):
                report.violations.append(f"batch {i} ({form}): {v}")
            report.ok += res.ok
            report.skips.update(s.reason_code for s in res.skipped_items)
            report.issues += len(res.validation_errors)
        report.batches += 1
        report.ops += len(b.ops) if isinstance(b.ops, list) else 1
        if len(report.violations) >= max_violations:
            break
        if res is not None and res.ok and rng.random() < 0.5:
            wf = res.workflow  # keep building on a good result
    report.seconds = time.perf_counter() - t0
    return report
