"""A layered left-to-right layout of a workflow DAG, as plain data.

Sugiyama in four steps: longest-path layers (:func:`~thodare_jupyter.graph.layers`,
so every edge points right), a dummy vertex wherever an edge skips a layer, a few
barycenter sweeps to reduce crossings (the best order seen is kept), then
coordinates for fixed-size boxes and a polyline per connection. The static SVG and
the widget's front end both draw from :meth:`Layout.to_dict`. Only ids, types and
handles are laid out: params (hidden ones above all) never enter the picture.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from ..graph import build_graph, layers
from ..wire import SerializedBlock, SerializedConnection, SerializedWorkflow

if TYPE_CHECKING:
    import networkx as nx

NODE_W, NODE_H = 168, 48
TRIGGER, TRIGGER_W, TRIGGER_LABEL = "trigger_webhook", 64, "input"
"""The trigger (the run's input, however it came: code, webhook, schedule) is drawn as a
small start marker, not a step: it names no connector a user chose."""
COL_GAP, ROW_GAP, DUMMY_H, MARGIN, STUB = 72, 20, 12, 24, 10
ID_CHARS, TYPE_CHARS = 20, 24
"""Characters of an id / a type shown in a box (12px / 11px monospace); longer ones get "…"."""
SWEEPS = 4
DUMMY_BUDGET = 5000
"""Above this many layer-skipping segments, long edges are drawn straight (no dummies)."""

Point = tuple[int, int]
_Key = str | tuple[int, int]  # a block id, or (connection index, layer) for a dummy vertex


@dataclass(frozen=True)
class NodeBox:
    """One block's box: top-left corner, size, layer and the (clipped) texts drawn in it."""

    id: str
    label: str
    type: str
    type_label: str
    x: int
    y: int
    width: int
    height: int
    layer: int
    disabled: bool


@dataclass(frozen=True)
class EdgePath:
    """One connection drawn as a polyline from the source's right to the target's left."""

    source: str
    target: str
    label: str | None
    points: tuple[Point, ...]
    label_at: Point | None


@dataclass(frozen=True)
class Layout:
    """Boxes, polylines and canvas size of a workflow; ``crossings`` between adjacent layers."""

    nodes: tuple[NodeBox, ...]
    edges: tuple[EdgePath, ...]
    width: int
    height: int
    crossings: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (lists, not tuples) the widget's front end draws from."""
        return {
            "width": self.width,
            "height": self.height,
            "crossings": self.crossings,
            "nodes": [asdict(n) for n in self.nodes],
            "edges": [
                {"source": e.source, "target": e.target, "label": e.label,
                 "points": [list(p) for p in e.points],
                 "label_at": list(e.label_at) if e.label_at else None}
                for e in self.edges
            ],
        }  # fmt: skip


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the last one an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _back_edges(g: nx.DiGraph[str]) -> set[tuple[str, str]]:
    """Edges closing a cycle (in DFS order); removing them leaves a DAG."""
    state: dict[str, bool] = {}  # True while on the DFS stack
    back: set[tuple[str, str]] = set()
    for root in g.nodes:
        if root in state:
            continue
        state[root] = True
        stack = [(root, iter(g.successors(root)))]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = False
                stack.pop()
            elif nxt not in state:
                state[nxt] = True
                stack.append((nxt, iter(g.successors(nxt))))
            elif state[nxt]:
                back.add((node, nxt))
    return back


def _crossings(order: list[list[_Key]], down: Mapping[_Key, list[_Key]]) -> int:
    """Edge crossings between adjacent layers (an inversion count per pair of layers)."""
    total = 0
    for upper, lower in pairwise(order):
        pos = {k: p for p, k in enumerate(lower)}
        seen: list[int] = []
        for k in upper:
            for p in sorted(pos[t] for t in down[k]):
                total += len(seen) - bisect_right(seen, p)
                insort(seen, p)
    return total


def _sweep(order: list[list[_Key]], nbrs: Mapping[_Key, list[_Key]], rows: range, ref: int) -> None:
    """Reorder each layer in ``rows`` by the mean position of its neighbours in layer ``i+ref``."""
    for i in rows:
        pos = {k: p for p, k in enumerate(order[i + ref])}
        bary = {
            k: sum(pos[n] for n in nbrs[k]) / len(nbrs[k]) if nbrs[k] else float(p)
            for p, k in enumerate(order[i])
        }
        order[i].sort(key=bary.__getitem__)  # stable: ties keep their current order


def _order(
    ranks: list[list[_Key]], up: Mapping[_Key, list[_Key]], down: Mapping[_Key, list[_Key]]
) -> tuple[list[list[_Key]], int]:
    """Barycenter sweeps down and up; the order with the fewest crossings wins."""
    order = [list(r) for r in ranks]
    best, fewest = [list(r) for r in order], _crossings(order, down)
    for _ in range(SWEEPS):
        if fewest == 0:
            break
        for nbrs, rows, ref in ((up, range(1, len(order)), -1),
                                (down, range(len(order) - 2, -1, -1), 1)):  # fmt: skip
            _sweep(order, nbrs, rows, ref)
            if (c := _crossings(order, down)) < fewest:
                best, fewest = [list(r) for r in order], c
    return best, fewest


def layout(workflow: SerializedWorkflow | Mapping[str, Any]) -> Layout:
    """Lay a workflow out left to right; disabled blocks are kept (flagged ``disabled``).

    Works on invalid workflows too: edges to missing blocks are left out, and an
    edge closing a cycle is routed back over the top instead of raising.
    """
    wf = (
        workflow
        if isinstance(workflow, SerializedWorkflow)
        else SerializedWorkflow.model_validate(workflow)
    )
    g = build_graph(wf, include_disabled=True)
    dag = g.copy()
    dag.remove_edges_from(_back_edges(g))
    ranks: list[list[_Key]] = [[*r] for r in layers(dag)]
    layer_of = {n: i for i, r in enumerate(ranks) for n in r}
    conns = [c for c in wf.connections if c.source in g and c.target in g]
    spans = [layer_of[c.target] - layer_of[c.source] for c in conns]
    dummies = sum(s - 1 for s in spans if s > 1) <= DUMMY_BUDGET
    chains: list[list[_Key]] = []
    up: dict[_Key, list[_Key]] = {k: [] for r in ranks for k in r}
    down: dict[_Key, list[_Key]] = {k: [] for r in ranks for k in r}
    for i, (c, span) in enumerate(zip(conns, spans, strict=True)):
        start = layer_of[c.source]
        mids = [(i, start + j) for j in range(1, span)] if dummies else []
        chain: list[_Key] = [c.source, *mids, c.target]
        chains.append(chain)
        for m in mids:
            ranks[m[1]].append(m)
            up[m], down[m] = [], []
        if span == 1 or mids:
            for a, b in pairwise(chain):
                down[a].append(b)
                up[b].append(a)
    order, crossings = _order(ranks, up, down)

    tall = [sum(NODE_H if isinstance(k, str) else DUMMY_H for k in r) + ROW_GAP * (len(r) - 1)
            for r in order]  # fmt: skip
    inner = max(tall, default=0)
    triggers = {b.id for b in wf.blocks if b.type == TRIGGER}
    wide = {k: TRIGGER_W if k in triggers else NODE_W for r in order for k in r}
    col_w = [max((wide[k] for k in r), default=NODE_W) for r in order]
    xy: dict[_Key, Point] = {}
    x = MARGIN
    for li, r in enumerate(order):
        y = MARGIN + (inner - tall[li]) // 2
        for k in r:
            h = NODE_H if isinstance(k, str) else DUMMY_H
            xy[k] = (x, y + h // 2) if isinstance(k, tuple) else (x + col_w[li] - wide[k], y)
            y += h + ROW_GAP
        x += col_w[li] + COL_GAP
    width = MARGIN * 2 + max(sum(col_w) + COL_GAP * (len(order) - 1), 0)
    height = MARGIN * 2 + inner
    return Layout(
        nodes=_boxes(wf, order, xy, wide),
        edges=_edges(conns, chains, xy, spans, wide),
        width=width,
        height=height,
        crossings=crossings,
    )


def _boxes(
    wf: SerializedWorkflow,
    order: list[list[_Key]],
    xy: Mapping[_Key, Point],
    wide: Mapping[_Key, int],
) -> tuple[NodeBox, ...]:
    """A box per block, in layer order then top to bottom (the first block of an id wins);
    the trigger's is the small ``input`` marker."""
    blocks: dict[str, SerializedBlock] = {}
    for b in wf.blocks:
        blocks.setdefault(b.id, b)
    marker = {k: blocks[k].type == TRIGGER for r in order for k in r if isinstance(k, str)}
    return tuple(
        NodeBox(id=k, label=TRIGGER_LABEL if marker[k] else clip(k, ID_CHARS), type=blocks[k].type,
                type_label="" if marker[k] else clip(blocks[k].type, TYPE_CHARS),
                x=xy[k][0], y=xy[k][1], width=wide[k], height=NODE_H, layer=li,
                disabled=not blocks[k].enabled)
        for li, r in enumerate(order) for k in r if isinstance(k, str)
    )  # fmt: skip


def _edges(
    conns: list[SerializedConnection],
    chains: list[list[_Key]],
    xy: Mapping[_Key, Point],
    spans: list[int],
    wide: Mapping[_Key, int],
) -> tuple[EdgePath, ...]:
    """Polylines: ports spread along each box side (sorted by where the edge goes), short
    horizontal stubs at both ends, through each dummy's slot; back edges go over the top."""
    top = MARGIN // 2
    forward = [s > 0 for s in spans]
    first = [xy[ch[1]][1] + (0 if isinstance(ch[1], tuple) else NODE_H // 2) if fw else top
             for ch, fw in zip(chains, forward, strict=True)]  # fmt: skip
    last = [xy[ch[-2]][1] + (0 if isinstance(ch[-2], tuple) else NODE_H // 2) if fw else top
            for ch, fw in zip(chains, forward, strict=True)]  # fmt: skip
    outs: dict[str, list[int]] = {}
    ins: dict[str, list[int]] = {}
    for i, c in enumerate(conns):
        outs.setdefault(c.source, []).append(i)
        ins.setdefault(c.target, []).append(i)
    port: dict[tuple[str, int], int] = {}
    for side, groups, key in (("out", outs, first), ("in", ins, last)):
        for node, idx in groups.items():
            idx.sort(key=key.__getitem__)  # stable: ties keep the workflow's order
            for rank, i in enumerate(idx):
                port[(side, i)] = xy[node][1] + NODE_H * (rank + 1) // (len(idx) + 1)
    edges = []
    for i, (c, ch, fw) in enumerate(zip(conns, chains, forward, strict=True)):
        sx, sy = xy[c.source][0] + wide[c.source], port[("out", i)]
        tx, ty = xy[c.target][0], port[("in", i)]
        pts: list[Point] = [(sx, sy), (sx + STUB, sy)]
        if fw:
            for d in ch[1:-1]:
                pts += [xy[d], (xy[d][0] + wide[d], xy[d][1])]
        else:
            pts += [(sx + STUB, top), (tx - STUB, top)]
        pts += [(tx - STUB, ty), (tx, ty)]
        handle = c.source_handle
        edges.append(EdgePath(c.source, c.target, handle, tuple(pts),
                              (sx + 4, sy - 4) if handle else None))  # fmt: skip
    return tuple(edges)
