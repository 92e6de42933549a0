"""Small graph classifiers the bounds are written for, and a plain training loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import torch

from kernelkit.utils import progress
from kernelkit.validation import (
    check_floating,
    check_index_range,
    check_int_in_range,
    check_ndim,
    check_real_in_range,
    check_tensor,
)

__all__ = ["GCN", "MPGNN", "TrainConfig", "train_graph_classifier"]


def _check_forward(model: torch.nn.Module, x, edge_index, batch, in_channels: int) -> None:
    """Node features ``(N, in_channels)`` in the model's dtype, edges ``(2, E)`` of ids in
    ``[0, N)``, ``batch`` (or ``None``: one graph) ``(N,)`` of graph ids ``>= 0``. NaN features
    propagate to the logits, as in any torch layer; the data entry points refuse them."""
    check_floating("x", x)
    check_ndim("x", x, 2)
    if x.shape[1] != in_channels:
        raise ValueError(f"x must have {in_channels} feature columns, got shape {tuple(x.shape)}")
    dtype = next(model.parameters()).dtype
    if x.dtype != dtype:
        raise TypeError(f"x must have the model's dtype {dtype}, got {x.dtype}")
    check_index_range("edge_index", edge_index, x.shape[0])
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
    if batch is not None:
        check_index_range("batch", batch, max(x.shape[0], 1))
        if batch.shape != (x.shape[0],):
            raise ValueError(
                f"batch must have shape ({x.shape[0]},), one graph id per node, got "
                f"{tuple(batch.shape)}"
            )


def check_graph_labels(name: str, y, classes: int, graphs: int) -> None:
    """One integer class id in ``[0, classes)`` per graph."""
    check_index_range(name, y, classes)
    if y.shape != (graphs,):
        raise ValueError(
            f"{name} must hold one class id per graph, shape ({graphs},), got {tuple(y.shape)}"
        )


def _pool(x, batch, pool: str):
    from torch_geometric.nn import global_add_pool, global_mean_pool

    return global_mean_pool(x, batch) if pool == "mean" else global_add_pool(x, batch)


def _check_pool(pool: str) -> str:
    if pool not in ("mean", "sum"):
        raise ValueError(f"pool must be 'mean' or 'sum', got {pool!r}")
    return pool


class GCN(torch.nn.Module):
    """``depth`` GCNConv layers with ReLU, mean pooling, one linear readout (Liao et al.).

    ``pool="sum"`` swaps in sum pooling; the PAC-Bayes bounds assume the mean readout."""

    def __init__(
        self, in_channels: int, hidden: int, classes: int, depth: int, *, pool: str = "mean"
    ) -> None:
        super().__init__()
        from torch_geometric.nn import GCNConv

        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.pool = _check_pool(pool)
        self.in_channels = in_channels
        dims = [in_channels] + [hidden] * depth
        self.convs = torch.nn.ModuleList(GCNConv(a, b) for a, b in pairwise(dims))
        self.readout = torch.nn.Linear(hidden, classes, bias=False)

    def forward(self, x, edge_index, batch):
        _check_forward(self, x, edge_index, batch, self.in_channels)
        for conv in self.convs:
            x = torch.relu(conv(x, edge_index))
        return self.readout(_pool(x, batch, self.pool))


class MPGNN(torch.nn.Module):
    """One GraphConv (sum aggregation plus root) applied ``steps`` times with shared weights,
    mean pooling and a linear readout: the weight-sharing MPGNN of Liao et al. Thm 3.4.

    The input is zero-padded to ``hidden`` channels so the shared weight can act at every step.
    ``pool="sum"`` swaps in sum pooling (the bounds assume the mean readout).
    """

    def __init__(
        self, in_channels: int, hidden: int, classes: int, steps: int, *, pool: str = "mean"
    ) -> None:
        super().__init__()
        from torch_geometric.nn import GraphConv

        if steps < 1 or in_channels > hidden:
            raise ValueError(
                f"need steps >= 1 and in_channels <= hidden, got steps={steps}, "
                f"in_channels={in_channels}, hidden={hidden}"
            )
        self.pool = _check_pool(pool)
        self.in_channels, self.hidden, self.shared_steps = in_channels, hidden, steps
        self.conv = GraphConv(hidden, hidden, aggr="add", bias=False)
        self.readout = torch.nn.Linear(hidden, classes, bias=False)

    def forward(self, x, edge_index, batch):
        _check_forward(self, x, edge_index, batch, self.in_channels)
        x = torch.nn.functional.pad(x, (0, self.hidden - x.shape[1]))
        for _ in range(self.shared_steps):
            x = torch.relu(self.conv(x, edge_index))
        return self.readout(_pool(x, batch, self.pool))


@dataclass
class TrainConfig:
    """Full-batch Adam on cross-entropy."""

    epochs: int = field(default=200, metadata={"help": "full-batch training epochs"})
    lr: float = field(default=0.01, metadata={"help": "Adam learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "Adam weight decay"})
    seed: int = field(default=0, metadata={"help": "seed for initialisation"})
    stop_when_fit: bool = field(
        default=False,
        metadata={"help": "stop early once every training graph is classified correctly"},
    )

    def __post_init__(self) -> None:
        check_int_in_range("epochs", self.epochs, 0)
        check_real_in_range("lr", self.lr, 0.0)
        check_real_in_range("weight_decay", self.weight_decay, 0.0)


def train_graph_classifier(model: torch.nn.Module, graphs, config: TrainConfig | None = None):
    """Train ``model(x, edge_index, batch) -> logits`` on a list of PyG graphs with ``y``.

    Every graph is checked first (features, edges, one class id ``y`` below the number of
    logits), so a bad graph raises a ``TypeError``/``ValueError`` naming it."""
    from torch_geometric.data import Batch

    from mpnn_gen.bounds import _graph_list

    config = config or TrainConfig()
    graphs = _graph_list(graphs, "graphs", need_labels=True)
    torch.manual_seed(config.seed)
    batch = Batch.from_data_list(graphs)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    model.train()
    for epoch in progress(range(config.epochs), desc="mpnn-gen train", leave=False):
        optimiser.zero_grad()
        logits = model(batch.x, batch.edge_index, batch.batch)
        if epoch == 0:
            check_tensor("graphs[i].y", batch.y)
            check_graph_labels("graphs[i].y", batch.y, logits.shape[1], len(graphs))
        if config.stop_when_fit and bool((logits.argmax(dim=1) == batch.y).all()):
            break
        loss = torch.nn.functional.cross_entropy(logits, batch.y)
        loss.backward()
        optimiser.step()
    model.eval()
    return model
