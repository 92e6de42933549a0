"""One flat representation for every graph input the package accepts.

PyG ``Data``/``Batch`` objects, sequences of them, networkx graphs and sequences of those are all
turned into a :class:`GraphBatch`: one disjoint union with an undirected ``edge_index`` (both
directions present), a ``batch`` vector and integer node labels for colour refinement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from kernelkit.validation import check_finite, check_floating, check_int_in_range, check_ndim
from mpnn_gen.hashing import mix64

__all__ = ["GraphBatch", "as_graph_batch", "to_pyg"]


@dataclass(frozen=True)
class GraphBatch:
    """A disjoint union of graphs.

    ``edge_index`` is ``(2, E)`` int64 with each undirected edge stored in both directions and no
    duplicates; ``batch[v]`` is the graph of node ``v``; ``labels`` are int64 initial colours.
    """

    edge_index: torch.Tensor
    batch: torch.Tensor
    labels: torch.Tensor
    num_graphs: int

    @property
    def num_nodes(self) -> int:
        return int(self.batch.numel())


def _feature_labels(x: torch.Tensor) -> torch.Tensor:
    """Integer labels that depend only on a node's feature row, so equal rows get equal labels
    across separate calls (needed for batch invariance of the refinement)."""
    if x.dim() == 1:
        x = x.unsqueeze(1)
    bits = x.detach().to(torch.float64).contiguous().view(torch.int64)
    label = torch.zeros(x.shape[0], dtype=torch.int64)
    for column in range(bits.shape[1]):
        label = mix64(label * 0x100000001B3 + bits[:, column])
    return label


def _from_networkx(graphs: Sequence, label_attribute: str | None) -> GraphBatch:
    sources, targets, labels, batch = [], [], [], []
    offset = 0
    for graph_id, graph in enumerate(graphs):
        if graph.is_directed():
            raise ValueError(f"graphs[{graph_id}] is directed; 1-WL here expects undirected graphs")
        index = {node: i for i, node in enumerate(graph.nodes)}
        for u, v in graph.edges:
            if u == v:
                continue
            sources += [offset + index[u], offset + index[v]]
            targets += [offset + index[v], offset + index[u]]
        for node in graph.nodes:
            value = graph.nodes[node].get(label_attribute, 0) if label_attribute else 0
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(
                    f"node attribute {label_attribute!r} of graphs[{graph_id}] node {node!r} "
                    f"must be an int, got {value!r}"
                )
            labels.append(value)
        batch += [graph_id] * graph.number_of_nodes()
        offset += graph.number_of_nodes()
    edge_index = torch.tensor([sources, targets], dtype=torch.long).reshape(2, -1)
    return GraphBatch(
        edge_index=edge_index,
        batch=torch.tensor(batch, dtype=torch.long),
        labels=torch.tensor(labels, dtype=torch.long),
        num_graphs=len(graphs),
    )


def _symmetrise(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    both = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    key = torch.unique(both[0] * max(num_nodes, 1) + both[1])
    return torch.stack([key // max(num_nodes, 1), key % max(num_nodes, 1)])


def check_pyg_graph(
    name: str, graph, *, use_features: bool = True, need_features: bool = False
) -> None:
    """A clear error for what would otherwise wrap around, crash deep in the refinement or a
    model, or be hashed into colours or averaged into a bound silently: non-integer or
    out-of-range edge indices, features of the wrong shape, NaN/inf features.

    ``name`` names the graph in messages (``graphs[0]``); ``need_features`` makes ``x``
    required (the models and bounds read it). A missing ``edge_index`` means no edges.
    """
    from torch_geometric.data import Data

    if not isinstance(graph, Data):
        raise TypeError(f"{name} must be a PyG Data, got {type(graph).__name__}")
    x = getattr(graph, "x", None)
    if x is None and need_features:
        raise TypeError(f"{name}.x must be a torch.Tensor of node features, got None")
    if x is not None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}.x must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim not in (1, 2) or x.shape[0] != graph.num_nodes:
            raise ValueError(
                f"{name}.x must have shape (num_nodes,) or (num_nodes, features) with "
                f"num_nodes={graph.num_nodes}, got {tuple(x.shape)}"
            )
        if need_features and not x.is_floating_point():
            raise TypeError(f"{name}.x must have a floating-point dtype, got {x.dtype}")
    edge_index = graph.edge_index
    if edge_index is not None:
        _check_edge_index(name, edge_index, int(graph.num_nodes))
    finite = not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.numel() == 0
    if (use_features or need_features) and not finite and not bool(torch.isfinite(x).all()):
        raise ValueError(
            f"{name}.x must be finite: NaN or inf features would be hashed into colours "
            "or averaged into a bound"
        )


def _check_edge_index(name: str, edge_index, num_nodes: int) -> None:
    if not isinstance(edge_index, torch.Tensor):
        raise TypeError(
            f"{name}.edge_index must be a torch.Tensor, got {type(edge_index).__name__}"
        )
    if edge_index.dtype.is_floating_point or edge_index.dtype in (torch.bool, torch.complex64):
        raise TypeError(
            f"{name}.edge_index must have an integer dtype (node ids), got {edge_index.dtype}"
        )
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"{name}.edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
        raise ValueError(
            f"{name}.edge_index must hold node ids in [0, {num_nodes - 1}] "
            f"(num_nodes={num_nodes}), got values from {int(edge_index.min())} to "
            f"{int(edge_index.max())}"
        )


def check_shared_feature_shape(name: str, graphs: Sequence) -> None:
    """PyG graphs that can be batched: ``x`` on every graph or on none, of one feature shape."""
    with_features = [g for g in graphs if getattr(g, "x", None) is not None]
    if with_features and len(with_features) != len(graphs):
        raise ValueError(f"{name}[i].x must be given for every graph or for none")
    widths = {tuple(g.x.shape[1:]) for g in with_features}
    if len(widths) > 1:
        raise ValueError(
            f"{name}[i].x must have the same feature shape in every graph, got {sorted(widths)}"
        )


def _from_pyg(graphs: Sequence, use_features: bool) -> GraphBatch:
    from torch_geometric.data import Batch

    for index, graph in enumerate(graphs):
        check_pyg_graph(f"graphs[{index}]", graph, use_features=use_features)
    if use_features:
        check_shared_feature_shape("graphs", graphs)
    merged = Batch.from_data_list(list(graphs))
    num_nodes = int(merged.num_nodes)
    labels = (
        _feature_labels(merged.x)
        if use_features and getattr(merged, "x", None) is not None
        else torch.zeros(num_nodes, dtype=torch.long)
    )
    edges = merged.edge_index if merged.edge_index is not None else torch.zeros(2, 0)
    return GraphBatch(
        edge_index=_symmetrise(edges.long(), num_nodes),
        batch=merged.batch.long()
        if merged.batch is not None
        else torch.zeros(num_nodes, dtype=torch.long),
        labels=labels,
        num_graphs=int(merged.num_graphs),
    )


def as_graph_batch(
    graphs, *, use_features: bool = True, label_attribute: str | None = "label"
) -> GraphBatch:
    """Flatten ``graphs`` into a :class:`GraphBatch`.

    ``graphs`` may be a :class:`GraphBatch`, a PyG ``Data``/``Batch``, a networkx graph, or a
    non-empty sequence of PyG ``Data`` or of networkx graphs. Initial colours come from the rows
    of ``x`` (PyG, when ``use_features``) or from the integer node attribute ``label_attribute``
    (networkx); otherwise every node starts with the same colour.
    """
    import networkx as nx

    if isinstance(graphs, GraphBatch):
        return graphs
    if isinstance(graphs, nx.Graph):
        return _from_networkx([graphs], label_attribute)
    if not isinstance(graphs, Sequence) and not hasattr(graphs, "__getitem__"):
        raise TypeError(
            "graphs must be a PyG Data/Batch, a networkx graph or a sequence of them, "
            f"got {type(graphs).__name__}"
        )
    if isinstance(graphs, Sequence) and graphs and all(isinstance(g, nx.Graph) for g in graphs):
        return _from_networkx(list(graphs), label_attribute)
    # torch_geometric is imported only here: its import costs seconds.
    from torch_geometric.data import Batch, Data

    if isinstance(graphs, Batch):
        return _from_pyg(graphs.to_data_list(), use_features)
    if isinstance(graphs, Data):
        return _from_pyg([graphs], use_features)
    items = list(graphs)
    if not items:
        raise ValueError("graphs must contain at least one graph, got an empty collection")
    if all(isinstance(g, Data) for g in items):
        return _from_pyg(items, use_features)
    kinds = sorted({type(g).__name__ for g in items})
    raise TypeError(
        f"graphs must all be PyG Data or all networkx graphs, got a mix of types {kinds}"
    )


def to_pyg(graph, *, features: torch.Tensor | None = None, y: int | None = None):
    """A networkx graph as a PyG ``Data`` with both edge directions; ``features`` default to a
    constant 1-d feature. ``features`` must be finite floats, one row per node; ``y`` a class
    id >= 0."""
    import networkx as nx
    from torch_geometric.data import Data

    if not isinstance(graph, nx.Graph):
        raise TypeError(f"graph must be a networkx graph, got {type(graph).__name__}")
    if features is not None:
        check_floating("features", features)
        check_ndim("features", features, 2)
        if features.shape[0] != graph.number_of_nodes():
            raise ValueError(
                f"features must have one row per node ({graph.number_of_nodes()}), got shape "
                f"{tuple(features.shape)}"
            )
        check_finite("features", features)
    if y is not None:
        check_int_in_range("y", y, 0)
    index = {node: i for i, node in enumerate(graph.nodes)}
    pairs = [(index[u], index[v]) for u, v in graph.edges if u != v]
    edges = pairs + [(v, u) for u, v in pairs]
    edge_index = torch.tensor(edges, dtype=torch.long).t().reshape(2, -1)
    n = graph.number_of_nodes()
    x = features if features is not None else torch.ones(n, 1)
    data = Data(x=x, edge_index=edge_index, num_nodes=n)
    if y is not None:
        data.y = torch.tensor([y], dtype=torch.long)
    return data
