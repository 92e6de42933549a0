"""Graph-to-text encodings. The default is G1's edge list with 1-based labels.

An encoding is a function ``(graph, weighted) -> str`` that describes the graph; the prompt
template adds the task and the question around it. Edges are written in the order stored in
``graph.graph["edge_order"]`` (the generator shuffles it) so the text does not reveal
structure through ordering.
"""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx

from g1.graphs import check_graph

__all__ = ["ENCODINGS", "encode_graph", "ordered_edges"]


def ordered_edges(graph: nx.Graph) -> list[tuple]:
    """The graph's edges as ``(u, v)`` in their stored order (sorted if none is stored)."""
    stored = graph.graph.get("edge_order")
    if stored is not None and len(stored) == graph.number_of_edges():
        return [tuple(edge) for edge in stored]
    return sorted(graph.edges)


def _weight_text(graph: nx.Graph, u: int, v: int) -> str:
    weight = graph[u][v]["weight"]
    return str(int(weight)) if float(weight).is_integer() else f"{weight:g}"


def _header(graph: nx.Graph) -> str:
    kind = "directed" if graph.is_directed() else "undirected"
    nodes = sorted(graph.nodes)
    return f"Here is a{'n' if kind == 'undirected' else ''} {kind} graph containing nodes from {nodes[0]} to {nodes[-1]}."


def _edge_list(graph: nx.Graph, weighted: bool) -> str:
    if weighted:
        items = [f"({u}, {v}, {_weight_text(graph, u, v)})" for u, v in ordered_edges(graph)]
        legend = " Each edge is written as (u, v, weight)."
    else:
        items = [f"({u}, {v})" for u, v in ordered_edges(graph)]
        legend = " Each edge (u, v) points from u to v." if graph.is_directed() else ""
    return f"{_header(graph)} The edges are: {', '.join(items) if items else 'none'}.{legend}"


def _adjacency(graph: nx.Graph, weighted: bool) -> str:
    lines = [_header(graph)]
    relation = "has edges to" if graph.is_directed() else "is connected to"
    for node in sorted(graph.nodes):
        neighbours = sorted(
            graph.successors(node) if graph.is_directed() else graph.neighbors(node)
        )
        if weighted:
            described = [
                f"{other} (weight {_weight_text(graph, node, other)})" for other in neighbours
            ]
        else:
            described = [str(other) for other in neighbours]
        lines.append(f"Node {node} {relation} {', '.join(described) if described else 'no node'}.")
    return "\n".join(lines)


def _incident(graph: nx.Graph, weighted: bool) -> str:
    sentences = [_header(graph)]
    for u, v in ordered_edges(graph):
        link = (
            f"Node {u} points to node {v}"
            if graph.is_directed()
            else f"Node {u} is connected to node {v}"
        )
        sentences.append(
            f"{link} with weight {_weight_text(graph, u, v)}." if weighted else f"{link}."
        )
    return " ".join(sentences)


def _arrows(graph: nx.Graph, weighted: bool) -> str:
    """GraphWiz's style: ``(u->v)``, or ``(u->v,w)`` with weights; ``(u-v)`` if undirected."""
    arrow = "->" if graph.is_directed() else "-"
    if weighted:
        items = [f"({u}{arrow}{v},{_weight_text(graph, u, v)})" for u, v in ordered_edges(graph)]
    else:
        items = [f"({u}{arrow}{v})" for u, v in ordered_edges(graph)]
    return f"{_header(graph)} The edges are: {' '.join(items) if items else 'none'}."


ENCODINGS: dict[str, Callable[[nx.Graph, bool], str]] = {
    "edge_list": _edge_list,
    "adjacency": _adjacency,
    "incident": _incident,
    "arrows": _arrows,
}
"""Encoding name -> ``(graph, weighted) -> text``; ``edge_list`` is G1's and the default."""


def encode_graph(graph: nx.Graph, *, weighted: bool = False, encoding: str = "edge_list") -> str:
    """Describe ``graph`` in words with the named encoding."""
    check_graph("graph", graph)
    if graph.number_of_nodes() == 0:
        raise ValueError("graph must have at least one node to be described")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {sorted(ENCODINGS)}, got {encoding!r}")
    return ENCODINGS[encoding](graph, weighted)
