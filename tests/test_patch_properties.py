"""Property tests: apply_operations keeps its promises on random workflows and random op batches.

Not a port of one seed file: the seed proves these guarantees on hand-picked cases (tests 09, 13,
16-18). Here hypothesis builds random *valid* workflows (random DAGs of the builtin blocks plus a
custom ``vault_query`` connector with a ``Hidden[str]`` and a ``UserOnly[str]`` param, with valid
``{{refs}}``) and random op batches mixing valid ops, garbage JSON, hostile keys (``__proto__``,
``constructor``, ...) and attempts to set hidden or user-only params. On every example:

* apply_operations never raises and never mutates its inputs (workflow or ops);
* the result is acyclic, structurally sound, and holds exactly the blocks the ops leave;
* every ``{{ref}}`` in the result resolves upstream to a declared output, or the result is not ok
  and ``validation_errors`` name that block and field (checked against an independent oracle,
  and against ``ref_checks.check_refs``); ok implies the workflow compiles and every literal
  param validates against its connector;
* a param value an op set survives only if its refs resolve and, when literal, only if the
  connector's own params model accepts it (constraints and validators included); every param
  value comes from the input or from an op addressed to that block (no value is resurrected);
* no op sets a hidden or user-only param; hidden params of surviving blocks are never lost;
  no hidden value (old or attempted) is ever echoed back;
* an op whose params hold a value that is not plain JSON, or that would read an ``{{env.X}}``
  the input does not read (and ``allow_env`` does not name), changes nothing; refs of disabled
  blocks follow the same rules as enabled ones;
* the ApplyResult serializes to JSON and round-trips.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import networkx as nx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from thodare_jupyter import (
    ApplyResult,
    Catalog,
    Hidden,
    SerializedConnection,
    SerializedWorkflow,
    UserOnly,
    apply_operations,
    define_connector,
    redact_for_llm,
)
from thodare_jupyter.ref_checks import check_refs
from thodare_jupyter.templates import has_template, iter_refs
from thodare_jupyter.validation import block_id_problem, check_structure, check_workflow
from thodare_jupyter.wire import (
    EDIT_OP_ADAPTER,
    AddOp,
    ConnectOp,
    DeleteOp,
    DisconnectOp,
    EditBlockOp,
)

# ── the catalog: builtins + one custom connector with a hidden and a user-only param ──


class VaultParams(BaseModel):
    query: str
    limit: int = 10
    apiKey: Hidden[str]
    region: UserOnly[str] = "eu"


class VaultOut(BaseModel):
    rows: list[Any] = []
    count: int = 0


def _vault(p: VaultParams) -> VaultOut:
    return VaultOut(rows=[p.query], count=1)


VAULT = define_connector(
    type="vault_query",
    params=VaultParams,
    outputs=VaultOut,
    run=_vault,
    description="Query the vault.",
)
CATALOG = Catalog(VAULT)
TYPES = CATALOG.types()
COMPUTE_TYPES = [t for t in TYPES if t != "trigger_webhook"]
HIDDEN = {c.type: c.hidden_params for c in CATALOG}
USER_ONLY = {
    c.type: frozenset(n for n, s in c.param_specs.items() if s.visibility == "user-only")
    for c in CATALOG
}
VISIBLE = {n for c in CATALOG for n, s in c.param_specs.items() if s.visibility != "hidden"}
ALL_HIDDEN = sorted(set().union(*HIDDEN.values()) - VISIBLE)  # hidden wherever they exist
ALL_USER_ONLY = sorted(set().union(*USER_ONLY.values()))
SETTABLE_ANY = set().union(*(c.llm_settable for c in CATALOG))  # settable in some type
OUTPUT_FIELDS = sorted({f for c in CATALOG for f in (c.output_fields or ())})

ORIG_SECRET = "sk-orig-7d1e"  # hidden values already in the input workflow
ORIG_USER = "https://orig-user.example"  # user-only values already in the input workflow
OP_SECRET = "OPSECRET-93b2"  # what ops try to put into hidden params
OP_USER = "OPUSER-51aa"  # what ops try to put into user-only params

HOSTILE = ["__proto__", "__class__", "constructor", "prototype", "__init__"]
ID_POOL = [*HOSTILE, *(f"b{i}" for i in range(10)), "fetch", "notify", "ünï", "a-b_c"]
NEW_IDS = ["n1", "n2", "n3", "ünï2", "__proto__x"]
BAD_IDS = ["", "trigger", "env", "vars", "a.b", "x y", "{{b0}}", "}", "\n"]
NAMES = [f"N{i}" for i in range(10)]
HUGE_LEN = 100_000
ABSENT = object()
# Values at the edge of a param's constraints (Field(ge=0), Field(gt=0), a case-folding validator).
NEAR_MISS: dict[str, list[Any]] = {
    "duration": [-1, -0.5, 0],
    "timeoutHours": [0, -1, 0.5],
    "method": ["post", "get", "BREW"],
    "unit": ["sec", "S", "ms"],
    "limit": [-1, 1.5, "3"],
    "operation": ["SEND", "send"],
}
OP_MODELS = (AddOp, EditBlockOp, DeleteOp, ConnectOp, DisconnectOp)

# The type rule, stated on its own for this catalog: the kinds each output field holds and each
# param takes (missing: anything). A param that is exactly one ref is bad when no kind the ref
# may hold fits a kind the param takes (numbers widen, bools pass as numbers, a table as a dict).
OUT_KINDS: dict[tuple[str, str], set[str]] = {
    ("http", "status"): {"integer"}, ("http", "headers"): {"object"},
    ("slack", "ok"): {"boolean"}, ("slack", "ts"): {"string"}, ("slack", "channel"): {"string"},
    ("wait_duration", "resumedAt"): {"string"}, ("wait_for_event", "timedOut"): {"boolean"},
    ("human_approval", "approved"): {"boolean"}, ("human_approval", "by"): {"string"},
    ("human_approval", "note"): {"string"}, ("human_approval", "comment"): {"string"},
    ("human_approval", "timedOut"): {"boolean"}, ("sql", "rows"): {"table"},
    ("sql", "rowcount"): {"integer"}, ("vault_query", "rows"): {"array"},
    ("vault_query", "count"): {"integer"}, ("run_workflow", "runId"): {"string"},
    ("run_workflow", "workflow"): {"string"}, ("run_workflow", "outputs"): {"object"},
}  # fmt: skip
PARAM_KINDS: dict[tuple[str, str], set[str]] = {
    ("trigger_webhook", "path"): {"string"}, ("http", "url"): {"string"},
    ("http", "method"): {"string"}, ("http", "headers"): {"object"},
    ("slack", "operation"): {"string"}, ("slack", "channel"): {"string"},
    ("slack", "text"): {"string"}, ("slack", "threadTs"): {"string"},
    ("slack", "accessToken"): {"string"}, ("wait_duration", "duration"): {"number"},
    ("wait_duration", "unit"): {"string"}, ("wait_for_event", "eventName"): {"string"},
    ("wait_for_event", "correlationKey"): {"string"},
    ("wait_for_event", "timeoutHours"): {"number"}, ("human_approval", "prompt"): {"string"},
    ("human_approval", "timeoutHours"): {"number"},
    ("human_approval", "resumeBaseUrl"): {"string"}, ("sql", "query"): {"string"},
    ("sql", "params"): {"object"}, ("sql", "url"): {"string"},
    ("vault_query", "query"): {"string"}, ("vault_query", "limit"): {"integer"},
    ("vault_query", "apiKey"): {"string"}, ("vault_query", "region"): {"string"},
    ("run_workflow", "workflow"): {"string"}, ("run_workflow", "input"): {"object"},
}  # fmt: skip
CONVERTS = {
    ("integer", "number"), ("number", "integer"), ("boolean", "number"),
    ("boolean", "integer"), ("integer", "boolean"), ("table", "object"), ("table", "array"),
}  # fmt: skip
WHOLE_REF = re.compile(r"\{\{([^{}]+)\}\}")


def ref_kinds(
    ref: str, type_of: dict[str, str], variables: dict[str, Any] | None, typed_input: bool
) -> set[str] | None:
    """What a ref (whose head resolves) may hold; None: anything. ``type_of``: head → type."""
    head, *rest = ref.split(".")
    if head == "trigger":
        return {"object"} if typed_input and not rest else None
    if head == "vars":
        value = (variables or {}).get(rest[0]) if len(rest) == 1 else None
        return {"string"} if isinstance(value, str) else {"integer"} if value == 3 else None
    typ = type_of.get(head)
    if head == "env" or typ is None or CATALOG.get(typ).outputs is None:
        return None
    if not rest:
        return {"object"}
    return OUT_KINDS.get((typ, rest[0])) if len(rest) == 1 else None


def type_fits(typ: str, key: str, value: Any, kinds_of: Any) -> bool:
    """Whether param ``key`` of a ``typ`` block can take ``value`` (only a whole ref can fail)."""
    m = WHOLE_REF.fullmatch(value.strip()) if isinstance(value, str) else None
    target = PARAM_KINDS.get((typ, key))
    source = kinds_of(m.group(1).strip()) if m else None
    return (
        source is None
        or target is None
        or any(s == t or (s, t) in CONVERTS for s in source for t in target)
    )


# ── strategies ──

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(HOSTILE)
    | st.integers(HUGE_LEN, HUGE_LEN).map(lambda n: "x" * n)  # (a map keeps reprs short)
)
garbage = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.sampled_from(HOSTILE), inner, max_size=4)
    ),
    max_leaves=10,
)


def _maybe_ref(draw: st.DrawFn, refs: st.SearchStrategy[str] | None, text: str) -> str:
    if refs is None or not draw(st.booleans()):
        return text
    r = draw(refs)
    return draw(st.sampled_from([r, f"{text} {r}", f"{r}/{text}", f"{r}{r}"]))


def _body(draw: st.DrawFn, refs: st.SearchStrategy[str] | None) -> Any:
    leaf = st.integers(-5, 5) | st.sampled_from(["a", "Zoë", True, None])
    if refs is not None:
        leaf = leaf | refs | refs.map(lambda r: f"id-{r}")
    val = draw(
        st.recursive(
            leaf,
            lambda i: (
                st.lists(i, max_size=3)
                | st.dictionaries(st.sampled_from(["k", "v", "n"]), i, max_size=3)
            ),
            max_leaves=6,
        )
    )
    return {"value": val}


def params_for(draw: st.DrawFn, typ: str, refs: st.SearchStrategy[str] | None) -> dict[str, Any]:
    """Valid params for ``typ`` (no hidden/user-only ones), with refs drawn from ``refs``."""
    b = st.booleans()
    p: dict[str, Any] = {}
    if typ == "trigger_webhook":
        if draw(b):
            p["path"] = "/hook"
    elif typ == "http":
        p["url"] = _maybe_ref(draw, refs, "https://api.example.test/v1")
        if draw(b):
            p["method"] = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
        if draw(b):
            p["headers"] = draw(st.sampled_from([None, {"X-Trace": _maybe_ref(draw, refs, "t")}]))
        if draw(b):
            p["body"] = _body(draw, refs)
    elif typ == "slack":
        p = {
            "operation": "send",
            "channel": _maybe_ref(draw, refs, "#ops"),
            "text": _maybe_ref(draw, refs, "New lead"),
        }
        if draw(b):
            p["threadTs"] = draw(st.sampled_from([None, "1700000000.1"]))
    elif typ == "transform":
        p["template"] = _body(draw, refs)
    elif typ == "wait_duration":
        p = {
            "duration": draw(st.integers(0, 1000) | st.floats(0, 1000)),
            "unit": draw(st.sampled_from(["ms", "s", "m", "h", "d", "w", "minutes"])),
        }
    elif typ == "wait_for_event":
        p = {"eventName": _maybe_ref(draw, refs, "order.paid")}
        if draw(b):
            p["correlationKey"] = draw(st.none()) if draw(b) else _maybe_ref(draw, refs, "k")
        if draw(b):
            p["timeoutHours"] = draw(st.floats(0.5, 100))
    elif typ == "human_approval":
        p = {"prompt": _maybe_ref(draw, refs, "Approve?")}
        if draw(b):
            p["timeoutHours"] = draw(st.integers(1, 200))
    elif typ == "sql":
        p = {"query": _maybe_ref(draw, refs, "select 1")}
        if draw(b):
            p["params"] = draw(st.sampled_from([None, {"n": 1}]))
    elif typ == "run_workflow":
        p = {"workflow": _maybe_ref(draw, refs, "child")}
        if draw(b):
            p["input"] = draw(st.sampled_from([None, {"n": _maybe_ref(draw, refs, "1")}]))
    elif typ == "vault_query":
        p = {"query": _maybe_ref(draw, refs, "select 1")}
        if draw(b):
            p["limit"] = draw(st.integers(0, 100))
    else:  # pragma: no cover - every catalog type is listed above
        raise AssertionError(typ)
    return p


def _ref(head: str, field: str | None) -> str:
    return f"{{{{{head}.{field}}}}}" if field else f"{{{{{head}}}}}"


@st.composite
def workflows(draw: st.DrawFn) -> SerializedWorkflow:
    """A random valid workflow: a DAG in list order, refs only to enabled ancestors."""
    n = draw(st.integers(1, 9))
    ids = draw(st.lists(st.sampled_from(ID_POOL), min_size=n, max_size=n, unique=True))
    with_trigger = draw(st.booleans())
    input_fields = draw(
        st.none() | st.sets(st.sampled_from(["email", "name", "amount"]), min_size=1)
    )
    variables = draw(st.none() | st.just({"region": "eu", "limit": 3}))
    ns_refs = [_ref("env", "API_BASE")]
    ns_refs += [_ref("trigger", f) for f in sorted(input_fields or {"email", "anything"})]
    ns_refs += [_ref("vars", "region")] if variables else []
    blocks: list[dict[str, Any]] = []
    conns: list[dict[str, Any]] = []
    ancestors: dict[str, set[str]] = {}
    types: dict[str, str] = {}
    names: dict[str, str] = {}
    for i, bid in enumerate(ids):
        typ = "trigger_webhook" if i == 0 and with_trigger else draw(st.sampled_from(COMPUTE_TYPES))
        enabled = i == 0 or draw(st.integers(0, 7)) > 0
        preds = sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else []
        for j in preds:
            conn: dict[str, Any] = {"source": ids[j], "target": bid}
            if draw(st.integers(0, 5)) == 0:
                conn["sourceHandle"] = draw(st.sampled_from(["success", "error", "true"]))
            conns.append(conn)
            if draw(st.integers(0, 4)) == 0:  # a second edge between the same pair
                conns.append({"source": ids[j], "target": bid, "sourceHandle": "error"})
        anc: set[str] = set()
        if enabled:
            for j in preds:
                if ids[j] in ancestors:  # enabled predecessor
                    anc |= {ids[j]} | ancestors[ids[j]]
            ancestors[bid] = anc
        refs = list(ns_refs)
        for a in sorted(anc):
            heads = [a] + ([names[a]] if a in names else [])
            fields = CATALOG.get(types[a]).output_fields
            for h in heads:
                refs += [_ref(h, None)]
                refs += [_ref(h, f) for f in (fields if fields is not None else ("email", "x"))]
        ref_st = st.sampled_from(refs) if enabled else None
        params = params_for(draw, typ, ref_st)
        # A hidden value a person set: a literal secret, or one with a {{ref}} in it.
        secret = f"{ORIG_SECRET}-{bid}"
        if typ == "slack" and draw(st.booleans()):
            params["accessToken"] = _maybe_ref(draw, ref_st, secret)
        if typ == "vault_query":
            if draw(st.booleans()):
                params["apiKey"] = _maybe_ref(draw, ref_st, secret)
            if draw(st.booleans()):
                params["region"] = f"{ORIG_USER}/{bid}"
        if typ == "sql" and draw(st.booleans()):
            params["url"] = _maybe_ref(draw, ref_st, secret)
        if typ == "human_approval" and draw(st.booleans()):
            params["resumeBaseUrl"] = f"{ORIG_USER}/{bid}"
        type_of = {**types, **{n: types[b] for b, n in names.items()}}

        def kinds_of(ref: str, type_of: dict[str, str] = type_of) -> set[str] | None:
            return ref_kinds(ref, type_of, variables, bool(input_fields))

        for key, value in params.items():
            if not type_fits(typ, key, value, kinds_of):
                params[key] = f"{value}/{key}"  # inside text: a string
        block: dict[str, Any] = {"id": bid, "type": typ, "enabled": enabled, "params": params}
        if draw(st.integers(0, 2)) == 0:
            block["name"] = names[bid] = NAMES[i]
        types[bid] = typ
        blocks.append(block)
    doc: dict[str, Any] = {"blocks": blocks, "connections": conns}
    if input_fields:
        doc["metadata"] = {
            "name": "prop",
            "inputSchema": {"properties": {f: {} for f in input_fields}},
        }
    if variables:
        doc["variables"] = variables
    wf = SerializedWorkflow.model_validate(doc)
    assert check_workflow(wf, CATALOG) == [], "generator bug: the drawn workflow is not valid"
    assert all(runtime_accepts(b) for b in wf.blocks), "generator bug: params the runtime rejects"
    return wf


def _op_params(draw: st.DrawFn, typ: str, refs: st.SearchStrategy[str]) -> dict[str, Any]:
    """Params an LLM might send: valid-ish ones, plus hidden/user-only/hostile/garbage keys."""
    base = params_for(draw, typ, refs)
    keep = draw(st.sets(st.sampled_from(sorted(base)), max_size=len(base))) if base else set()
    p = {k: v for k, v in base.items() if k in keep or draw(st.integers(0, 2)) > 0}
    if draw(st.integers(0, 9)) == 0:
        return {}  # no params at all (required ones missing)
    settable = sorted(CATALOG.get(typ).llm_settable)
    if HIDDEN[typ] and draw(st.integers(0, 2)) == 0:  # the hidden param of this very type
        p[draw(st.sampled_from(sorted(HIDDEN[typ])))] = OP_SECRET
    if USER_ONLY[typ] and draw(st.integers(0, 3)) == 0:
        p[draw(st.sampled_from(sorted(USER_ONLY[typ])))] = OP_USER
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.integers(0, 5))
        if kind == 0:  # try to set a hidden param (of this type, or any)
            key = draw(st.sampled_from(sorted(HIDDEN[typ]) or ALL_HIDDEN))
            p[key] = OP_SECRET
        elif kind == 1:  # try to set a user-only param
            key = draw(st.sampled_from(sorted(USER_ONLY[typ]) or ALL_USER_ONLY))
            p[key] = OP_USER
        elif kind == 2:  # hostile key
            p[draw(st.sampled_from(HOSTILE))] = draw(garbage)
        elif kind == 3 and p:  # a valid key with a garbage value
            p[draw(st.sampled_from(sorted(p)))] = draw(garbage)
        elif kind == 4:  # a value just outside what the params model allows
            key = draw(st.sampled_from(sorted(NEAR_MISS)))
            p[key] = draw(st.sampled_from(NEAR_MISS[key]))
        else:  # a ref-bearing string in any settable key
            p[draw(st.sampled_from(settable))] = draw(refs)
    return p


def _attempts_for(bid: str, sure: dict[str, str], params: dict[str, Any]) -> dict[str, Any]:
    """Edit params for ``bid``: a block the batch itself (re-)adds may be of another type than
    the one drawn (``sure``: ids whose type is known), so its attempts at hidden/user-only
    values keep to names no type lets through."""
    if bid in sure:
        return params
    return {
        k: v
        for k, v in params.items()
        if not (v == OP_SECRET and k in VISIBLE) and not (v == OP_USER and k in SETTABLE_ANY)
    }


@st.composite
def op_batches(draw: st.DrawFn, wf: SerializedWorkflow) -> list[Any]:
    existing = [b.id for b in wf.blocks]
    types = {b.id: b.type for b in wf.blocks}
    some_id = st.sampled_from(existing + NEW_IDS + HOSTILE) | st.sampled_from(BAD_IDS)
    known_id = st.sampled_from(existing) | st.sampled_from(NEW_IDS)
    heads = st.sampled_from(
        existing + NEW_IDS + NAMES + HOSTILE + ["trigger", "env", "vars", "ghost", ""]
    )
    fields = st.none() | st.sampled_from([*OUTPUT_FIELDS, "email", "nope", "API_BASE", *HOSTILE])
    refs = st.builds(_ref, heads, fields) | st.builds(
        lambda h, f: f"{{{{ {h}.{f} }}}}", st.sampled_from(existing), st.sampled_from(OUTPUT_FIELDS)
    )
    edges = [(c.source, c.target) for c in wf.connections]
    sure = dict(types)  # ids whose type this batch has not put in doubt
    ops: list[Any] = []
    for _ in range(draw(st.integers(0, 14))):
        kind = draw(
            st.sampled_from(
                [
                    "add",
                    "add",
                    "edit",
                    "edit",
                    "delete",
                    "connect",
                    "connect",
                    "disconnect",
                    "garbage",
                    "model",
                    "readd",
                ]
            )
        )
        op: Any
        if kind == "readd":  # (edit a block,) delete it, add one with the same id (and type?)
            bid = draw(known_id)
            typ = types.get(bid) if draw(st.booleans()) else None
            typ = typ or draw(st.sampled_from(COMPUTE_TYPES))
            if bid in types and draw(st.booleans()):
                ops.append(
                    {
                        "operation_type": "edit",
                        "block_id": bid,
                        "params": params_for(draw, types[bid], None),
                    }
                )
            ops.append({"operation_type": "delete", "block_id": bid})
            sure.pop(bid, None)
            op = {
                "operation_type": "add",
                "block_id": bid,
                "type": typ,
                "params": _op_params(draw, typ, refs),
            }
        elif kind == "add":
            typ = draw(st.sampled_from(TYPES) | st.sampled_from(["nope", "__proto__", "Transform"]))
            op = {
                "operation_type": "add",
                "block_id": draw(some_id),
                "type": typ,
                "params": _op_params(draw, typ if typ in CATALOG else "transform", refs),
            }
            if draw(st.booleans()):
                op["name"] = draw(st.sampled_from(NAMES + HOSTILE))
        elif kind == "edit":
            bid = draw(some_id | known_id)
            typ = types.get(bid) or draw(st.sampled_from(TYPES))
            op = {"operation_type": draw(st.sampled_from(["edit", "update"])), "block_id": bid}
            if draw(st.integers(0, 3)) > 0:
                op["params"] = _attempts_for(bid, sure, _op_params(draw, typ, refs))
            if draw(st.integers(0, 3)) == 0:
                op["name"] = draw(st.sampled_from(NAMES + existing + HOSTILE))
        elif kind == "delete":
            op = {
                "operation_type": draw(st.sampled_from(["delete", "remove"])),
                "block_id": draw(known_id | some_id),
            }
            sure.pop(op["block_id"], None)
        elif kind == "connect":
            op = {
                "operation_type": "connect",
                "block_id": draw(known_id | some_id),
                "target_block_id": draw(known_id | some_id),
            }
            if draw(st.integers(0, 3)) == 0:
                op["source_handle"] = draw(st.sampled_from(["success", "error", "true", ""]))
            if draw(st.integers(0, 5)) == 0:
                op["condition"] = "x > 1"
        elif kind == "disconnect":
            src, dst = (
                draw(st.sampled_from(edges))
                if edges and draw(st.booleans())
                else (draw(known_id), draw(known_id))
            )
            op = {"operation_type": "disconnect", "block_id": src, "target_block_id": dst}
            if draw(st.integers(0, 2)) == 0:  # then try to reverse the edge
                ops.append(op)
                op = {"operation_type": "connect", "block_id": dst, "target_block_id": src}
        elif kind == "garbage":
            op = draw(
                garbage
                | st.fixed_dictionaries(
                    {
                        "operation_type": st.sampled_from(
                            [
                                "add",
                                "edit",
                                "delete",
                                "connect",
                                "disconnect",
                                "ADD",
                                "",
                                "__proto__",
                            ]
                        )
                        | garbage
                    },
                    optional={
                        "block_id": garbage | known_id,
                        "type": garbage,
                        "params": garbage,
                        "target_block_id": garbage | known_id,
                        "name": garbage,
                        "__proto__": garbage,
                        "constructor": garbage,
                    },
                )
                | st.builds(
                    lambda bid, extra: {
                        "operation_type": "edit",
                        "block_id": bid,
                        "apiKey": OP_SECRET,
                        "accessToken": OP_SECRET,
                        "params": {h: extra for h in HOSTILE},
                    },
                    known_id,
                    garbage,
                )
                | st.just(SerializedConnection(source="b0", target="b1"))
            )
        else:  # an op model built by the caller rather than a raw dict
            bid = draw(known_id)
            typ = types.get(bid) or draw(st.sampled_from(["slack", "vault_query", *COMPUTE_TYPES]))
            which = draw(st.sampled_from(["add", "edit", "connect"]))
            raw = {"operation_type": which, "block_id": bid}
            if which == "connect":
                raw["target_block_id"] = draw(known_id)
            else:
                raw["params"] = _op_params(draw, typ, refs)
                if which == "edit":
                    raw["params"] = _attempts_for(bid, sure, raw["params"])
                raw |= {"type": typ} if which == "add" else {}
            op = EDIT_OP_ADAPTER.validate_python(raw)
        ops.append(op)
    return ops


@st.composite
def cases(draw: st.DrawFn) -> tuple[SerializedWorkflow, list[Any], str, int, tuple[str, ...]]:
    wf = draw(workflows())
    ops = draw(op_batches(wf))
    form = draw(st.sampled_from(["model", "dict", "json"]))
    max_ops = draw(st.sampled_from([500, 500, 500, 500, 0, 2, 5]))
    allow_env = draw(st.sampled_from([(), (), ("rows",), ("email", "body")]))
    return wf, ops, form, max_ops, allow_env


# ── oracles (written independently of patch.py) ──


def _plain_json(value: Any, depth: int) -> bool:
    """The documented policy: exact JSON types, finite floats, ints under 101 digits, depth."""
    if value is None or type(value) in (bool, str):
        return True
    if type(value) is int:
        return len(str(abs(value))) <= 100
    if type(value) is float:
        return value == value and abs(value) != float("inf")
    if type(value) is list:
        return depth > 0 and all(_plain_json(v, depth - 1) for v in value)
    if type(value) is dict:
        return depth > 0 and all(
            type(k) is str and _plain_json(v, depth - 1) for k, v in value.items()
        )
    return False


def _parse(raw: Any) -> Any:
    if isinstance(raw, BaseModel):
        raw = dict(raw)
    if not _plain_json(raw, 66):
        return None
    try:
        return EDIT_OP_ADAPTER.validate_python(raw)
    except ValidationError:
        return None


def _env_names(value: Any) -> set[str]:
    return {r.split(".", 1)[1] for r in iter_refs(value) if r.startswith("env.")}


def _reads_new_env(typ: str, params: dict[str, Any], allowed: set[str]) -> bool:
    settable = CATALOG.get(typ).llm_settable
    return any(_env_names(v) - allowed for k, v in params.items() if k in settable)


def simulate_blocks(
    wf: SerializedWorkflow, ops: list[Any], max_ops: int, allow_env: tuple[str, ...] = ()
) -> tuple[set[str], set[str], dict[str, list[dict[str, Any]]], list[Any]]:
    """Which blocks exist after the batch, which were deleted at some point, and the params
    dicts of the ops addressed to each block's current incarnation."""
    exists = {b.id for b in wf.blocks}
    types = {b.id: b.type for b in wf.blocks}
    env_ok = _env_names([b.params for b in wf.blocks]) | set(allow_env)
    deleted: set[str] = set()
    sources: dict[str, list[dict[str, Any]]] = {}
    connects = []
    for raw in ops[:max_ops]:
        op = _parse(raw)
        if isinstance(op, AddOp):
            if (
                op.block_id not in exists
                and block_id_problem(op.block_id) is None
                and op.type in CATALOG
                and not _reads_new_env(op.type, op.params, env_ok)
            ):
                exists.add(op.block_id)
                types[op.block_id] = op.type
                sources[op.block_id] = [op.params]
        elif isinstance(op, EditBlockOp):
            if (
                op.block_id in exists
                and op.params
                and not _reads_new_env(types[op.block_id], op.params, env_ok)
            ):
                sources.setdefault(op.block_id, []).append(op.params)
        elif isinstance(op, DeleteOp):
            if op.block_id in exists:
                exists.remove(op.block_id)
                deleted.add(op.block_id)
                sources.pop(op.block_id, None)
        elif isinstance(op, ConnectOp):
            connects.append(op)
    return exists, deleted, sources, connects


