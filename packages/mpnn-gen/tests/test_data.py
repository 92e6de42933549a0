import random

import pytest
import torch
from mpnn_gen.data import fake_random_labels


def test_fake_random_labels_is_deterministic_and_shaped():
    first = fake_random_labels(30, nodes=12, degree=3.0, features=8, seed=4)
    again = fake_random_labels(30, nodes=12, degree=3.0, features=8, seed=4)
    other = fake_random_labels(30, nodes=12, degree=3.0, features=8, seed=5)
    assert len(first) == 30
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a.x, b.x) and torch.equal(a.edge_index, b.edge_index)
        assert torch.equal(a.y, b.y)
    assert any(not torch.equal(a.x, b.x) for a, b in zip(first, other, strict=True))
    for graph in first:
        n = graph.num_nodes
        assert 9 <= n <= 15  # FakeDataset: 3/4 .. 5/4 of the average size
        assert graph.x.shape == (n, 8) and graph.y.shape == (1,)
        assert graph.edge_index.shape[0] == 2 and int(graph.edge_index.max()) < n
        # undirected, no self-loops
        assert not bool((graph.edge_index[0] == graph.edge_index[1]).any())
        pairs = set(map(tuple, graph.edge_index.t().tolist()))
        assert all((v, u) in pairs for u, v in pairs)
        assert torch.allclose(graph.x.norm(dim=1), torch.ones(n))
    labels = torch.cat([g.y for g in first])
    assert set(labels.tolist()) <= {0, 1} and 0 < int(labels.sum()) < 30


def test_fake_random_labels_leaves_global_random_state_alone():
    random.seed(11)
    torch.manual_seed(11)
    expected_python, expected_torch = random.random(), torch.rand(3)
    random.seed(11)
    torch.manual_seed(11)
    fake_random_labels(5, seed=0)
    assert random.random() == expected_python
    assert torch.equal(torch.rand(3), expected_torch)


def test_fake_random_labels_labels_follow_the_seeded_generator():
    graphs = fake_random_labels(40, classes=3, seed=7)
    expected = torch.randint(3, (40,), generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.cat([g.y for g in graphs]), expected)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_graphs": 0}, "num_graphs"),
        ({"classes": 1}, "classes"),
        ({"nodes": 8, "degree": 8}, "degree"),
        ({"features": 2.5}, "features"),
    ],
)
def test_fake_random_labels_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fake_random_labels(**kwargs)
