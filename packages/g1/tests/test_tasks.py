"""Every task: the oracle verifies, alternative valid answers verify, mutants fail, and the
verdict does not depend on node labels or edge order."""

from __future__ import annotations

import random
from fractions import Fraction
from itertools import combinations, islice

import g1
import networkx as nx
import pytest
from g1.instance import graph_from_json, graph_to_json
from hypothesis import given, settings
from hypothesis import strategies as st

SMALL = 9  # node cap for the property tests: keeps 50 tasks x examples fast


def small_instance(task: str, seed: int, split: str = "train") -> g1.Instance:
    spec = g1.TASKS[task]
    n_nodes = random.Random(seed).randint(spec.min_nodes, min(spec.max_nodes, SMALL))
    return g1.generate(task, seed, n_nodes, split=split)


def boxed(instance: g1.Instance, answer) -> str:
    if instance.answer_type == "mapping":
        answer = {int(key): value for key, value in dict(answer).items()}
    return f"So the answer is \\boxed{{{g1.format_answer(instance.answer_type, answer)}}}."


def mutants(instance: g1.Instance) -> list[str]:
    """Answers that are wrong whatever the graph (each argued in the comments)."""
    kind, answer = instance.answer_type, instance.answer
    texts: list[str] = []
    if kind == "bool":
        texts += [boxed(instance, not answer), "\\boxed{3}", "\\boxed{[1]}"]
    elif kind == "int":
        texts += [boxed(instance, answer + 1), boxed(instance, answer - 1), "\\boxed{Yes}"]
        texts.append(f"\\boxed{{{answer}.5}}")
    elif kind == "float":
        texts += [f"\\boxed{{{answer + 0.01}}}", f"\\boxed{{{answer - 0.01}}}", "\\boxed{No}"]
    elif kind == "mapping":
        pairs = list(dict(answer).items())
        texts.append(boxed(instance, dict(pairs[1:])))  # a node left unmapped
        texts.append("\\boxed{{" + ", ".join(f"{k}: {pairs[0][1]}" for k, _ in pairs) + "}}")
        texts.append("\\boxed{Yes}")
    else:
        listed = [tuple(item) if isinstance(item, list) else item for item in answer]
        if listed:
            # A repeated element is never valid (sets, paths, orders, trees and matchings).
            texts.append(boxed(instance, [*listed, listed[0]]))
            if instance.task != "weighted_shortest_path":
                # Dropping an element leaves a set that is not the exact set, too small to
                # dominate/cover/match optimally, a non-maximal independent set, a search that
                # misses a node, a path that skips a step or is shorter than the optimum.
                texts.append(boxed(instance, listed[:-1]))
        texts.append("\\boxed{Yes}")
        texts.append("\\boxed{[[1, [2]]]}")
        if instance.spec.optimisation and kind == "node_set":
            texts.append(boxed(instance, sorted(instance.graph.nodes)))  # "all nodes"
    return texts


@pytest.mark.parametrize("task", sorted(g1.TASKS))
@settings(max_examples=5)
@given(seed=st.integers(0, 10**6))
def test_oracle_passes_mutants_fail_and_labels_do_not_matter(task, seed):
    instance = small_instance(task, seed)
    correct = boxed(instance, instance.answer)
    assert g1.verify_detailed(instance, correct).reason == "correct"
    for text in mutants(instance):
        assert g1.verify(instance, text) == 0.0, text

    nodes = sorted(instance.graph.nodes)
    shuffled = nodes[:]
    random.Random(seed).shuffle(shuffled)
    relabelled = instance.relabel(dict(zip(nodes, shuffled, strict=True)))
    assert g1.verify(relabelled, boxed(relabelled, relabelled.answer)) == 1.0
    assert all(g1.verify(relabelled, text) == 0.0 for text in mutants(relabelled))

    data = graph_to_json(instance.graph)
    random.Random(seed + 1).shuffle(data["edges"])
    reordered = g1.Instance.from_record(
        {**instance.to_record(), "graph": _graph_column(data, instance)}
    )
    assert g1.verify(reordered, correct) == 1.0


def _graph_column(data, instance) -> str:
    import json

    graphs = {"graph": data}
    if instance.second_graph is not None:
        graphs["second_graph"] = graph_to_json(instance.second_graph)
    return json.dumps(graphs)


