"""networkx views of a graph, for analyses (reachability, dominators, cuts, drawing).

The view is built on demand in O(N + E) and cached on the graph's version counter, which every
mutation bumps; it is never the store, so passes stay fast on 100k-node graphs.
"""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx

from neffkit.ir.core import Graph, Node, Value


def to_networkx(graph: Graph) -> nx.DiGraph:
    """A DiGraph of this graph's nodes (no subgraphs); an edge per producer -> user pair.

    Edge attribute ``values`` lists the values flowing along it. Cached until the graph changes.
    """
    return graph.cached("networkx", _build)


def _build(graph: Graph) -> nx.DiGraph:
    g = nx.DiGraph()
    nodes = list(graph)
    g.add_nodes_from(nodes)
    for node in nodes:
        for v in node.outputs:
            for user in v.users:
                if user.graph is graph:
                    data = g.get_edge_data(node, user)
                    if data is None:
                        g.add_edge(node, user, values=[v])
                    else:
                        data["values"].append(v)
    return g


def topological_order(graph: Graph) -> list[Node]:
    """The nodes in a topological order computed from the edges (not the stored order)."""
    return list(nx.topological_sort(to_networkx(graph)))


def has_cycle(graph: Graph) -> bool:
    """True when the use-def edges form a cycle (an invalid graph)."""
    return not nx.is_directed_acyclic_graph(to_networkx(graph))


def ancestors(graph: Graph, values: Iterable[Value]) -> set[Node]:
    """Nodes of ``graph`` whose results some of ``values`` depend on (iteratively, no recursion)."""
    seen: set[Node] = set()
    stack = [v.producer for v in values if v.producer is not None]
    while stack:
        n = stack.pop()
        if n in seen or n.graph is not graph:
            continue
        seen.add(n)
        for v in n.inputs:
            if v is not None and v.producer is not None:
                stack.append(v.producer)
    return seen


def immediate_dominators(graph: Graph) -> dict[Node, Node]:
    """Immediate dominators of the node DAG from a virtual entry that feeds every root."""
    g = to_networkx(graph).copy()
    entry = "__entry__"
    g.add_node(entry)
    for n in list(g.nodes):
        if n is not entry and g.in_degree(n) == 0:
            g.add_edge(entry, n)
    idom = nx.immediate_dominators(g, entry)
    return {k: v for k, v in idom.items() if k is not entry and v is not entry}