def runtime_accepts(block: Any) -> bool:
    """True when the connector's own params model accepts the block's params (blocks holding
    a template are skipped: those are only known at run time). Hidden params get a stand-in."""
    conn = CATALOG.get(block.type)
    if conn.kind == "trigger" or has_template(block.params):
        return True
    try:
        conn.params.model_validate(
            {**dict.fromkeys(HIDDEN[block.type], "stand-in"), **block.params}
        )
    except ValidationError:
        return False
    return True


def field_accepts(typ: str, key: str, value: Any) -> bool:
    """True when the params model of ``typ`` accepts ``value`` for ``key`` (all its
    validators and constraints included), judged by pydantic alone."""
    model = CATALOG.get(typ).params
    if key not in model.model_fields:
        return False
    try:
        model.__pydantic_validator__.validate_assignment(model.model_construct(), key, value)
    except ValidationError:
        return False
    return True


def ref_resolves(
    ref: str, block_id: str, wf: SerializedWorkflow, g: nx.DiGraph, by_name: dict[str, str]
) -> bool:
    head, *rest = ref.split(".")
    if head == "trigger":
        schema = wf.metadata.input_schema if wf.metadata else None
        if schema and "properties" in schema and rest:
            return rest[0] in schema["properties"]
        return True
    if head == "env":
        return bool(rest)
    if head == "vars":
        return bool(rest) and rest[0] in (wf.variables or {})
    enabled = any(b.id == head and b.enabled for b in wf.blocks)  # a disabled id: its name
    target = head if enabled else by_name.get(head)
    if target is None or target not in nx.ancestors(g, block_id):
        return False
    fields = CATALOG.get(next(b.type for b in wf.blocks if b.id == target)).output_fields
    return not rest or fields is None or rest[0] in fields