@pytest.mark.parametrize(
    "task",
    [
        t
        for t, s in g1.TASKS.items()
        if s.answer_type == "node_set" and not s.optimisation and t != "maximal_independent_set"
    ],
)
def test_exact_sets_accept_any_order_and_empty_only_when_empty(task):
    instance = small_instance(task, 11)
    answer = list(reversed(instance.answer))
    assert g1.verify(instance, boxed(instance, answer)) == 1.0
    assert g1.verify(instance, "\\boxed{[]}") == float(not instance.answer)


def test_float_answers_within_tolerance_and_as_fractions():
    instance = g1.generate("density", 3, 8)
    value = instance.answer
    fraction = Fraction(value).limit_denominator(1000)
    assert g1.verify(instance, f"\\boxed{{{value + 0.0009}}}") == 1.0
    assert (
        g1.verify(instance, f"\\boxed{{\\frac{{{fraction.numerator}}}{{{fraction.denominator}}}}}")
        == 1.0
    )
    assert g1.verify(instance, f"\\boxed{{{fraction.numerator}/{fraction.denominator}}}") == 1.0
    assert g1.verify(instance, f"\\boxed{{{value + 0.0011}}}") == 0.0


@settings(max_examples=5)
@given(seed=st.integers(0, 10**6))
def test_every_shortest_path_is_accepted(seed):
    instance = g1.generate("shortest_path", seed, 9)
    query = instance.query
    for path in islice(nx.all_shortest_paths(instance.graph, query["source"], query["target"]), 20):
        assert g1.verify(instance, boxed(instance, path)) == 1.0
    longer = [
        p
        for p in islice(nx.all_simple_paths(instance.graph, query["source"], query["target"]), 50)
        if len(p) - 1 > instance.optimum
    ]
    for path in longer[:5]:
        assert g1.verify(instance, boxed(instance, path)) == 0.0


@settings(max_examples=5)
@given(seed=st.integers(0, 10**6))
def test_every_topological_order_and_only_those_are_accepted(seed):
    instance = g1.generate("topological_sort", seed, 7)
    for order in islice(nx.all_topological_sorts(instance.graph), 30):
        assert g1.verify(instance, boxed(instance, order)) == 1.0
    order = list(instance.answer)
    u, v = next(iter(instance.graph.edges))
    i, j = order.index(u), order.index(v)
    order[i], order[j] = order[j], order[i]
    assert g1.verify(instance, boxed(instance, order)) == 0.0


@settings(max_examples=4)
@given(seed=st.integers(0, 10**6))
def test_every_isomorphism_is_accepted(seed):
    instance = g1.generate("isomorphic_mapping", seed, 7)
    matcher = nx.isomorphism.GraphMatcher(instance.graph, instance.second_graph)
    for mapping in islice(matcher.isomorphisms_iter(), 30):
        assert g1.verify(instance, boxed(instance, mapping)) == 1.0
    identity_like = dict(
        zip(sorted(instance.graph.nodes), sorted(instance.second_graph.nodes), strict=True)
    )
    expected = float(
        all(
            instance.second_graph.has_edge(identity_like[u], identity_like[v])
            for u, v in instance.graph.edges
        )
    )
    assert g1.verify(instance, boxed(instance, identity_like)) == expected


def _is_dominating(graph, nodes):
    return set(nodes).union(*(graph.neighbors(n) for n in nodes)) == set(graph.nodes)


def _is_cover(graph, nodes):
    return all(u in nodes or v in nodes for u, v in graph.edges)


@pytest.mark.parametrize(
    ("task", "valid"), [("dominating_set", _is_dominating), ("min_vertex_cover", _is_cover)]
)
@settings(max_examples=4)
@given(seed=st.integers(0, 10**6))
def test_every_optimal_set_and_nothing_else_is_accepted(task, valid, seed):
    instance = g1.generate(task, seed, 8)
    size = int(instance.optimum)
    for nodes in combinations(sorted(instance.graph.nodes), size):
        assert g1.verify(instance, boxed(instance, list(nodes))) == float(
            valid(instance.graph, nodes)
        )
    assert not any(
        valid(instance.graph, c) for c in combinations(sorted(instance.graph.nodes), size - 1)
    )


def _random_search(graph, root, rng, *, breadth):
    discovered, edges, frontier = {root}, [], [root]
    while frontier:
        node = frontier.pop(0) if breadth else frontier[-1]
        neighbours = [n for n in graph.neighbors(node) if n not in discovered]
        rng.shuffle(neighbours)
        if breadth:
            for child in neighbours:
                discovered.add(child)
                edges.append((node, child))
                frontier.append(child)
        elif neighbours:
            discovered.add(neighbours[0])
            edges.append((node, neighbours[0]))
            frontier.append(neighbours[0])
        else:
            frontier.pop()
    return edges


