"""The workflow DAG on networkx: build it, check cycles, ask what is upstream, lay it out.

This is the one module that uses networkx, and it imports it on first use:
the import costs ~80 ms that ``%load_ext thodare_jupyter`` should not pay.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .wire import SerializedConnection, SerializedWorkflow

if TYPE_CHECKING:
    import networkx as nx


def digraph(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> nx.DiGraph[str]:
    """A DiGraph of these nodes and edges."""
    import networkx as nx

    g: nx.DiGraph[str] = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    return g


def build_graph(workflow: SerializedWorkflow, *, include_disabled: bool = False) -> nx.DiGraph[str]:
    """A DiGraph of the (enabled) blocks; edges to missing/disabled blocks are left out.

    Each edge carries its :class:`SerializedConnection` as ``conn``.
    """
    import networkx as nx

    g: nx.DiGraph[str] = nx.DiGraph()
    for b in workflow.blocks:
        if b.enabled or include_disabled:
            g.add_node(b.id)
    for c in workflow.connections:
        if c.source in g and c.target in g:
            g.add_edge(c.source, c.target, conn=c)
    return g


def find_cycle(g: nx.DiGraph[str]) -> list[str] | None:
    """The block ids of one cycle, or ``None`` when the graph is acyclic."""
    import networkx as nx

    if nx.is_directed_acyclic_graph(g):  # the common case, and faster than find_cycle
        return None
    try:
        edges = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return None
    return [u for u, _v, *_ in edges]


def would_cycle(g: nx.DiGraph[str], source: str, target: str) -> bool:
    """True when adding ``source → target`` to ``g`` would close a cycle."""
    if source == target:
        return True
    if source not in g or target not in g:
        return False
    import networkx as nx

    return bool(nx.has_path(g, target, source))


class Upstream:
    """Answers "is A upstream of B" for a whole graph in one topological pass.

    Ancestor sets are kept as integer bitsets, so a 1,000-block chain costs a
    few milliseconds instead of a quadratic walk.
    """

    def __init__(self, g: nx.DiGraph[str]) -> None:
        import networkx as nx

        self._bit = {n: 1 << i for i, n in enumerate(g.nodes)}
        self._anc: dict[str, int] = {}
        try:
            order = list(nx.topological_sort(g))
        except nx.NetworkXUnfeasible:  # a cycle: fall back to one walk per node
            for n in g.nodes:
                self._anc[n] = sum(self._bit[a] for a in nx.ancestors(g, n) if a != n)
            return
        for n in order:
            mask = 0
            for p in g.predecessors(n):
                mask |= self._anc[p] | self._bit[p]
            self._anc[n] = mask

    def is_upstream(self, candidate: str, of: str) -> bool:
        """True when ``candidate`` is a strict ancestor of ``of``."""
        bit = self._bit.get(candidate)
        return bit is not None and bool(self._anc.get(of, 0) & bit)

    def ancestors(self, of: str) -> set[str]:
        """Every strict ancestor of ``of``."""
        mask = self._anc.get(of, 0)
        return {n for n, b in self._bit.items() if mask & b}


def descendants(g: nx.DiGraph[str], roots: Iterable[str]) -> set[str]:
    """``roots`` and everything reachable from them."""
    import networkx as nx

    out: set[str] = set()
    for r in roots:
        if r in g and r not in out:
            out.add(r)
            out |= nx.descendants(g, r)
    return out


def layers(g: nx.DiGraph[str]) -> list[list[str]]:
    """Blocks grouped by depth (longest path from a root), for left-to-right drawing."""
    import networkx as nx

    return [sorted(layer) for layer in nx.topological_generations(g)]


def topological_order(g: nx.DiGraph[str]) -> list[str]:
    """The blocks in an order where every edge points forward (``g`` must be acyclic)."""
    import networkx as nx

    return list(nx.topological_sort(g))


def handle_of(conn: SerializedConnection) -> str:
    """The branch handle of an edge (``"__default__"`` when it has none)."""
    return conn.source_handle or "__default__"