def unresolved(wf: SerializedWorkflow) -> set[tuple[str, str]]:
    """(block, param) pairs holding a ref that does not resolve, or a whole ref that cannot fit
    the param's type. A disabled block is judged as if it were enabled, with only its edges
    from enabled blocks."""
    enabled = [b for b in wf.blocks if b.enabled]
    g: nx.DiGraph = nx.DiGraph()
    g.add_nodes_from(b.id for b in enabled)
    g.add_edges_from(
        (c.source, c.target) for c in wf.connections if c.source in g and c.target in g
    )
    by_name: dict[str, str] = {}
    for b in enabled:
        if b.name:
            by_name.setdefault(b.name, b.id)
    types = {b.id: b.type for b in enabled}
    type_of = {**{n: types[i] for n, i in by_name.items()}, **types}
    schema = wf.metadata.input_schema if wf.metadata else None

    def kinds_of(ref: str) -> set[str] | None:
        return ref_kinds(ref, type_of, wf.variables, bool(schema and "properties" in schema))

    out = set()
    for b in wf.blocks:
        gb = g
        if not b.enabled:
            gb = g.copy()
            gb.add_edges_from(
                (c.source, b.id) for c in wf.connections if c.target == b.id and c.source in g
            )
        out |= {
            (b.id, key)
            for key, value in b.params.items()
            if not all(ref_resolves(r, b.id, wf, gb, by_name) for r in iter_refs(value))
            or not type_fits(b.type, key, value, kinds_of)
        }
    return out


