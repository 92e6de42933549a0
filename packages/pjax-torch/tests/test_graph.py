"""Tracing, consensus, colouring and the algorithms on small graphs."""

from __future__ import annotations

import pytest
import torch
from pjax_torch import api, nn
from pjax_torch.graph import Graph, GraphColouringError
from pjax_torch.ops import UnknownOperationError
from pjax_torch.optim import (
    AlternatingProjections,
    CyclicDouglasRachford,
    CyclicProjections,
    DifferenceMap,
    DouglasRachford,
    make_optimizer,
)


def _nodes(params):
    return {k: api.parameter(v, k) for k, v in params.items()}


@pytest.mark.parametrize(
    ("model", "x"),
    [
        (nn.MLP([6, 5, 4, 3]), torch.randn(7, 6)),
        (nn.MLP([6, 5, 4, 3], skip=True), torch.randn(7, 6)),
        (nn.MLP([6, 5, 3], activation="sign"), torch.randn(7, 6)),
        (nn.CNN(1, 3, 6, 4), torch.randn(2, 1, 6, 6)),
        (nn.RNNClassifier(2, 4, 3), torch.randn(5, 3, 2)),
    ],
)
def test_traced_graph_reproduces_the_forward_pass(model, x):
    params = model.init(torch.Generator().manual_seed(0), torch.float64)
    x = x.double()
    traced = model(_nodes(params), x)
    assert torch.allclose(traced.value, model(params, x), atol=1e-12)


def test_consensus_is_the_mean_of_the_copies_and_repeated_tokens_average():
    table = api.parameter(torch.zeros(4, 2), "table")
    tokens = torch.tensor([[1, 1, 3]])
    rows = api.index(table, tokens)  # row 1 used twice
    out = api.relu(rows)
    graph = Graph(out)
    state = graph.initial_state()
    (op,) = graph.operations
    copies = torch.tensor([[[[1.0], [2.0]], [[3.0], [6.0]], [[5.0], [7.0]]]]).reshape(1, 3, 2, 1)
    state[op] = (copies,)
    mean = graph.consensus(table, state)
    assert torch.allclose(
        mean[1], torch.tensor([2.0, 4.0])
    )  # mean of (1,2) and (3,6), not the last
    assert torch.allclose(mean[3], torch.tensor([5.0, 7.0]))
    assert torch.allclose(graph.copy_counts[table][:, 0], torch.tensor([0.0, 2.0, 0.0, 1.0]))


def test_weight_broadcast_over_the_batch_averages_the_copies():
    w = api.parameter(torch.randn(3, 2), "w")
    x = torch.randn(5, 3)
    graph = Graph(api.matmul(x, w))
    state = graph.initial_state()
    (dot,) = graph.operations
    columns = torch.randn(5, 2, 3)
    state[dot] = (state[dot][0], columns)
    assert torch.allclose(graph.consensus(w, state), columns.mean(0).T, atol=1e-6)


def test_equal_constants_are_distinct_nodes():
    a, b = api.constant(torch.zeros(3)), api.constant(torch.zeros(3))
    graph = Graph(api.add(a, b))
    assert len([v for v in graph.vertices if not hasattr(v, "spec")]) == 2


@pytest.mark.parametrize(
    "model",
    [
        nn.MLP([6, 5, 4, 3]),
        nn.MLP([6, 5, 4, 3], skip=True),
        nn.RNNClassifier(2, 4, 3),
        nn.CNN(1, 2, 4, 3),
    ],
)
def test_colour_classes_have_no_inner_edge(model):
    x = (
        torch.randn(3, 6)
        if isinstance(model, nn.MLP)
        else (
            torch.randn(3, 2, 2) if isinstance(model, nn.RNNClassifier) else torch.randn(3, 1, 4, 4)
        )
    )
    out = api.cross_entropy(
        model(_nodes(model.init(torch.Generator().manual_seed(0))), x), torch.tensor([0, 1, 2])
    )
    graph = Graph(out)
    for classes in (graph.bipartition(), graph.greedy_colouring()):
        assert sorted(id(v) for members in classes for v in members) == sorted(
            map(id, graph.vertices)
        )
        for members in classes:
            inside = set(members)
            assert not any(graph.neighbours[v] & inside for v in members)
    assert out in graph.bipartition()[0]


