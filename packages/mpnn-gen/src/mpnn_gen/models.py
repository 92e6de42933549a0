"""Small graph classifiers the bounds are written for, and a plain training loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import torch

__all__ = ["GCN", "MPGNN", "TrainConfig", "train_graph_classifier"]


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
        dims = [in_channels] + [hidden] * depth
        self.convs = torch.nn.ModuleList(GCNConv(a, b) for a, b in pairwise(dims))
        self.readout = torch.nn.Linear(hidden, classes, bias=False)

    def forward(self, x, edge_index, batch):
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
        self.hidden, self.shared_steps = hidden, steps
        self.conv = GraphConv(hidden, hidden, aggr="add", bias=False)
        self.readout = torch.nn.Linear(hidden, classes, bias=False)

    def forward(self, x, edge_index, batch):
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


def train_graph_classifier(model: torch.nn.Module, graphs, config: TrainConfig | None = None):
    """Train ``model(x, edge_index, batch) -> logits`` on a list of PyG graphs with ``y``."""
    from torch_geometric.data import Batch

    config = config or TrainConfig()
    if not graphs:
        raise ValueError("graphs must contain at least one training graph, got none")
    torch.manual_seed(config.seed)
    batch = Batch.from_data_list(list(graphs))
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    model.train()
    for _ in range(config.epochs):
        optimiser.zero_grad()
        logits = model(batch.x, batch.edge_index, batch.batch)
        if config.stop_when_fit and bool((logits.argmax(dim=1) == batch.y).all()):
            break
        loss = torch.nn.functional.cross_entropy(logits, batch.y)
        loss.backward()
        optimiser.step()
    model.eval()
    return model