def check_result(
    wf: SerializedWorkflow,
    ops: list[Any],
    max_ops: int,
    res: ApplyResult,
    allow_env: tuple[str, ...] = (),
) -> None:
    out = res.workflow
    before = {b.id: b for b in wf.blocks}
    after = {b.id: b for b in out.blocks}
    exists, deleted, sources, connects = simulate_blocks(wf, ops, max_ops, allow_env)

    # ok means exactly: nothing skipped, nothing left to fix.
    assert res.ok == (not res.skipped_items and not res.validation_errors), res.summary

    # Structure: unique ids, no ghost edges, acyclic (over every connection, disabled included).
    assert len(after) == len(out.blocks)
    assert check_structure(out, CATALOG) == []
    g: nx.DiGraph = nx.DiGraph()
    g.add_nodes_from(after)
    g.add_edges_from((c.source, c.target) for c in out.connections)
    assert set(g.nodes) == set(after), "a connection names a block that does not exist"
    assert nx.is_directed_acyclic_graph(g), nx.find_cycle(g)

    # The blocks are exactly those the ops leave (adds of free valid ids, deletes of existing).
    assert set(after) == exists
    old_edges = {(c.source, c.target, c.source_handle) for c in wf.connections}
    new_edges = {(c.block_id, c.target_block_id, c.source_handle or None) for c in connects}
    for c in out.connections:
        assert (c.source, c.target, c.source_handle) in old_edges | new_edges

    # Refs: each unresolved one is reported on its block and field; the oracle and check_refs agree.
    bad = unresolved(out)
    reported = {(i.block_id, i.field) for i in res.validation_errors}
    for bid, key in bad:
        # A hidden param is reported on its block without its name (the LLM never sees it).
        named = (bid, None if key in HIDDEN[after[bid].type] else key)
        assert not res.ok and named in reported, f"unreported bad ref at {bid}.{key}: {res.summary}"
    assert {(i.block_id, i.field) for i in check_refs(out, CATALOG, disabled=True)} == bad
    if res.ok:
        assert check_refs(out, CATALOG) == []
        assert check_workflow(out, CATALOG) == [], "ok=True but the workflow does not compile"
        for b in out.blocks:
            assert runtime_accepts(b), f"ok=True but {b.type} would reject {b.id}'s params"

    for bid, block in after.items():
        survivor = bid in before and bid not in deleted
        old = before[bid].params if survivor else {}
        if survivor:
            assert block.type == before[bid].type
        # Hidden and user-only params: never set by an op, never lost on a survivor.
        for key in HIDDEN[block.type] | USER_ONLY[block.type]:
            assert block.params.get(key, ABSENT) == old.get(key, ABSENT), (bid, key)
        # A block the batch added or edited that misses a required (non-hidden) param says so.
        if not survivor or block.params != old:
            for name, f in CATALOG.get(block.type).params.model_fields.items():
                if (
                    f.is_required()
                    and name not in HIDDEN[block.type]
                    and name not in block.params
                    and block.type != "trigger_webhook"
                ):
                    assert (bid, name) in reported, f"{bid} lacks {name!r}, unreported"
        # Provenance: every value is the input's or one an op addressed to this block sent.
        offered = sources.get(bid, [])
        for key, value in block.params.items():
            if survivor and key in old and old[key] == value:
                continue
            assert any(key in p and p[key] == value for p in offered), (
                f"{bid}.{key} = {value!r:.80} came from neither the input nor an op on {bid}"
            )
            # A value an op set stays only if its refs resolve, and (when literal) only if the
            # connector's params model accepts it.
            assert (bid, key) not in bad, f"op-set {bid}.{key} kept with a bad ref"
            if not has_template(value):
                assert field_accepts(block.type, key, value), (
                    f"{bid}.{key} = {value!r:.80} kept, but {block.type} rejects it at run time"
                )

    # Secrets: attempted hidden values land nowhere; old hidden values are never echoed.
    assert OP_SECRET not in out.to_json() and OP_USER not in out.to_json()
    assert OP_SECRET not in res.summary
    for item in res.skipped_items:
        assert OP_SECRET not in item.model_dump_json()
    for issue in [*res.validation_errors]:
        text = issue.model_dump_json()
        assert ORIG_SECRET not in text
        if OP_SECRET in text:  # only an unknown field's value may be echoed
            assert issue.field not in HIDDEN.get(issue.block_type, ()), issue
    assert ORIG_SECRET not in res.summary
    assert ORIG_SECRET not in json.dumps(redact_for_llm(out, CATALOG))

    # No env ref the input did not read, unless allowed.
    assert _env_names([b.params for b in out.blocks]) <= (
        _env_names([b.params for b in wf.blocks]) | set(allow_env)
    )

    # The result serializes and round-trips.
    text = res.model_dump_json()
    assert json.loads(text)["ok"] is res.ok
    back = ApplyResult.model_validate_json(text)
    assert back.workflow.to_json() == out.to_json()
    assert back.summary == res.summary


