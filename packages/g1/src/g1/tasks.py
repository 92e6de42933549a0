"""The 50 tasks: tier, answer type, graph families, query, exact oracle and verifier for each.

A task's verifier (``check``) receives the instance and an answer already converted to the
task's answer type, and returns ``None`` when the answer is correct or a sentence saying why it
is not. Verifiers accept every valid answer (any BFS order, any shortest path, any optimal
cover...) and require optimality where the task asks for a minimum or maximum; the optimum they
compare with is the instance's cached ``optimum``.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from g1 import solvers

__all__ = [
    "ANSWER_TYPES",
    "FLOAT_TOLERANCE",
    "TASKS",
    "TASK_ALIASES",
    "TIERS",
    "Resample",
    "TaskSpec",
    "resolve_task",
]

FLOAT_TOLERANCE = 1e-3
"""Absolute tolerance on float answers and on optimal weights (G1 uses the same)."""

TIERS = ("easy", "medium", "hard", "challenging")
ANSWER_TYPES = ("bool", "int", "float", "node_set", "node_list", "edge_list", "mapping")


class Resample(Exception):
    """A sampled graph does not suit the task (e.g. no non-adjacent pair); draw another."""


Check = Callable[[Any, Any], "str | None"]


@dataclass(frozen=True)
class TaskSpec:
    """One task of the suite."""

    name: str
    tier: str
    answer_type: str
    description: str
    question: str
    families: tuple[str, ...]
    oracle: Callable[[nx.Graph, dict, nx.Graph | None], tuple[Any, float | None]]
    check: Check
    query: Callable[[nx.Graph, random.Random], dict] = field(default=lambda graph, rng: {})
    directed: bool = False
    weighted: bool = False
    connected: bool = False
    no_isolated: bool = False
    prepare: Callable[[nx.Graph, random.Random], nx.Graph] | None = None
    min_nodes: int = 5
    max_nodes: int = 35
    max_weight: int = 20
    optimisation: bool = False
    aliases: tuple[str, ...] = ()
    differs_from_g1: str = ""


# ----------------------------------------------------------------------------- queries


def _sorted_nodes(graph: nx.Graph) -> list[int]:
    return sorted(graph.nodes)


def _any_node(graph: nx.Graph, rng: random.Random) -> dict:
    return {"node": rng.choice(_sorted_nodes(graph))}


def _non_isolated_node(graph: nx.Graph, rng: random.Random) -> dict:
    nodes = [node for node in _sorted_nodes(graph) if graph.degree(node) > 0]
    if not nodes:
        raise Resample("no node with an edge")
    return {"node": rng.choice(nodes)}


def _pair_near(graph: nx.Graph, rng: random.Random) -> dict:
    """Half the time a pair at distance two, so neighbourhood indices are not mostly zero."""
    nodes = _sorted_nodes(graph)
    if rng.random() < 0.5:
        pairs = sorted(
            (u, v)
            for u in nodes
            for v in nodes
            if u < v
            and not graph.has_edge(u, v)
            and any(True for _ in nx.common_neighbors(graph, u, v))
        )
        if pairs:
            u, v = rng.choice(pairs)
            return {"u": u, "v": v} if rng.random() < 0.5 else {"u": v, "v": u}
    u, v = rng.sample(nodes, 2)
    return {"u": u, "v": v}


def _pair_edge_or_not(graph: nx.Graph, rng: random.Random) -> dict:
    edges = sorted(graph.edges)
    if edges and rng.random() < 0.5:
        u, v = rng.choice(edges)
    else:
        u, v = rng.sample(_sorted_nodes(graph), 2)
    return {"u": u, "v": v} if rng.random() < 0.5 else {"u": v, "v": u}


def _non_adjacent_pair(graph: nx.Graph, rng: random.Random) -> dict:
    nodes = _sorted_nodes(graph)
    pairs = [(u, v) for u in nodes for v in nodes if u != v and not graph.has_edge(u, v)]
    if not pairs:
        raise Resample("complete graph has no non-adjacent pair")
    u, v = rng.choice(pairs)
    return {"source": u, "target": v}


def _connected_pair(graph: nx.Graph, rng: random.Random) -> dict:
    nodes = _sorted_nodes(graph)
    source = rng.choice([node for node in nodes if graph.degree(node) > 0] or nodes)
    reachable = sorted(
        nx.descendants(graph, source)
        if graph.is_directed()
        else nx.node_connected_component(graph, source) - {source}
    )
    if not reachable:
        raise Resample("source reaches no other node")
    return {"source": source, "target": rng.choice(reachable)}


# ----------------------------------------------------------------------------- preparation


def _connect(graph: nx.Graph, rng: random.Random) -> nx.Graph:
    components = [sorted(c) for c in nx.connected_components(graph)]
    components.sort()
    for left, right in itertools.pairwise(components):
        graph.add_edge(rng.choice(left), rng.choice(right))
    return graph


def _plant_hamiltonian_path(graph: nx.Graph, rng: random.Random) -> nx.Graph:
    order = _sorted_nodes(graph)
    rng.shuffle(order)
    graph.add_edges_from(itertools.pairwise(order))
    return graph


def _maybe_make_eulerian(graph: nx.Graph, rng: random.Random) -> nx.Graph:
    graph = _connect(graph, rng)
    if rng.random() < 0.5:
        odd = [node for node in _sorted_nodes(graph) if graph.degree(node) % 2]
        rng.shuffle(odd)
        for u, v in zip(odd[::2], odd[1::2], strict=True):
            if graph.has_edge(u, v):
                graph.remove_edge(u, v)
            else:
                graph.add_edge(u, v)
    return graph


def _maybe_break_tournament(graph: nx.DiGraph, rng: random.Random) -> nx.DiGraph:
    if rng.random() < 0.5:
        u, v = rng.choice(sorted(graph.edges))
        if rng.random() < 0.5:
            graph.remove_edge(u, v)
        else:
            graph.add_edge(v, u)
    return graph


def _no_isolated(graph: nx.Graph, rng: random.Random) -> nx.Graph:
    nodes = _sorted_nodes(graph)
    for node in nodes:
        if graph.degree(node) == 0:
            graph.add_edge(node, rng.choice([other for other in nodes if other != node]))
    return graph


# ----------------------------------------------------------------------------- checks


def _close(a: float, b: float) -> bool:
    return math.isfinite(a) and abs(a - b) <= FLOAT_TOLERANCE


def _equal_value(instance, value) -> str | None:
    reference = instance.answer
    if isinstance(reference, float) or isinstance(value, float):
        if _close(float(value), float(reference)):
            return None
    elif value == reference:
        return None
    return f"answer {value!r} differs from the reference {reference!r}"


def _foreign_nodes(graph: nx.Graph, nodes) -> str | None:
    foreign = [node for node in nodes if node not in graph]
    return f"nodes {foreign[:5]} are not in the graph" if foreign else None


def _repeated(items) -> str | None:
    seen: set = set()
    for item in items:
        if item in seen:
            return f"{item!r} is listed twice"
        seen.add(item)
    return None


def _edge_key(graph: nx.Graph, edge: tuple[int, int]) -> tuple[int, int]:
    return edge if graph.is_directed() else (min(edge), max(edge))


def _edges_in_graph(graph: nx.Graph, edges) -> str | None:
    missing = [edge for edge in edges if not graph.has_edge(*edge)]
    if missing:
        return f"edges {missing[:5]} are not in the graph"
    return _repeated([_edge_key(graph, edge) for edge in edges])


def _equal_node_set(instance, nodes) -> str | None:
    problem = _repeated(nodes)
    if problem:
        return problem
    if set(nodes) != set(instance.answer):
        return f"node set {sorted(nodes)} differs from the reference {sorted(instance.answer)}"
    return None


def _equal_edge_set(instance, edges) -> str | None:
    graph = instance.graph
    keys = [_edge_key(graph, edge) for edge in edges]
    problem = _repeated(keys)
    if problem:
        return problem
    reference = {_edge_key(graph, tuple(edge)) for edge in instance.answer}
    if set(keys) != reference:
        return f"edge set differs from the reference {sorted(reference)}"
    return None


def _size_is_optimal(instance, size: float, what: str) -> str | None:
    if not _close(float(size), float(instance.optimum)):
        return f"{what} {size:g} is not the optimum {instance.optimum:g}"
    return None


def _check_dominating_set(instance, nodes) -> str | None:
    graph = instance.graph
    problem = _foreign_nodes(graph, nodes) or _repeated(nodes)
    if problem:
        return problem
    dominated = set(nodes).union(*(graph.neighbors(node) for node in nodes)) if nodes else set()
    undominated = sorted(set(graph.nodes) - dominated)
    if undominated:
        return f"nodes {undominated[:5]} are not dominated"
    return _size_is_optimal(instance, len(nodes), "dominating set size")


def _orient_tree_edges(graph: nx.Graph, root: int, edges) -> list[tuple[int, int]] | str:
    """Write each undirected edge as (discovered, new), or say why that is impossible."""
    discovered = {root}
    oriented = []
    for u, v in edges:
        if u in discovered and v not in discovered:
            parent, child = u, v
        elif v in discovered and u not in discovered and not graph.is_directed():
            parent, child = v, u
        else:
            return f"edge {(u, v)} does not lead from a visited node to a new one"
        if not graph.has_edge(parent, child):
            return f"edge {(parent, child)} is not in the graph"
        discovered.add(child)
        oriented.append((parent, child))
    return oriented


def _reachable(graph: nx.Graph, root: int) -> set[int]:
    return (
        nx.descendants(graph, root)
        if graph.is_directed()
        else nx.node_connected_component(graph, root)
    ) | {root}


def _check_bfs(instance, edges) -> str | None:
    graph, root = instance.graph, instance.query["node"]
    oriented = _orient_tree_edges(graph, root, edges)
    if isinstance(oriented, str):
        return oriented
    position = {root: 0}
    for _, child in oriented:
        position[child] = len(position)
    last_parent = 0
    for parent, child in oriented:
        if position[parent] < last_parent:
            return f"edge {(parent, child)} expands {parent} after a later-discovered node"
        last_parent = position[parent]
        earlier = (
            [w for w in graph.pred[child] if w in position and position[w] < position[parent]]
            if graph.is_directed()
            else [w for w in graph.neighbors(child) if position.get(w, math.inf) < position[parent]]
        )
        if earlier:
            return f"node {child} would have been discovered from {earlier[0]} before {parent}"
    missing = _reachable(graph, root) - set(position)
    return f"nodes {sorted(missing)[:5]} are reachable but never visited" if missing else None


def _check_dfs(instance, edges) -> str | None:
    graph, root = instance.graph, instance.query["node"]
    oriented = _orient_tree_edges(graph, root, edges)
    if isinstance(oriented, str):
        return oriented
    visited = {root}
    stack = [root]

    def has_unvisited_neighbour(node: int) -> bool:
        return any(other not in visited for other in graph.neighbors(node))

    for parent, child in oriented:
        while stack and stack[-1] != parent:
            if has_unvisited_neighbour(stack[-1]):
                return f"node {stack[-1]} still has unvisited neighbours when the search leaves it"
            stack.pop()
        if not stack:
            return f"edge {(parent, child)} expands a node that is no longer on the search path"
        visited.add(child)
        stack.append(child)
    missing = _reachable(graph, root) - visited
    return f"nodes {sorted(missing)[:5]} are reachable but never visited" if missing else None


def _tree_weight(graph: nx.Graph, edges) -> float:
    return float(sum(graph[u][v].get("weight", 1) for u, v in edges))


def _check_spanning_tree(instance, edges) -> str | None:
    graph = instance.graph
    problem = _edges_in_graph(graph, edges)
    if problem:
        return problem
    if len(edges) != graph.number_of_nodes() - 1:
        return f"{len(edges)} edges cannot span {graph.number_of_nodes()} nodes as a tree"
    tree = nx.Graph(list(edges))
    tree.add_nodes_from(graph.nodes)
    if not nx.is_connected(tree):
        return "the edges do not connect every node"
    return _size_is_optimal(instance, _tree_weight(graph, edges), "tree weight")


def _check_matching(instance, edges, *, weighted: bool) -> str | None:
    graph = instance.graph
    problem = _edges_in_graph(graph, edges)
    if problem:
        return problem
    endpoints = [node for edge in edges for node in edge]
    problem = _repeated(endpoints)
    if problem:
        return f"not a matching: {problem}"
    value = _tree_weight(graph, edges) if weighted else len(edges)
    return _size_is_optimal(instance, value, "matching weight" if weighted else "matching size")


def _check_edge_cover(instance, edges) -> str | None:
    graph = instance.graph
    problem = _edges_in_graph(graph, edges)
    if problem:
        return problem
    uncovered = sorted(set(graph.nodes) - {node for edge in edges for node in edge})
    if uncovered:
        return f"nodes {uncovered[:5]} are not covered"
    return _size_is_optimal(instance, len(edges), "edge cover size")


def _check_path(instance, path, *, weighted: bool) -> str | None:
    graph = instance.graph
    problem = _foreign_nodes(graph, path) or _repeated(path)
    if problem:
        return problem
    if not path or path[0] != instance.query["source"] or path[-1] != instance.query["target"]:
        return "the path does not run from the source to the target"
    steps = list(itertools.pairwise(path))
    missing = [step for step in steps if not graph.has_edge(*step)]
    if missing:
        return f"steps {missing[:5]} are not edges"
    length = _tree_weight(graph, steps) if weighted else len(steps)
    return _size_is_optimal(instance, length, "path length")


def _check_topological_order(instance, order) -> str | None:
    graph = instance.graph
    problem = _foreign_nodes(graph, order) or _repeated(order)
    if problem:
        return problem
    if len(order) != graph.number_of_nodes():
        return f"{len(order)} nodes listed, the graph has {graph.number_of_nodes()}"
    position = {node: i for i, node in enumerate(order)}
    violated = [(u, v) for u, v in graph.edges if position[u] > position[v]]
    return f"edges {violated[:5]} point backwards" if violated else None


def _check_hamiltonian_path(instance, path) -> str | None:
    graph = instance.graph
    problem = _foreign_nodes(graph, path) or _repeated(path)
    if problem:
        return problem
    if len(path) != graph.number_of_nodes():
        return f"{len(path)} nodes listed, the graph has {graph.number_of_nodes()}"
    missing = [step for step in itertools.pairwise(path) if not graph.has_edge(*step)]
    return f"steps {missing[:5]} are not edges" if missing else None


def _check_isomorphism(instance, pairs) -> str | None:
    first, second = instance.graph, instance.second_graph
    keys = [key for key, _ in pairs]
    values = [value for _, value in pairs]
    problem = (
        _foreign_nodes(first, keys)
        or _foreign_nodes(second, values)
        or _repeated(keys)
        or _repeated(values)
    )
    if problem:
        return problem
    if len(pairs) != first.number_of_nodes():
        return f"{len(pairs)} nodes mapped, the first graph has {first.number_of_nodes()}"
    mapping = dict(pairs)
    broken = [(u, v) for u, v in first.edges if not second.has_edge(mapping[u], mapping[v])]
    return f"edges {broken[:5]} are not mapped onto edges" if broken else None


def _check_maximal_independent_set(instance, nodes) -> str | None:
    graph = instance.graph
    problem = _foreign_nodes(graph, nodes) or _repeated(nodes)
    if problem:
        return problem
    if instance.query["node"] not in nodes:
        return f"the set does not contain the required node {instance.query['node']}"
    chosen = set(nodes)
    adjacent = [(u, v) for u, v in graph.subgraph(chosen).edges]
    if adjacent:
        return f"nodes {adjacent[0]} are adjacent"
    addable = [
        node
        for node in graph.nodes
        if node not in chosen and not chosen & set(graph.neighbors(node))
    ]
    return f"node {sorted(addable)[0]} could be added, the set is not maximal" if addable else None


def _check_vertex_cover(instance, nodes) -> str | None:
    graph = instance.graph
    problem = _foreign_nodes(graph, nodes) or _repeated(nodes)
    if problem:
        return problem
    chosen = set(nodes)
    uncovered = [(u, v) for u, v in graph.edges if u not in chosen and v not in chosen]
    if uncovered:
        return f"edges {uncovered[:5]} are not covered"
    return _size_is_optimal(instance, len(nodes), "cover size")


# ----------------------------------------------------------------------------- oracles


def _scalar(function: Callable[[nx.Graph, dict], Any]):
    def oracle(graph, query, second_graph=None):
        return function(graph, query), None

    return oracle


def _weight(graph, edges) -> float:
    return _tree_weight(graph, edges)


def _oracle_dominating_set(graph, query, second_graph=None):
    nodes = solvers.minimum_dominating_set(graph)
    return sorted(nodes), float(len(nodes))


def _oracle_bfs(graph, query, second_graph=None):
    return [list(edge) for edge in nx.bfs_edges(graph, query["node"])], None


def _oracle_dfs(graph, query, second_graph=None):
    return [list(edge) for edge in nx.dfs_edges(graph, query["node"])], None


def _oracle_spanning_tree(graph, query, second_graph=None):
    edges = sorted(tuple(sorted(edge)) for edge in nx.minimum_spanning_edges(graph, data=False))
    return [list(edge) for edge in edges], _weight(graph, edges)


def _oracle_bipartite_matching(graph, query, second_graph=None):
    matching = nx.max_weight_matching(graph, maxcardinality=True, weight=None)
    edges = sorted(tuple(sorted(edge)) for edge in matching)
    return [list(edge) for edge in edges], float(len(edges))


def _oracle_weighted_matching(graph, query, second_graph=None):
    edges = sorted(tuple(sorted(edge)) for edge in nx.max_weight_matching(graph))
    return [list(edge) for edge in edges], _weight(graph, edges)


def _oracle_edge_cover(graph, query, second_graph=None):
    # networkx may return an undirected edge in both orientations; keep one.
    edges = sorted({tuple(sorted(edge)) for edge in nx.min_edge_cover(graph)})
    return [list(edge) for edge in edges], float(len(edges))


def _oracle_shortest_path(graph, query, second_graph=None):
    path = nx.shortest_path(graph, query["source"], query["target"])
    return path, float(len(path) - 1)


def _oracle_weighted_shortest_path(graph, query, second_graph=None):
    path = nx.dijkstra_path(graph, query["source"], query["target"])
    return path, _weight(graph, list(itertools.pairwise(path)))


def _oracle_isomorphism(graph, query, second_graph=None):
    mapping = nx.vf2pp_isomorphism(graph, second_graph)
    if mapping is None:
        raise RuntimeError("the two graphs of an isomorphic_mapping instance are not isomorphic")
    return {str(key): value for key, value in sorted(mapping.items())}, None


def _oracle_hamiltonian_path(graph, query, second_graph=None):
    path = solvers.hamiltonian_path(graph)
    if path is None:
        raise Resample("no Hamiltonian path")
    return path, None


def _oracle_vertex_cover(graph, query, second_graph=None):
    cover = solvers.minimum_vertex_cover(graph)
    return cover, float(len(cover))


def _oracle_mis(graph, query, second_graph=None):
    return sorted(nx.maximal_independent_set(graph, [query["node"]], seed=0)), None


def _oracle_tsp(graph, query, second_graph=None):
    return round(solvers.tsp_optimal_cost(graph)), None


# ----------------------------------------------------------------------------- registry


def _exact(answer_type: str) -> Check:
    if answer_type == "node_set":
        return _equal_node_set
    if answer_type == "edge_list":
        return _equal_edge_set
    return _equal_value


_UNDIRECTED = (
    "karate",
    "davis",
    "florentine",
    "les_miserables",
    "erdos_renyi",
    "barabasi_albert",
    "watts_strogatz",
)
_WITH_BIPARTITE = (*_UNDIRECTED, "bipartite")


def _task(
    name, tier, answer_type, description, question, families, oracle, check=None, **options
) -> TaskSpec:
    return TaskSpec(
        name=name,
        tier=tier,
        answer_type=answer_type,
        description=description,
        question=question,
        families=families,
        oracle=oracle,
        check=check or _exact(answer_type),
        **options,
    )


def _float_oracle(function):
    return _scalar(lambda graph, query: float(function(graph, query)))


_SPECS = [
    # --- easy ---------------------------------------------------------------------------------
    _task(
        "node_number",
        "easy",
        "int",
        "The task is to count the nodes of the graph.",
        "How many nodes are in the graph?",
        _UNDIRECTED,
        _scalar(lambda g, q: g.number_of_nodes()),
    ),
    _task(
        "dominating_set",
        "easy",
        "node_set",
        "The task is to find a minimum dominating set of the graph: a smallest set of nodes such that every node is in the set or adjacent to a node in the set.",
        "What is a minimum dominating set of the graph?",
        _WITH_BIPARTITE,
        _oracle_dominating_set,
        _check_dominating_set,
        max_nodes=15,
        optimisation=True,
        differs_from_g1="G1 asks for 'a dominating set', so answering all nodes scores 1; we ask for a minimum one and check the size against the exact optimum (which caps graphs at 15 nodes).",
    ),
    _task(
        "common_neighbor",
        "easy",
        "node_set",
        "The task is to find the common neighbors of two nodes.",
        "What are the common neighbors of node {u} and node {v}?",
        _UNDIRECTED,
        _scalar(lambda g, q: sorted(nx.common_neighbors(g, q["u"], q["v"]))),
        query=_pair_near,
        differs_from_g1="G1's reward gives Jaccard partial credit (over-listing earns reward) and its eval requires one order; we require the exact set, in any order.",
    ),
    _task(
        "edge_number",
        "easy",
        "int",
        "The task is to count the edges of the graph.",
        "How many edges are in the graph?",
        _UNDIRECTED,
        _scalar(lambda g, q: g.number_of_edges()),
    ),
    _task(
        "neighbor",
        "easy",
        "node_set",
        "The task is to find the neighbors of a node.",
        "What are the neighbors of node {node}?",
        _UNDIRECTED,
        _scalar(lambda g, q: sorted(g.neighbors(q["node"]))),
        query=_any_node,
        differs_from_g1="G1's reward gives Jaccard partial credit; we require the exact set, in any order.",
    ),
    _task(
        "bfs",
        "easy",
        "edge_list",
        "The task is to run breadth-first search from a node and list the edges of the search tree in the order they are discovered.",
        "What are the breadth-first search edges starting from node {node}?",
        _UNDIRECTED,
        _oracle_bfs,
        _check_bfs,
        query=_non_isolated_node,
        differs_from_g1="Any valid BFS (any neighbour order) is accepted, and an edge may be written either way round; G1 also accepts any valid BFS.",
    ),
    _task(
        "has_cycle",
        "easy",
        "bool",
        "The task is to decide whether the directed graph contains a directed cycle.",
        "Does the graph have a cycle?",
        ("random_dag", "random_digraph"),
        _scalar(lambda g, q: not nx.is_directed_acyclic_graph(g)),
        directed=True,
    ),
    _task(
        "dfs",
        "easy",
        "edge_list",
        "The task is to run depth-first search from a node and list the edges of the search tree in the order they are discovered.",
        "What are the depth-first search edges starting from node {node}?",
        _UNDIRECTED,
        _oracle_dfs,
        _check_dfs,
        query=_non_isolated_node,
    ),
    _task(
        "minimum_spanning_tree",
        "easy",
        "edge_list",
        "The task is to find a minimum spanning tree of the unweighted connected graph.",
        "What are the edges of a minimum spanning tree of the graph?",
        _UNDIRECTED,
        _oracle_spanning_tree,
        _check_spanning_tree,
        connected=True,
        optimisation=True,
    ),
    _task(
        "edge_existence",
        "easy",
        "bool",
        "The task is to decide whether an edge joins two nodes.",
        "Is there an edge between node {u} and node {v}?",
        _UNDIRECTED,
        _scalar(lambda g, q: g.has_edge(q["u"], q["v"])),
        query=_pair_edge_or_not,
    ),
    _task(
        "is_regular",
        "easy",
        "bool",
        "The task is to decide whether every node of the graph has the same degree.",
        "Is the graph regular?",
        ("regular", "erdos_renyi", "watts_strogatz", "karate"),
        _scalar(lambda g, q: nx.is_regular(g)),
        differs_from_g1="G1's reward compares this answer case-sensitively ('yes' scores 0); we accept yes/no in any case.",
    ),
    _task(
        "degree",
        "easy",
        "int",
        "The task is to find the degree of a node.",
        "What is the degree of node {node}?",
        _UNDIRECTED,
        _scalar(lambda g, q: g.degree(q["node"])),
        query=_any_node,
    ),
    _task(
        "is_tournament",
        "easy",
        "bool",
        "The task is to decide whether the directed graph is a tournament: exactly one directed edge between every pair of distinct nodes.",
        "Is the graph a tournament?",
        ("tournament",),
        _scalar(lambda g, q: nx.tournament.is_tournament(g)),
        directed=True,
        prepare=_maybe_break_tournament,
        max_nodes=20,
        differs_from_g1="Half of our instances are tournaments with one arc removed or doubled, so the constant answer scores about 0.5; graphs are capped at 20 nodes to keep prompts short.",
    ),
    _task(
        "density",
        "easy",
        "float",
        "The task is to compute the density of the graph.",
        "What is the density of the graph?",
        _UNDIRECTED,
        _float_oracle(lambda g, q: nx.density(g)),
    ),
    # --- medium -------------------------------------------------------------------------------
    _task(
        "adamic_adar_index",
        "medium",
        "float",
        "The task is to compute the Adamic-Adar index of two nodes.",
        "What is the Adamic-Adar index between node {u} and node {v}?",
        _UNDIRECTED,
        _float_oracle(lambda g, q: next(iter(nx.adamic_adar_index(g, [(q["u"], q["v"])])))[2]),
        query=_pair_near,
    ),
    _task(
        "clustering_coefficient",
        "medium",
        "float",
        "The task is to compute the clustering coefficient of a node.",
        "What is the clustering coefficient of node {node}?",
        _UNDIRECTED,
        _float_oracle(lambda g, q: nx.clustering(g, q["node"])),
        query=_any_node,
        differs_from_g1="G1's reward compares this float as a string ('0.50' vs '0.5' scores 0); we compare numbers within 1e-3.",
    ),
    _task(
        "connected_component_number",
        "medium",
        "int",
        "The task is to count the connected components of the graph.",
        "How many connected components are in the graph?",
        _WITH_BIPARTITE,
        _scalar(lambda g, q: nx.number_connected_components(g)),
    ),
    _task(
        "bipartite_maximum_matching",
        "medium",
        "edge_list",
        "The task is to find a maximum matching of the bipartite graph.",
        "What is a maximum matching of the bipartite graph?",
        ("bipartite", "davis"),
        _oracle_bipartite_matching,
        lambda i, e: _check_matching(i, e, weighted=False),
        optimisation=True,
        differs_from_g1="G1's reward requires the reference matching string exactly; we accept any maximum matching.",
    ),
    _task(
        "local_connectivity",
        "medium",
        "int",
        "The task is to compute the local node connectivity of two non-adjacent nodes: the minimum number of other nodes whose removal disconnects them.",
        "What is the local connectivity between node {source} and node {target}?",
        _UNDIRECTED,
        _scalar(lambda g, q: nx.node_connectivity(g, q["source"], q["target"])),
        query=_non_adjacent_pair,
    ),
    _task(
        "jaccard_coefficient",
        "medium",
        "float",
        "The task is to compute the Jaccard coefficient of two nodes.",
        "What is the Jaccard coefficient between node {u} and node {v}?",
        _UNDIRECTED,
        _float_oracle(lambda g, q: next(iter(nx.jaccard_coefficient(g, [(q["u"], q["v"])])))[2]),
        query=_pair_near,
    ),
    _task(
        "min_edge_covering",
        "medium",
        "edge_list",
        "The task is to find a minimum edge cover of the graph: a smallest set of edges such that every node is an endpoint of one of them.",
        "What is a minimum edge cover of the graph?",
        _UNDIRECTED,
        _oracle_edge_cover,
        _check_edge_cover,
        no_isolated=True,
        optimisation=True,
    ),
    _task(
        "is_eulerian",
        "medium",
        "bool",
        "The task is to decide whether the graph has an Eulerian circuit.",
        "Is the graph Eulerian?",
        _UNDIRECTED,
        _scalar(lambda g, q: nx.is_eulerian(g)),
        prepare=_maybe_make_eulerian,
        aliases=("is_eularian",),
    ),
    _task(
        "degree_centrality",
        "medium",
        "float",
        "The task is to compute the degree centrality of a node.",
        "What is the degree centrality of node {node}?",
        _UNDIRECTED,
        _float_oracle(lambda g, q: nx.degree_centrality(g)[q["node"]]),
        query=_any_node,
    ),
    _task(
        "is_bipartite",
        "medium",
        "bool",
        "The task is to decide whether the graph is bipartite.",
        "Is the graph bipartite?",
        ("bipartite", "davis", "erdos_renyi", "barabasi_albert", "watts_strogatz"),
        _scalar(lambda g, q: nx.is_bipartite(g)),
    ),
    _task(
        "resource_allocation_index",
        "medium",
        "float",
        "The task is to compute the resource allocation index of two nodes.",
        "What is the resource allocation index between node {u} and node {v}?",
        _UNDIRECTED,
        _float_oracle(
            lambda g, q: next(iter(nx.resource_allocation_index(g, [(q["u"], q["v"])])))[2]
        ),
        query=_pair_near,
    ),
    # --- hard ---------------------------------------------------------------------------------
    _task(
        "max_weight_matching",
        "hard",
        "edge_list",
        "The task is to find a maximum-weight matching of the weighted graph.",
        "What is a maximum weight matching of the graph?",
        _UNDIRECTED,
        _oracle_weighted_matching,
        lambda i, e: _check_matching(i, e, weighted=True),
        weighted=True,
        optimisation=True,
        differs_from_g1="G1's reward requires the reference matching string exactly; we accept any matching of maximum weight.",
    ),
    _task(
        "closeness_centrality",
        "hard",
        "float",
        "The task is to compute the closeness centrality of a node.",
        "What is the closeness centrality of node {node}?",
        _UNDIRECTED,
        _float_oracle(lambda g, q: nx.closeness_centrality(g, q["node"])),
        query=_any_node,
    ),
    _task(
        "traveling_salesman_problem",
        "hard",
        "int",
        "The task is to find the cost of a shortest closed tour that visits every node of the complete weighted graph exactly once.",
        "What is the minimal total weight of a tour visiting every node?",
        ("complete",),
        _oracle_tsp,
        weighted=True,
        max_nodes=9,
        optimisation=True,
        differs_from_g1="Our oracle is an exact Held-Karp program; weights are integers, so the answer is an integer (floats within 1e-3 also pass). Graphs are capped at 9 nodes.",
    ),
    _task(
        "strongly_connected_number",
        "hard",
        "int",
        "The task is to count the strongly connected components of the directed graph.",
        "How many strongly connected components are in the graph?",
        ("random_digraph",),
        _scalar(lambda g, q: nx.number_strongly_connected_components(g)),
        directed=True,
    ),
    _task(
        "shortest_path",
        "hard",
        "node_list",
        "The task is to find a shortest path between two nodes of the unweighted graph.",
        "What is a shortest path from node {source} to node {target}?",
        _UNDIRECTED,
        _oracle_shortest_path,
        lambda i, p: _check_path(i, p, weighted=False),
        query=_connected_pair,
        optimisation=True,
        differs_from_g1="G1's reward accepts only the reference path; we accept every shortest path.",
    ),
    _task(
        "center",
        "hard",
        "node_set",
        "The task is to find the center of the connected graph: the nodes of minimum eccentricity.",
        "What is the center of the graph?",
        _UNDIRECTED,
        _scalar(lambda g, q: sorted(nx.center(g))),
        connected=True,
    ),
    _task(
        "diameter",
        "hard",
        "int",
        "The task is to compute the diameter of the connected graph.",
        "What is the diameter of the graph?",
        _UNDIRECTED,
        _scalar(lambda g, q: nx.diameter(g)),
        connected=True,
    ),
    _task(
        "barycenter",
        "hard",
        "node_set",
        "The task is to find the barycenter of the connected graph: the nodes minimising the sum of distances to all other nodes.",
        "What is the barycenter of the graph?",
        _UNDIRECTED,
        _scalar(lambda g, q: sorted(nx.barycenter(g))),
        connected=True,
    ),
    _task(
        "radius",
        "hard",
        "int",
        "The task is to compute the radius of the connected graph.",
        "What is the radius of the graph?",
        _UNDIRECTED,
        _scalar(lambda g, q: nx.radius(g)),
        connected=True,
    ),
    _task(
        "topological_sort",
        "hard",
        "node_list",
        "The task is to find a topological order of the directed acyclic graph.",
        "What is a topological sort of the graph?",
        ("random_dag",),
        _scalar(lambda g, q: list(nx.topological_sort(g))),
        _check_topological_order,
        directed=True,
        differs_from_g1="G1's reward accepts only the reference order; we accept every topological order.",
    ),
    _task(
        "periphery",
        "hard",
        "node_set",
        "The task is to find the periphery of the connected graph: the nodes of maximum eccentricity.",
        "What is the periphery of the graph?",
        _UNDIRECTED,
        _scalar(lambda g, q: sorted(nx.periphery(g))),
        connected=True,
    ),
    _task(
        "betweenness_centrality",
        "hard",
        "float",
        "The task is to compute the (normalised) betweenness centrality of a node.",
        "What is the betweenness centrality of node {node}?",
        _UNDIRECTED,
        _float_oracle(lambda g, q: nx.betweenness_centrality(g)[q["node"]]),
        query=_any_node,
    ),
    _task(
        "triangles",
        "hard",
        "int",
        "The task is to count the triangles that include a node.",
        "How many triangles include node {node}?",
        _UNDIRECTED,
        _scalar(lambda g, q: nx.triangles(g, q["node"])),
        query=_any_node,
    ),
    _task(
        "avg_neighbor_degree",
        "hard",
        "float",
        "The task is to compute the average degree of the neighbors of a node.",
        "What is the average neighbor degree of node {node}?",
        _UNDIRECTED,
        _float_oracle(lambda g, q: nx.average_neighbor_degree(g, nodes=[q["node"]])[q["node"]]),
        query=_any_node,
    ),
    _task(
        "harmonic_centrality",
        "hard",
        "float",
        "The task is to compute the harmonic centrality of a node.",
        "What is the harmonic centrality of node {node}?",
        _UNDIRECTED,
        _float_oracle(lambda g, q: nx.harmonic_centrality(g, nbunch=[q["node"]])[q["node"]]),
        query=_any_node,
    ),
    _task(
        "bridges",
        "hard",
        "edge_list",
        "The task is to find all bridges of the graph: edges whose removal increases the number of connected components.",
        "What are the bridges of the graph?",
        _UNDIRECTED,
        _scalar(
            lambda g, q: [list(edge) for edge in sorted(tuple(sorted(e)) for e in nx.bridges(g))]
        ),
        differs_from_g1="G1's reward gives Jaccard partial credit; we require the exact set of bridges, in any order and orientation.",
    ),
    # --- challenging --------------------------------------------------------------------------
    _task(
        "isomorphic_mapping",
        "challenging",
        "mapping",
        "The task is to find an isomorphism between two isomorphic graphs: a one-to-one mapping of the first graph's nodes onto the second graph's nodes that maps edges onto edges.",
        "What is an isomorphism from the first graph to the second?",
        _UNDIRECTED,
        _oracle_isomorphism,
        _check_isomorphism,
        max_nodes=20,
        aliases=("isomophic_mapping",),
        differs_from_g1="G1's reward requires the reference mapping string exactly; we accept every isomorphism. Graphs are capped at 20 nodes.",
    ),
    _task(
        "global_efficiency",
        "challenging",
        "float",
        "The task is to compute the global efficiency of the graph.",
        "What is the global efficiency of the graph?",
        _UNDIRECTED,
        _float_oracle(lambda g, q: nx.global_efficiency(g)),
    ),
    _task(
        "maximal_independent_set",
        "challenging",
        "node_set",
        "The task is to find a maximal independent set that contains a given node: no two chosen nodes are adjacent and no other node can be added.",
        "What is a maximal independent set that includes node {node}?",
        _UNDIRECTED,
        _oracle_mis,
        _check_maximal_independent_set,
        query=_any_node,
        differs_from_g1="G1's reward never checks that the given node is in the set and drops the last node (an isolated last node is never required); we check both.",
    ),
    _task(
        "maximum_flow",
        "challenging",
        "int",
        "The task is to compute the value of a maximum flow between two nodes of the directed graph whose edge weights are capacities.",
        "What is the maximum flow from node {source} to node {target}?",
        ("random_digraph",),
        _scalar(
            lambda g, q: int(nx.maximum_flow_value(g, q["source"], q["target"], capacity="weight"))
        ),
        query=_connected_pair,
        directed=True,
        weighted=True,
    ),
    _task(
        "wiener_index",
        "challenging",
        "float",
        "The task is to compute the Wiener index of the connected graph: the sum of distances over all pairs of nodes.",
        "What is the Wiener index of the graph?",
        _UNDIRECTED,
        _float_oracle(lambda g, q: nx.wiener_index(g)),
        connected=True,
    ),
    _task(
        "hamiltonian_path",
        "challenging",
        "node_list",
        "The task is to find a Hamiltonian path: a path that visits every node exactly once.",
        "What is a Hamiltonian path of the graph?",
        _UNDIRECTED,
        _oracle_hamiltonian_path,
        _check_hamiltonian_path,
        prepare=_plant_hamiltonian_path,
        max_nodes=12,
        differs_from_g1="G1's eval compares with one reference path (its validator is never called); we accept every Hamiltonian path. A path is planted so one exists; graphs are capped at 12 nodes.",
    ),
    _task(
        "min_vertex_cover",
        "challenging",
        "node_set",
        "The task is to find a minimum vertex cover: a smallest set of nodes touching every edge.",
        "What is a minimum vertex cover of the graph?",
        _UNDIRECTED,
        _oracle_vertex_cover,
        _check_vertex_cover,
        max_nodes=20,
        optimisation=True,
    ),
    _task(
        "weighted_shortest_path",
        "challenging",
        "node_list",
        "The task is to find a path of minimum total weight between two nodes of the weighted graph.",
        "What is a shortest path from node {source} to node {target}?",
        _UNDIRECTED,
        _oracle_weighted_shortest_path,
        lambda i, p: _check_path(i, p, weighted=True),
        query=_connected_pair,
        weighted=True,
        optimisation=True,
        differs_from_g1="G1's reward accepts only the reference path; we accept every path of minimum weight. Tier 'challenging' as in G1's reward scaling (its README leaves it untiered).",
    ),
    _task(
        "weighted_minimum_spanning_tree",
        "challenging",
        "edge_list",
        "The task is to find a minimum spanning tree of the weighted connected graph.",
        "What are the edges of a minimum spanning tree of the graph?",
        _UNDIRECTED,
        _oracle_spanning_tree,
        _check_spanning_tree,
        connected=True,
        weighted=True,
        optimisation=True,
        differs_from_g1="Tier 'challenging' as in G1's reward scaling (its README leaves it untiered).",
    ),
]

TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in _SPECS}
"""Task name -> :class:`TaskSpec`, all 50 tasks."""

TASK_ALIASES: dict[str, str] = {alias: spec.name for spec in _SPECS for alias in spec.aliases}
"""G1's spellings (``is_eularian``, ``isomophic_mapping``) -> our task names."""


def resolve_task(task: str) -> TaskSpec:
    """The spec for ``task`` or one of G1's spellings of it."""
    if not isinstance(task, str):
        raise TypeError(f"task must be a task name (str), got {type(task).__name__}")
    canonical = TASK_ALIASES.get(task, task)
    if canonical not in TASKS:
        raise ValueError(f"task must be one of the 50 task names (see g1.TASKS), got {task!r}")
    return TASKS[canonical]
