"""Graph sources: random-walk subgraphs of the graphs bundled with networkx, and random families.

Every sampler takes a :class:`random.Random` and a node count and returns a graph on the nodes
``1..n`` (labels shuffled, so a label never leaks a node's role in the source graph). Isolated
nodes are kept. Determinism: all randomness flows from the one ``rng``; networkx generators get
an integer seed drawn from it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from functools import cache

import networkx as nx

from kernelkit.validation import check_int_in_range

__all__ = [
    "FAMILIES",
    "REAL_GRAPHS",
    "TEST_PERCENT",
    "graph_split",
    "random_walk_subgraph",
    "sample_graph",
    "structure_hash",
]

TEST_PERCENT = 20
"""Share (in percent) of isomorphism classes whose graphs go to the test split."""

_RESTART_PROBABILITY = 0.15


@cache
def _real_graph(name: str) -> nx.Graph:
    loaders = {
        "karate": nx.karate_club_graph,
        "davis": nx.davis_southern_women_graph,
        "florentine": nx.florentine_families_graph,
        "les_miserables": nx.les_miserables_graph,
    }
    graph = loaders[name]()
    # Sorted string labels give one fixed integer labelling on every machine.
    order = sorted(graph.nodes, key=str)
    return nx.relabel_nodes(nx.Graph(graph.edges), {node: i for i, node in enumerate(order)})


REAL_GRAPHS = ("karate", "davis", "florentine", "les_miserables")
"""The real graphs bundled with networkx that subgraphs are drawn from."""


def _relabel_shuffled(graph: nx.Graph, rng: random.Random) -> nx.Graph:
    nodes = sorted(graph.nodes)
    labels = list(range(1, len(nodes) + 1))
    rng.shuffle(labels)
    mapping = dict(zip(nodes, labels, strict=True))
    relabelled = graph.__class__()
    relabelled.add_nodes_from(range(1, len(nodes) + 1))
    relabelled.add_edges_from((mapping[u], mapping[v]) for u, v in graph.edges)
    return relabelled


def random_walk_subgraph(source: nx.Graph, n_nodes: int, rng: random.Random) -> nx.Graph:
    """The subgraph induced by the first ``n_nodes`` nodes a random walk with restart visits.

    The walk restarts at its start node with probability 0.15 per step; if it stays inside a
    set smaller than ``n_nodes`` for ``20 * n_nodes`` steps, it jumps to an unvisited node.
    """
    if n_nodes > source.number_of_nodes():
        raise ValueError(
            f"n_nodes must be at most the source graph's {source.number_of_nodes()} nodes, "
            f"got {n_nodes}"
        )
    nodes = sorted(source.nodes)
    start = rng.choice(nodes)
    visited = {start}
    order = [start]
    current = start
    steps_without_news = 0
    while len(order) < n_nodes:
        neighbours = sorted(source.neighbors(current))
        if not neighbours or rng.random() < _RESTART_PROBABILITY:
            current = start
        else:
            current = rng.choice(neighbours)
        if current not in visited:
            visited.add(current)
            order.append(current)
            steps_without_news = 0
        else:
            steps_without_news += 1
        if steps_without_news > 20 * n_nodes:
            start = current = rng.choice([node for node in nodes if node not in visited])
            visited.add(current)
            order.append(current)
            steps_without_news = 0
    return nx.Graph(source.subgraph(order))


def _real(name: str) -> Callable[[random.Random, int], nx.Graph]:
    def sample(rng: random.Random, n_nodes: int) -> nx.Graph:
        return random_walk_subgraph(_real_graph(name), n_nodes, rng)

    return sample


def _mean_degree_probability(rng: random.Random, n_nodes: int) -> float:
    return min(1.0, rng.uniform(1.5, 5.0) / max(1, n_nodes - 1))


def _erdos_renyi(rng: random.Random, n_nodes: int) -> nx.Graph:
    p = _mean_degree_probability(rng, n_nodes)
    return nx.gnp_random_graph(n_nodes, p, seed=rng.randrange(2**32))


def _barabasi_albert(rng: random.Random, n_nodes: int) -> nx.Graph:
    m = rng.randint(1, min(3, n_nodes - 1))
    return nx.barabasi_albert_graph(n_nodes, m, seed=rng.randrange(2**32))


def _watts_strogatz(rng: random.Random, n_nodes: int) -> nx.Graph:
    k = min(rng.choice([2, 4]), n_nodes - 1)
    return nx.watts_strogatz_graph(n_nodes, k, rng.uniform(0.1, 0.5), seed=rng.randrange(2**32))


def _bipartite(rng: random.Random, n_nodes: int) -> nx.Graph:
    left = rng.randint(max(1, n_nodes // 3), max(1, n_nodes - n_nodes // 3))
    right = n_nodes - left
    p = min(1.0, rng.uniform(1.5, 4.0) / max(1, min(left, right)))
    return _with_nodes(
        nx.bipartite.random_graph(left, right, p, seed=rng.randrange(2**32)), n_nodes
    )


def _with_nodes(graph: nx.Graph, n_nodes: int) -> nx.Graph:
    result = graph.__class__()
    result.add_nodes_from(range(n_nodes))
    result.add_edges_from(graph.edges)
    return result


def _random_dag(rng: random.Random, n_nodes: int) -> nx.DiGraph:
    p = _mean_degree_probability(rng, n_nodes)
    graph = nx.DiGraph()
    graph.add_nodes_from(range(n_nodes))
    graph.add_edges_from(
        (i, j) for i in range(n_nodes) for j in range(i + 1, n_nodes) if rng.random() < p
    )
    return graph


def _random_digraph(rng: random.Random, n_nodes: int) -> nx.DiGraph:
    p = _mean_degree_probability(rng, n_nodes) / 1.5
    return nx.gnp_random_graph(n_nodes, p, seed=rng.randrange(2**32), directed=True)


def _tournament(rng: random.Random, n_nodes: int) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(range(n_nodes))
    for i in range(n_nodes):
        for j in range(i + 1, n_nodes):
            graph.add_edge(*((i, j) if rng.random() < 0.5 else (j, i)))
    return graph


def _complete(rng: random.Random, n_nodes: int) -> nx.Graph:
    return nx.complete_graph(n_nodes)


def _regular(rng: random.Random, n_nodes: int) -> nx.Graph:
    degrees = [d for d in (2, 3, 4) if d < n_nodes and (d * n_nodes) % 2 == 0]
    return nx.random_regular_graph(rng.choice(degrees), n_nodes, seed=rng.randrange(2**32))


FAMILIES: dict[str, Callable[[random.Random, int], nx.Graph]] = {
    **{name: _real(name) for name in REAL_GRAPHS},
    "erdos_renyi": _erdos_renyi,
    "barabasi_albert": _barabasi_albert,
    "watts_strogatz": _watts_strogatz,
    "bipartite": _bipartite,
    "random_dag": _random_dag,
    "random_digraph": _random_digraph,
    "tournament": _tournament,
    "complete": _complete,
    "regular": _regular,
}
"""Graph family name -> sampler ``(rng, n_nodes) -> graph`` (labels not yet shuffled)."""

FAMILY_MAX_NODES = {name: _real_graph(name).number_of_nodes() for name in REAL_GRAPHS}


def sample_graph(family: str, n_nodes: int, rng: random.Random) -> nx.Graph:
    """A graph of ``family`` on nodes ``1..n_nodes`` in shuffled order."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    graph = FAMILIES[family](rng, n_nodes)
    if graph.number_of_nodes() != n_nodes:
        raise RuntimeError(f"{family} produced {graph.number_of_nodes()} nodes, not {n_nodes}")
    return _relabel_shuffled(graph, rng)