# ── the properties ──


def _run(
    wf: SerializedWorkflow, ops: list[Any], form: str, max_ops: int, allow_env: Any = ()
) -> ApplyResult:
    wf_json = wf.to_json()
    ops_copy = copy.deepcopy(ops)
    arg: Any = {"model": wf, "dict": wf.to_dict(), "json": wf_json}[form]
    arg_copy = copy.deepcopy(arg)
    res = apply_operations(arg, ops, CATALOG, max_ops=max_ops, allow_env=allow_env)
    assert isinstance(res, ApplyResult)
    assert wf.to_json() == wf_json, "the input workflow was mutated"
    assert arg == arg_copy, "the input workflow was mutated"
    assert ops == ops_copy, "the ops were mutated"
    return res


# Counter-examples found while writing these properties (all fixed in 43aa0e3), pinned as plain
# tests so they run deterministically:
_EDIT_DELETE_READD = (
    SerializedWorkflow.model_validate(
        {
            "blocks": [
                {"id": "b0", "type": "trigger_webhook"},
                {"id": "b1", "type": "http", "params": {"url": "https://orig.example"}},
            ],
            "connections": [{"source": "b0", "target": "b1"}],
        }
    ),
    [
        {"operation_type": "edit", "block_id": "b1", "params": {"url": "https://x.example"}},
        {"operation_type": "delete", "block_id": "b1"},
        {
            "operation_type": "add",
            "block_id": "b1",
            "type": "http",
            "params": {"url": "{{ghost.body}}"},
        },
    ],
    "model",
    500,
)
_TWO_BAD_REFS_ONE_FIELD = (
    SerializedWorkflow(),
    [
        {
            "operation_type": "add",
            "block_id": "t",
            "type": "transform",
            "params": {"template": "{{ghost.a}} {{ghost.b}}"},
        }
    ],
    "model",
    500,
)
_ADD_WITHOUT_PARAMS = (
    SerializedWorkflow(),
    [{"operation_type": "add", "block_id": "h", "type": "http", "params": {}}],
    "model",
    500,
)
_REVERT_TO_NULL = (  # the value before the batch is JSON null: the revert must still happen
    SerializedWorkflow.model_validate(
        {
            "blocks": [
                {"id": "b0", "type": "trigger_webhook"},
                {
                    "id": "b1",
                    "type": "slack",
                    "params": {"operation": "send", "channel": "#c", "text": "t", "threadTs": None},
                },
            ],
            "connections": [{"source": "b0", "target": "b1"}],
        }
    ),
    [{"operation_type": "edit", "block_id": "b1", "params": {"threadTs": "{{ghost.ts}}"}}],
    "dict",
    500,
)


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases())
def test_apply_operations_keeps_every_guarantee(case: tuple[Any, ...]) -> None:
    wf, ops, form, max_ops, allow_env = case
    res = _run(wf, ops, form, max_ops, allow_env)
    event(f"ok={res.ok}")
    event(f"reverted={any('was not changed' in i.error for i in res.validation_errors)}")
    event(f"env_refused={any(s.reason_code == 'env_ref_not_allowed' for s in res.skipped_items)}")
    check_result(wf, ops, max_ops, res, allow_env)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wf=workflows(), data=st.data())
