"""Offline, seeded graph data sets (nothing is downloaded)."""

from __future__ import annotations

import torch

__all__ = [
    "atlas",
    "csl",
    "er_densities",
    "fake_random_labels",
    "liao_synthetic",
    "random_label_graphs",
    "random_regular",
    "tnm_trees",
]

LIAO_SETS = {
    "SBM-1": {"n": 100, "blocks": [40, 60], "p": [[0.25, 0.13], [0.13, 0.37]]},
    "ER-4": {"n": 100, "p": 0.7},
    "ER-5": {"n": 20, "p": 0.5},
}


def atlas():
    """All 1253 networkx atlas graphs with at most 7 nodes (bundled with networkx)."""
    import networkx as nx

    return list(nx.graph_atlas_g())


def csl(skips=(2, 3, 4, 5, 6, 9, 11, 12, 13, 16), nodes: int = 41):
    """The circular skip-link graphs C_nodes(1, k): 4-regular, pairwise non-isomorphic, one
    1-WL class."""
    import networkx as nx

    return [nx.circulant_graph(nodes, [1, k]) for k in skips]


def random_regular(count: int, degree: int, nodes: int, seed: int = 0):
    """``count`` random ``degree``-regular graphs on ``nodes`` nodes: all 1-WL-equivalent."""
    import networkx as nx

    return [nx.random_regular_graph(degree, nodes, seed=seed + i) for i in range(count)]