def check_graph(name: str, graph: object) -> nx.Graph:
    """Require a networkx graph (any of its four classes)."""
    if not isinstance(graph, nx.Graph):
        raise TypeError(f"{name} must be a networkx graph, got {type(graph).__name__}")
    return graph


def structure_hash(graph: nx.Graph, *, iterations: int = 3) -> str:
    """Weisfeiler-Lehman hash of the unlabelled graph (direction and edge weights kept).

    Written here rather than taken from networkx because networkx changed its hashes in 3.5;
    the split must not depend on the installed networkx version. Isomorphic graphs (with
    equal weights on corresponding edges) always get the same hash.
    """
    check_graph("graph", graph)
    check_int_in_range("iterations", iterations, 0)

    def digest(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def weight(u, v) -> str:
        return repr(graph[u][v].get("weight"))

    directed = graph.is_directed()
    labels = {
        node: (
            f"{graph.in_degree(node)},{graph.out_degree(node)}"
            if directed
            else str(graph.degree(node))
        )
        for node in graph.nodes
    }
    for _ in range(iterations):
        updated = {}
        for node in graph.nodes:
            outgoing = sorted(
                f">{labels[other]}:{weight(node, other)}" for other in graph.adj[node]
            )
            incoming = (
                sorted(f"<{labels[other]}:{weight(other, node)}" for other in graph.pred[node])
                if directed
                else []
            )
            updated[node] = digest("|".join([labels[node], *outgoing, *incoming]))
        labels = updated
    return digest(f"{int(directed)}|" + "|".join(sorted(labels.values())))


def graph_split(graph: nx.Graph) -> str:
    """``"test"`` or ``"train"``, a function of the graph's isomorphism class alone.

    Isomorphic graphs have equal Weisfeiler-Lehman hashes, so two graphs in different splits
    are never isomorphic: the split is leak-free up to isomorphism by construction.
    """
    check_graph("graph", graph)
    digest = hashlib.sha256(structure_hash(graph).encode()).hexdigest()
    return "test" if int(digest[:8], 16) % 100 < TEST_PERCENT else "train"