def test_hidden_and_user_only_attempts_change_nothing(
    wf: SerializedWorkflow, data: st.DataObject
) -> None:
    """Ops that only try to set hidden/user-only params leave the workflow as it was."""
    ops: list[Any] = []
    for b in wf.blocks:
        attempt = {k: OP_SECRET for k in HIDDEN[b.type]} | {k: OP_USER for k in USER_ONLY[b.type]}
        if attempt:
            ops.append(
                {
                    "operation_type": data.draw(st.sampled_from(["edit", "update"])),
                    "block_id": b.id,
                    "params": attempt,
                }
            )
    ops.append(
        {
            "operation_type": "add",
            "block_id": "n1",
            "type": "vault_query",
            "params": {"query": "q", "apiKey": OP_SECRET, "region": OP_USER},
        }
    )
    ops.append(
        {
            "operation_type": "add",
            "block_id": "n2",
            "type": "slack",
            "params": {"operation": "send", "channel": "#c", "text": "t", "accessToken": OP_SECRET},
        }
    )
    res = _run(wf, ops, "model", 500)
    check_result(wf, ops, 500, res)
    assert not res.ok
    dropped = {(i.block_id, i.field) for i in res.validation_errors}
    for op in ops:
        for key in op["params"]:
            if key not in ("query", "operation", "channel", "text"):
                assert (op["block_id"], key) in dropped  # every attempt is reported
    after = {b.id: b for b in res.workflow.blocks}
    for b in wf.blocks:  # existing blocks unchanged, secrets and all
        assert after[b.id] == b
    assert res.workflow.blocks[-2].params == {"query": "q"}
    assert res.workflow.blocks[-1].params == {"operation": "send", "channel": "#c", "text": "t"}


