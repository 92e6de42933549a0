import networkx as nx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mpnn_gen.data import csl, random_regular, tnm_trees
from mpnn_gen.wl import count_classes, mix64, refine

from kernelkit.testing import graphs as graph_strategy


def exact_class_counts(graphs, rounds):
    """Plain 1-WL: one shared signature table per round, classes = distinct sorted colour lists."""
    colours = [{v: 0 for v in g.nodes} for g in graphs]
    counts = [len({tuple(sorted(c.values())) for c in colours})]
    for _ in range(rounds):
        table = {}
        signatures = [
            {v: (c[v], tuple(sorted(c[u] for u in g.neighbors(v)))) for v in g.nodes}
            for g, c in zip(graphs, colours, strict=True)
        ]
        for sig in signatures:
            for s in sig.values():
                table.setdefault(s, len(table))
        colours = [{v: table[s] for v, s in sig.items()} for sig in signatures]
        counts.append(len({tuple(sorted(c.values())) for c in colours}))
    return counts


def test_atlas_class_counts_match_exact_reference():
    atlas = nx.graph_atlas_g()
    expected = exact_class_counts(atlas, 5)
    assert count_classes(atlas, 5) == expected
    # The pilot in the research note measured these numbers with an independent script.
    assert expected == [8, 494, 1157, 1223, 1227, 1227]


def test_collision_check_agrees_with_hashing():
    atlas = nx.graph_atlas_g()[:300]
    assert count_classes(atlas, 3, check_collisions=True) == count_classes(atlas, 3)
    assert refine(atlas, 3, check_collisions=True).collisions_resolved == 0


def test_csl_and_regular_graphs_collapse_to_one_class():
    assert count_classes(csl(), 4) == [1] * 5
    assert count_classes(random_regular(5, 3, 12), 3) == [1] * 4


def test_tnm_trees_are_all_distinguished():
    trees = tnm_trees(15)
    assert len(trees) == (15 - 3) // 2 + 1
    assert count_classes(trees, 3)[-1] == len(trees)


@settings(max_examples=25)
@given(graph_strategy(max_nodes=10), st.randoms(use_true_random=False))
def test_isomorphic_relabelling_gives_identical_histograms(graph, rng):
    nodes = list(graph.nodes)
    shuffled = nodes[:]
    rng.shuffle(shuffled)
    relabelled = nx.relabel_nodes(graph, dict(zip(nodes, shuffled, strict=True)))
    a = refine([graph], 3).node_colours
    b = refine([relabelled], 3).node_colours
    for colours_a, colours_b in zip(a, b, strict=True):
        assert torch.equal(colours_a.sort().values, colours_b.sort().values)


@settings(max_examples=10)
@given(st.lists(graph_strategy(max_nodes=7), min_size=2, max_size=6))
def test_batch_invariance(graphs):
    joint = refine(graphs, 3)
    alone = [refine([g], 3) for g in graphs]
    # Hashes of separate calls agree for every round that each call computed (a call stops at its
    # stable round; a graph alone is stable no later than inside the batch).
    for r in range(min(len(a.graph_hashes) for a in alone)):
        together = torch.cat([a.graph_hashes[r] for a in alone])
        assert torch.equal(together, joint.graph_hashes[r])


@settings(max_examples=15)
@given(st.lists(graph_strategy(max_nodes=8), min_size=1, max_size=5))
def test_refinement_stops_at_the_stable_round_with_unchanged_answers(graphs):
    # Before the stop, rounds=10**6 ran a million rounds on a colouring stable after a few.
    huge = refine(graphs, 10**6)
    assert huge.stable_round is not None and huge.stable_round <= 8
    exact = refine(graphs, huge.stable_round + 3)
    # Against plain 1-WL run for every round, without any stopping rule.
    reference = exact_class_counts(graphs, huge.stable_round + 3)
    assert [huge.num_classes(r) for r in range(huge.stable_round + 4)] == reference
    for r in range(huge.stable_round + 4):
        assert huge.num_colours(r) == exact.num_colours(r)
        assert huge.num_classes(r) == exact.num_classes(r)
        assert torch.equal(huge.classes(r), exact.classes(r))
    assert huge.num_classes(10**6) == exact.num_classes(huge.stable_round)
    assert huge.rounds == 10**6


def test_histograms_and_colour_counts():
    path, triangle = nx.path_graph(3), nx.complete_graph(3)
    result = refine([path, triangle], 2)
    assert result.num_colours(1) == 2  # degree 1 and degree 2
    hist = result.histogram(2)
    assert hist.sum(dim=1).tolist() == [3, 3]
    assert result.classes(0).tolist() == [0, 0]
    assert result.num_classes(2) == 2


def test_node_labels_are_initial_colours():
    a, b = nx.path_graph(2), nx.path_graph(2)
    nx.set_node_attributes(b, {0: 1, 1: 0}, "label")
    assert count_classes([a, b], 0) == [2]


def test_pyg_input_matches_networkx_input():
    from mpnn_gen.graphs import to_pyg

    graphs = nx.graph_atlas_g()[10:60]
    assert count_classes([to_pyg(g) for g in graphs], 3) == count_classes(graphs, 3)


def test_mix64_is_injective_on_a_range():
    values = mix64(torch.arange(-5000, 5000))
    assert torch.unique(values).numel() == 10000


@pytest.mark.parametrize(
    ("graphs", "rounds", "error", "match"),
    [
        ([nx.path_graph(3)], -1, ValueError, "rounds must be an int >= 0, got -1"),
        ([], 1, ValueError, "at least one graph"),
        ([nx.path_graph(3), 5], 1, TypeError, "mix of types"),
        ([nx.DiGraph([(0, 1)])], 1, ValueError, "directed"),
    ],
)
def test_bad_inputs(graphs, rounds, error, match):
    with pytest.raises(error, match=match):
        refine(graphs, rounds)


def test_round_out_of_range():
    with pytest.raises(ValueError, match=r"round must be an int in \[0, 1\]"):
        refine([nx.path_graph(3)], 1).num_classes(2)


@pytest.mark.parametrize(
    ("edge_index", "x", "error", "match"),
    [
        ([[0, 1], [1, -1]], None, ValueError, r"node ids in \[0, 2\].*from -1"),
        ([[0, 1], [1, 5]], None, ValueError, r"node ids in \[0, 2\].*to 5"),
        ([[0.0, 1.0], [1.0, 2.0]], None, TypeError, "integer dtype"),
        ([[0, 1, 2]], None, ValueError, r"shape \(2, E\)"),
        ([[0, 1], [1, 2]], [[1.0], [float("nan")], [0.0]], ValueError, "must be finite"),
    ],
)
def test_pyg_graphs_with_bad_edges_or_features_are_refused(edge_index, x, error, match):
    from torch_geometric.data import Data

    features = torch.ones(3, 1) if x is None else torch.tensor(x)
    graph = Data(x=features, edge_index=torch.tensor(edge_index), num_nodes=3)
    with pytest.raises(error, match=match):
        refine([graph], 2)