@pytest.mark.parametrize("task", ["bfs", "dfs"])
@settings(max_examples=5)
@given(seed=st.integers(0, 10**6))
def test_any_search_order_is_accepted(task, seed):
    instance = g1.generate(task, seed, 9)
    rng = random.Random(seed)
    for _ in range(5):
        edges = _random_search(instance.graph, instance.query["node"], rng, breadth=task == "bfs")
        flipped = [(v, u) if rng.random() < 0.5 else (u, v) for u, v in edges]
        assert g1.verify(instance, boxed(instance, flipped)) == 1.0


def test_bfs_that_skips_a_level_is_rejected():
    path = nx.path_graph(range(1, 6))
    graph = nx.Graph(path)
    graph.add_edge(1, 3)
    instance = g1.Instance("bfs", "easy", "edge_list", graph, {"node": 1}, [], None, "")
    assert g1.verify(instance, "\\boxed{[(1, 2), (1, 3), (3, 4), (4, 5)]}") == 1.0
    assert g1.verify(instance, "\\boxed{[(1, 2), (2, 3), (3, 4), (4, 5)]}") == 0.0
    assert g1.verify(instance, "\\boxed{[(1, 3), (3, 4), (1, 2), (4, 5)]}") == 0.0


@pytest.mark.parametrize("task", ["minimum_spanning_tree", "weighted_minimum_spanning_tree"])
def test_other_spanning_trees(task):
    instance = g1.generate(task, 5, 9)
    for algorithm in ("prim", "boruvka"):
        tree = nx.minimum_spanning_tree(instance.graph, algorithm=algorithm)
        assert g1.verify(instance, boxed(instance, list(tree.edges))) == 1.0
    heavier = nx.maximum_spanning_tree(instance.graph)
    heavier_weight = heavier.size(weight="weight")
    assert g1.verify(instance, boxed(instance, list(heavier.edges))) == float(
        heavier_weight == instance.optimum
    )


def test_other_maximum_matchings_and_independent_sets():
    matching = g1.generate("bipartite_maximum_matching", 2, 10)
    top = {n for n in matching.graph if matching.graph.degree(n) and n < 100}
    hopcroft = nx.bipartite.hopcroft_karp_matching(
        matching.graph, top_nodes=nx.bipartite.sets(matching.graph)[0]
    )
    edges = {tuple(sorted(e)) for e in hopcroft.items()}
    assert top and g1.verify(matching, boxed(matching, sorted(edges))) == 1.0
    mis = g1.generate("maximal_independent_set", 4, 9)
    for seed in range(5):
        nodes = nx.maximal_independent_set(mis.graph, [mis.query["node"]], seed=seed)
        assert g1.verify(mis, boxed(mis, nodes)) == 1.0
    path = g1.generate("hamiltonian_path", 4, 9)
    assert g1.verify(path, boxed(path, path.answer[::-1])) == 1.0


def test_g1_bugs_are_fixed():
    dominating = g1.generate("dominating_set", 1, 10)
    assert g1.verify(dominating, boxed(dominating, sorted(dominating.graph.nodes))) == 0.0
    regular = g1.generate("is_regular", 0, 8)
    word = "yes" if regular.answer else "no"
    assert g1.verify(regular, f"\\boxed{{{word}}}") == 1.0
    assert g1.verify(regular, f"\\boxed{{{word.upper()}.}}") == 1.0
    graph = nx.Graph([(1, 2)])
    graph.add_nodes_from([3])
    mis = g1.Instance(
        "maximal_independent_set", "challenging", "node_set", graph, {"node": 1}, [1, 3], None, ""
    )
    assert g1.verify(mis, "\\boxed{[1]}") == 0.0  # the isolated last node must be included
    assert g1.verify(mis, "\\boxed{[2, 3]}") == 0.0  # the required node must be included
    assert g1.verify(mis, "\\boxed{[3, 1]}") == 1.0


def test_graph_json_round_trip_keeps_isolated_nodes_and_weights():
    instance = g1.generate("weighted_shortest_path", 3, 12)
    instance.graph.add_node(13)
    rebuilt = graph_from_json(graph_to_json(instance.graph))
    assert sorted(rebuilt.nodes) == list(range(1, 14))
    assert nx.utils.edges_equal(rebuilt.edges(data="weight"), instance.graph.edges(data="weight"))