def test_the_custom_connector_has_the_markers_the_properties_rely_on() -> None:
    assert HIDDEN["vault_query"] == {"apiKey"}
    assert USER_ONLY["vault_query"] == {"region"}
    assert "accessToken" in HIDDEN["slack"] and "resumeBaseUrl" in USER_ONLY["human_approval"]


@pytest.mark.parametrize(
    "case",
    [_TWO_BAD_REFS_ONE_FIELD, _ADD_WITHOUT_PARAMS, _EDIT_DELETE_READD, _REVERT_TO_NULL],
    ids=[
        "two-bad-refs-in-one-field",
        "add-without-required-params",
        "edit-delete-readd-resurrects-value",
        "revert-to-null",
    ],
)
def test_known_counter_examples(case: tuple[Any, ...]) -> None:
    wf, ops, form, max_ops = case
    res = _run(wf, ops, form, max_ops)
    check_result(wf, ops, max_ops, res)


@pytest.mark.parametrize(
    ("typ", "params"),
    [
        ("http", {"url": "https://a.example", "method": "post"}),  # the model upper-cases it
        ("http", {"url": "https://a.example", "method": "BREW"}),
        ("wait_duration", {"duration": -5, "unit": "s"}),  # Field(ge=0)
        ("wait_duration", {"duration": 5, "unit": "s"}),
        ("wait_for_event", {"eventName": "e", "timeoutHours": 0}),  # Field(gt=0)
        ("human_approval", {"prompt": "ok?", "timeoutHours": -1}),  # Field(gt=0)
        ("slack", {"operation": "send", "channel": "", "text": "t"}),  # Field(min_length=1)
    ],
)
def test_apply_accepts_exactly_what_the_params_model_accepts(
    typ: str, params: dict[str, Any]
) -> None:
    """ok must mean the step's params will validate when it runs (and nothing more)."""
    res = apply_operations(
        SerializedWorkflow(),
        [{"operation_type": "add", "block_id": "s", "type": typ, "params": params}],
        CATALOG,
    )
    block = res.workflow.blocks[0]
    if res.ok:
        assert runtime_accepts(block), f"ok=True, but {typ} rejects {params} at run time"
    else:
        assert not runtime_accepts(block.model_copy(update={"params": params})), (
            f"{typ} accepts {params} at run time, but apply_operations refused it: {res.summary}"
        )
