"""Exact solvers for the NP-hard tasks, meant for the small graphs the size caps allow.

``networkx.approximation`` has TSP and vertex-cover heuristics; they are not exact and would
silently mislabel data, so none of them is used here.
"""

from __future__ import annotations

from itertools import combinations

import networkx as nx

__all__ = [
    "hamiltonian_path",
    "minimum_dominating_set",
    "minimum_vertex_cover",
    "tsp_optimal_cost",
]


def minimum_dominating_set(graph: nx.Graph) -> list[int]:
    """A smallest dominating set, by search over subsets in increasing size (bitmasks)."""
    nodes = sorted(graph.nodes)
    index = {node: i for i, node in enumerate(nodes)}
    full = (1 << len(nodes)) - 1
    closed = [
        (1 << index[node]) | sum(1 << index[other] for other in graph.neighbors(node))
        for node in nodes
    ]
    for size in range(1, len(nodes) + 1):
        for chosen in combinations(range(len(nodes)), size):
            covered = 0
            for i in chosen:
                covered |= closed[i]
            if covered == full:
                return [nodes[i] for i in chosen]
    return []


def minimum_vertex_cover(graph: nx.Graph) -> list[int]:
    """A smallest vertex cover: the complement of a maximum clique of the complement graph."""
    clique, _ = nx.max_weight_clique(nx.complement(graph), weight=None)
    return sorted(set(graph.nodes) - set(clique))


def tsp_optimal_cost(graph: nx.Graph, weight: str = "weight") -> float:
    """Cost of an optimal closed tour of a complete weighted graph (Held-Karp dynamic program)."""
    nodes = sorted(graph.nodes)
    n = len(nodes)
    if n < 2:
        return 0.0
    cost = [[graph[u][v][weight] if u != v else 0 for v in nodes] for u in nodes]
    # best[(mask, last)]: cheapest path from node 0 through the set `mask` ending at `last`.
    best = {(1 << i, i): cost[0][i] for i in range(1, n)}
    for size in range(2, n):
        for subset in combinations(range(1, n), size):
            mask = sum(1 << i for i in subset)
            for last in subset:
                previous = mask & ~(1 << last)
                best[(mask, last)] = min(
                    best[(previous, other)] + cost[other][last] for other in subset if other != last
                )
    everything = (1 << n) - 2
    return float(min(best[(everything, last)] + cost[last][0] for last in range(1, n)))


def hamiltonian_path(graph: nx.Graph) -> list[int] | None:
    """A Hamiltonian path (any one), or ``None``: depth-first search with memoised dead ends."""
    nodes = sorted(graph.nodes)
    n = len(nodes)
    if n == 0:
        return None
    index = {node: i for i, node in enumerate(nodes)}
    neighbours = [[index[other] for other in graph.neighbors(node)] for node in nodes]
    full = (1 << n) - 1
    dead_ends: set[tuple[int, int]] = set()

    def extend(path: list[int], mask: int) -> list[int] | None:
        if mask == full:
            return path
        last = path[-1]
        if (mask, last) in dead_ends:
            return None
        for other in neighbours[last]:
            if not mask & (1 << other):
                path.append(other)
                found = extend(path, mask | (1 << other))
                if found is not None:
                    return found
                path.pop()
        dead_ends.add((mask, last))
        return None

    for start in range(n):
        found = extend([start], 1 << start)
        if found is not None:
            return [nodes[i] for i in found]
    return None