def tnm_trees(order: int):
    """Morris et al.'s shatter-test trees of ``order`` nodes: a root with two children carrying
    ``a`` and ``b`` leaves, ``a <= b``, ``a + b = order - 3``; 1-WL tells all of them apart."""
    import networkx as nx

    if order < 3:
        raise ValueError(f"order must be >= 3, got {order}")
    trees = []
    for a in range((order - 3) // 2 + 1):
        b = order - 3 - a
        tree = nx.Graph([(0, 1), (0, 2)])
        tree.add_edges_from((1, 3 + i) for i in range(a))
        tree.add_edges_from((2, 3 + a + i) for i in range(b))
        trees.append(tree)
    return trees


def _unit_features(n: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    x = torch.randn(n, dim, generator=generator)
    return x / x.norm(dim=1, keepdim=True)


def _degree_features(graph, dim: int) -> torch.Tensor:
    """One-hot node degree, degrees >= ``dim - 1`` sharing the last slot (PyG ``OneHotDegree``
    style); unit norm, so B = 1 as for the random features."""
    degrees = torch.tensor([d for _, d in graph.degree()], dtype=torch.long).clamp(max=dim - 1)
    return torch.nn.functional.one_hot(degrees, dim).to(torch.get_default_dtype())


def liao_synthetic(
    num_graphs: int = 200,
    *,
    nodes: int = 30,
    features: int = 16,
    seed: int = 0,
    node_features: str = "random",
):
    """Two-class graph classification in the spirit of Liao et al.'s synthetic sets: class 0 an
    SBM with blocks in proportion 40:60 and p = [[.25, .13], [.13, .37]], class 1 an
    Erdős–Rényi graph with the same expected density.

    ``node_features="random"``: unit-norm random ``features``-d node features (as in Liao et al.;
    they carry no label information and a mean-pooling GCN stays near chance on this task).
    ``node_features="degree"``: one-hot degree (capped at ``features - 1``), also unit norm; the
    two classes differ in their degree spread, so the task is learnable but not trivially so."""
    import networkx as nx

    from mpnn_gen.graphs import to_pyg

    if num_graphs < 1:
        raise ValueError(f"num_graphs must be >= 1, got {num_graphs}")
    if node_features not in ("random", "degree"):
        raise ValueError(f"node_features must be 'random' or 'degree', got {node_features!r}")
    generator = torch.Generator().manual_seed(seed)
    sizes = [round(0.4 * nodes), nodes - round(0.4 * nodes)]
    probs = LIAO_SETS["SBM-1"]["p"]
    density = sum(sizes[i] * sizes[j] * probs[i][j] for i in range(2) for j in range(2)) / nodes**2
    graphs = []
    for i in range(num_graphs):
        label = i % 2
        if label == 0:
            graph = nx.stochastic_block_model(sizes, probs, seed=seed * 100_003 + i)
        else:
            graph = nx.gnp_random_graph(nodes, density, seed=seed * 100_003 + i)
        if node_features == "random":
            x = _unit_features(nodes, features, generator)
        else:
            x = _degree_features(graph, features)
        graphs.append(to_pyg(graph, features=x, y=label))
    return graphs


def er_densities(
    num_graphs: int = 200,
    *,
    nodes: int = 20,
    densities: tuple[float, ...] = (0.2, 0.3),
    features: int = 16,
    seed: int = 0,
    node_features: str = "degree",
):
    """Erdős–Rényi graphs whose class is the edge density (graph ``i`` has label
    ``i % len(densities)`` and density ``densities[label]``), in the spirit of Liao et al.'s ER
    sets. Features as in :func:`liao_synthetic`; with ``"degree"`` (the default) the classes are
    separable, up to sampling noise, by the mean degree, so a mean-pooling GCN learns them."""
    import networkx as nx

    from mpnn_gen.graphs import to_pyg

    if num_graphs < 1:
        raise ValueError(f"num_graphs must be >= 1, got {num_graphs}")
    if node_features not in ("random", "degree"):
        raise ValueError(f"node_features must be 'random' or 'degree', got {node_features!r}")
    generator = torch.Generator().manual_seed(seed)
    graphs = []
    for i in range(num_graphs):
        label = i % len(densities)
        graph = nx.gnp_random_graph(nodes, densities[label], seed=seed * 100_003 + i)
        if node_features == "random":
            x = _unit_features(nodes, features, generator)
        else:
            x = _degree_features(graph, features)
        graphs.append(to_pyg(graph, features=x, y=label))
    return graphs


def random_label_graphs(graphs, *, classes: int = 2, seed: int = 0):
    """Copies of ``graphs`` with uniformly random labels (memorisation: the gap is the train
    accuracy minus chance)."""
    generator = torch.Generator().manual_seed(seed)
    relabelled = []
    for graph in graphs:
        copy = graph.clone()
        copy.y = torch.randint(classes, (1,), generator=generator)
        relabelled.append(copy)
    return relabelled


def fake_random_labels(
    num_graphs: int = 200,
    *,
    nodes: int = 16,
    degree: float = 4.0,
    features: int = 16,
    classes: int = 2,
    seed: int = 0,
):
    """Graphs from PyG's ``FakeDataset`` (random edges, Gaussian node features) with labels drawn
    independently of the graphs: pure memorisation data, so the test error of any model is at
    chance and the gap is the train accuracy minus chance.

    ``FakeDataset`` draws from Python's ``random`` (graph sizes, ``3/4..5/4`` of ``nodes``) and
    torch's global generator; both are seeded with ``seed`` and restored afterwards, so the call
    is deterministic and leaves the caller's random state untouched. It is built with
    ``num_classes=0`` (its own labels would shift the features by the label); our labels come
    from a ``torch.Generator`` seeded with ``seed``. Node features are scaled to unit norm
    (``B = 1``, as in :func:`liao_synthetic`)."""
    import random

    from torch_geometric.data import Data
    from torch_geometric.datasets import FakeDataset

    for name, value, low in (
        ("num_graphs", num_graphs, 1),
        ("nodes", nodes, 2),
        ("features", features, 1),
        ("classes", classes, 2),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if isinstance(degree, bool) or not isinstance(degree, int | float) or not 1 <= degree < nodes:
        raise ValueError(f"degree must be a number in [1, nodes={nodes}), got {degree!r}")
    python_state = random.getstate()
    try:
        random.seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            dataset = FakeDataset(
                num_graphs=num_graphs,
                avg_num_nodes=nodes,
                avg_degree=degree,
                num_channels=features,
                num_classes=0,
                task="graph",
            )
    finally:
        random.setstate(python_state)
    labels = torch.randint(classes, (num_graphs,), generator=torch.Generator().manual_seed(seed))
    graphs = []
    for i in range(num_graphs):
        fake = dataset[i]
        x = fake.x / fake.x.norm(dim=1, keepdim=True)
        graphs.append(Data(x=x, edge_index=fake.edge_index, y=labels[i : i + 1].clone()))
    return graphs