def test_residual_connection_does_not_two_colour_but_cyclic_algorithms_run():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, generator=g, dtype=torch.float64)
    params = {
        "w": torch.randn(3, 3, generator=g, dtype=torch.float64) * 0.5,
        "b": torch.zeros(3, dtype=torch.float64),
    }
    target = torch.randn(8, 3, generator=g, dtype=torch.float64)

    def fn(p):
        h = api.sum_relu(api.matmul(x, p["w"]), p["b"])
        return api.regression_target(api.add(h, api.matmul(h, p["w"])), target)

    with pytest.raises(GraphColouringError, match="does not 2-colour"):
        DouglasRachford(steps_per_update=1).update(fn, params)
    for optimizer in (
        CyclicProjections(steps_per_update=20),
        CyclicDouglasRachford(steps_per_update=20),
    ):
        new, residual = optimizer.update(fn, params)
        assert all(torch.isfinite(v).all() for v in new.values())
        assert residual < optimizer.last_residuals[0]


@pytest.mark.parametrize("name", ["dr", "ap", "dm"])
@pytest.mark.parametrize("weighting", ["one", "count"])
def test_two_layer_linear_network_reaches_a_feasible_point(name, weighting):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 4, generator=g, dtype=torch.float64)
    teacher = {
        "w1": torch.randn(4, 3, generator=g, dtype=torch.float64),
        "w2": torch.randn(3, 2, generator=g, dtype=torch.float64),
    }
    y = x @ teacher["w1"] @ teacher["w2"]
    start = {
        k: v + 0.3 * torch.randn(v.shape, generator=g, dtype=torch.float64)
        for k, v in teacher.items()
    }

    def fn(p):
        return api.regression_target(api.matmul(api.matmul(x, p["w1"]), p["w2"]), y)

    optimizer = make_optimizer(name, steps_per_update=600, consensus_weight=weighting)
    new, residual = optimizer.update(fn, start)
    violation = optimizer.last_graph.constraint_violation(optimizer.last_state)
    initial = optimizer.last_graph.constraint_violation(optimizer.last_graph.initial_state())
    assert violation < 1e-2 * initial
    assert residual < 1e-5 * optimizer.last_residuals[0]
    before = float(((x @ start["w1"] @ start["w2"] - y) ** 2).mean())
    after = float(((x @ new["w1"] @ new["w2"] - y) ** 2).mean())
    assert after < 1e-4 * before


def test_projection_training_reduces_the_loss_on_a_small_mlp():
    g = torch.Generator().manual_seed(2)
    model = nn.MLP([4, 8, 3])
    x = torch.randn(64, 4, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    params = model.init(g)
    before = float(api.cross_entropy(model(params, x), y))
    optimizer = DouglasRachford(steps_per_update=30)
    for _ in range(5):
        params, _ = optimizer.update(lambda p: api.cross_entropy(model(p, x), y), params)
    assert float(api.cross_entropy(model(params, x), y)) < before


def test_transform_adjoints_sum_copies():
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    node = api.parameter(x, "x")
    for transform in (
        api.conv_patches(node, 3, stride=1, padding=1),
        api.transpose(api.reshape(node, [6, 25])),
        api.repeat(node, 4, 1),
        api.concatenate([node, node], 1),
    ):
        cotangent = torch.randn(transform.shape, dtype=torch.float64)
        inputs = [p.value.clone().requires_grad_(True) for p in transform.parents]
        expected = torch.autograd.grad(transform.forward(*inputs), inputs, cotangent)
        for got, want in zip(transform.adjoint(cotangent), expected, strict=True):
            assert torch.allclose(got, want)


def test_bad_inputs_raise_clear_errors():
    w = api.parameter(torch.randn(3, 2), "w")
    with pytest.raises(
        UnknownOperationError, match="no projection is registered for operation 'tanh'"
    ):
        api.apply_operation("tanh", w)
    with pytest.raises(ValueError, match=r"matmul needs x \(..., k\) and w \(k, m\)"):
        api.matmul(torch.randn(4, 5), w)
    with pytest.raises(ValueError, match="a and b must have equal, non-empty last axes"):
        api.dot(w, api.parameter(torch.randn(3, 4), "v"))
    with pytest.raises(ValueError, match="do not broadcast"):
        api.add(w, torch.randn(4, 2))
    with pytest.raises(ValueError, match="parameters \\['unused'\\] do not appear"):
        AlternatingProjections(steps_per_update=1).update(
            lambda p: api.regression_target(api.relu(p["w"]), torch.zeros(3, 2)),
            {"w": torch.randn(3, 2), "unused": torch.randn(2)},
        )
    with pytest.raises(ValueError, match="relaxation must be in"):
        DouglasRachford(relaxation=1.5)
    with pytest.raises(ValueError, match="beta must be non-zero"):
        DifferenceMap(beta=0)
    with pytest.raises(ValueError, match="name must be one of the algorithms"):
        make_optimizer("sgd")
    with pytest.raises(ValueError, match="consensus_weight must be"):
        DouglasRachford(consensus_weight="two")


def _sweep_case(kind):
    g = torch.Generator().manual_seed(3)
    if kind == "mlp":
        model, x, classes = nn.MLP([6, 5, 4, 3]), torch.randn(7, 6, generator=g), 3
    elif kind == "cnn":
        model, x, classes = nn.CNN(1, 3, 6, 4), torch.randn(2, 1, 6, 6, generator=g), 4
    else:
        model, x, classes = nn.RNNClassifier(2, 4, 3), torch.randn(5, 3, 2, generator=g), 3
    y = torch.randint(0, classes, (x.shape[0],), generator=g)
    params = model.init(torch.Generator().manual_seed(0), torch.float64)
    return params, lambda p: api.cross_entropy(model(p, x.double()), y)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "rnn"])
@pytest.mark.parametrize("name", ["ap", "ar", "dr", "dm", "cyclic-ap", "cyclic-dr"])
def test_batched_sweep_gives_the_per_node_iterates(kind, name):
    params, fn = _sweep_case(kind)
    weighting = "count" if name == "dr" else "one"
    runs = {}
    for sweep in ("per_node", "batched"):
        optimizer = make_optimizer(
            name, steps_per_update=5, consensus_weight=weighting, sweep=sweep
        )
        new, _ = optimizer.update(fn, params)
        new, _ = optimizer.update(fn, new)  # a second mini-batch from the new parameters
        runs[sweep] = new, optimizer
    (reference, slow), (batched, fast) = runs["per_node"], runs["batched"]
    for key in params:
        assert torch.allclose(batched[key], reference[key], rtol=0, atol=1e-12)
    assert fast.last_residuals == pytest.approx(slow.last_residuals, rel=0, abs=1e-12)
    slow_ops, fast_ops = slow.last_graph.operations, fast.last_graph.operations
    for a, b in zip(slow_ops, fast_ops, strict=True):
        for x, y in zip(slow.last_state[a], fast.last_state[b], strict=True):
            assert torch.allclose(y, x, rtol=0, atol=1e-12)
    # the batched sweep really groups: fewer projection calls than operations in every class
    for members in fast.classes(fast.last_graph):
        operations = [v for v in members if hasattr(v, "spec") and not v.spec.is_output_constraint]
        groups = fast.last_graph.sweep_groups(members)
        assert sum(len(group.members) for group in groups) == len(operations)
        if kind == "rnn":
            assert len(groups) == 1  # 2T dot nodes (two fan-ins) or T fused ReLUs: one call


def test_sweep_groups_merge_by_operator_and_keep_unknown_kinds_single():
    from pjax_torch.graph import make_sweep_groups

    x = api.parameter(torch.randn(4, 3), "x")
    v = api.parameter(torch.randn(4, 5), "v")
    wide, narrow = api.matmul(x, api.parameter(torch.randn(3, 2), "w")), api.dot(v, v)
    pools = [api.max(api.parameter(torch.randn(2, n), f"p{n}")) for n in (2, 2, 3)]
    signs = [api.sign(x), api.sign(api.parameter(torch.randn(5), "s"))]
    four_level = api.quantize(x, 4)
    groups = make_sweep_groups([wide, narrow, *pools, *signs, four_level])
    by_members = sorted((g.spec.name, g.layout, len(g.members)) for g in groups)
    assert by_members == [
        ("dot", "staged", 2),  # fan-ins 3 and 5: one scalar solve
        ("max", "rows", 1),  # fan-in 3
        ("max", "rows", 2),  # fan-in 2
        ("quantize", "elementwise", 1),  # other keyword arguments (levels=4)
        ("quantize", "elementwise", 2),
    ]
    with pytest.raises(ValueError, match="sweep must be"):
        DouglasRachford(sweep="fast")
    with pytest.raises(ValueError, match="sweep must be"):
        Graph(wide, sweep="fast")
