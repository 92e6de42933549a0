"""Weight norms of a PyG model and the norm of the graph operator each layer really applies.

:func:`extract_layers` walks ``model.named_modules()`` in registration order (which must be the
order of the forward pass) and returns one :class:`WeightLayer` per weight matrix:

- ``GCNConv``: ``lin.weight``; operator ``gcn`` = D^-1/2 (A + I) D^-1/2 (``normalize=True``).
- ``GraphConv``: computes ``X W_root^T + P X W_rel^T`` with P = A (``aggr="add"``) or D^-1 A
  (``aggr="mean"``). We write it as ``[I, P] [X W_root^T; X W_rel^T]``, so the weight matrix is
  ``W_root`` stacked on ``W_rel`` and the operator is ``[I, P]`` with
  ``||[I, P]||_2 = sqrt(lambda_max(I + P P^T))``: a bound that holds, not a heuristic.
- ``SAGEConv``: the same with ``lin_r`` (root) and ``lin_l`` (aggregated neighbours).
- ``GINConv``: ``((1 + eps) I + A) X`` then the MLP; the MLP's first ``Linear`` carries the
  operator ``gin``, its later ``Linear`` layers act node-wise (operator ``identity``).
- A ``torch.nn.Linear`` outside any convolution: node-wise or readout, operator ``identity``.

Any other module that owns parameters raises :class:`UnsupportedLayerError`; a custom layer is
supported by :func:`register_layer` with a function returning ``(matrices, operator)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from kernelkit.validation import check_int_in_range
from mpnn_gen.graphs import GraphBatch

__all__ = [
    "OPERATORS",
    "UnsupportedLayerError",
    "WeightLayer",
    "extract_layers",
    "operator_norm",
    "register_layer",
]

OPERATORS = ("identity", "gcn", "sum", "mean", "sum_root", "mean_root", "gin")


class UnsupportedLayerError(TypeError):
    """A model contains a parameterised layer whose norms we cannot extract."""


@dataclass(frozen=True)
class WeightLayer:
    """One weight matrix of the model with the graph operator applied before it.

    ``gin_eps`` is GIN's epsilon (used only by the ``gin`` operator).
    """

    name: str
    weight: torch.Tensor
    operator: str
    gin_eps: float = 0.0

    @property
    def spectral(self) -> float:
        return float(torch.linalg.matrix_norm(self.weight.detach().double(), ord=2))

    @property
    def frobenius(self) -> float:
        return float(torch.linalg.matrix_norm(self.weight.detach().double(), ord="fro"))

    @property
    def width(self) -> int:
        return int(max(self.weight.shape))


Extractor = Callable[[torch.nn.Module], tuple[list[torch.Tensor], str]]
_REGISTRY: dict[type, Extractor] = {}


def register_layer(cls: type, extractor: Extractor) -> None:
    """Teach :func:`extract_layers` a custom layer type.

    ``extractor(module)`` returns ``(matrices, operator)``: the layer's weight matrices in the
    order they are applied (the first one follows the graph operator) and one of
    :data:`OPERATORS`. A registered layer's submodules are not visited again.
    """
    if not isinstance(cls, type):
        raise TypeError(f"cls must be a class, got {cls!r}")
    if not callable(extractor):
        raise TypeError(f"extractor must be callable, got {extractor!r}")
    _REGISTRY[cls] = extractor


def _builtin_extractors() -> dict[type, Callable]:
    from torch_geometric.nn import GCNConv, GINConv, GraphConv, SAGEConv

    def gcn(module):
        if not module.normalize:
            raise UnsupportedLayerError(
                "GCNConv(normalize=False) is not supported; register a subclass with "
                "mpnn_gen.register_layer"
            )
        return [module.lin.weight], "gcn"

    def graph_conv(module):
        if module.aggr not in ("add", "mean"):
            raise UnsupportedLayerError(f"GraphConv with aggr={module.aggr!r} is not supported")
        stacked = torch.cat([module.lin_root.weight, module.lin_rel.weight], dim=0)
        return [stacked], "sum_root" if module.aggr == "add" else "mean_root"

    def sage(module):
        if module.aggr != "mean" or module.lin_r is None or module.project:
            raise UnsupportedLayerError(
                "SAGEConv is supported with aggr='mean', root_weight=True, project=False; "
                f"got aggr={module.aggr!r}, root_weight={module.lin_r is not None}, "
                f"project={module.project}"
            )
        return [torch.cat([module.lin_r.weight, module.lin_l.weight], dim=0)], "mean_root"

    def gin(module):
        linears = [m for m in module.nn.modules() if isinstance(m, torch.nn.Linear)]
        others = [
            m
            for m in module.nn.modules()
            if not isinstance(m, torch.nn.Linear) and list(m.parameters(recurse=False))
        ]
        if not linears or others:
            raise UnsupportedLayerError(
                "GINConv's nn must hold only torch.nn.Linear layers with parameters, got "
                f"{[type(m).__name__ for m in others] or 'no Linear'}"
            )
        return [m.weight for m in linears], "gin"

    return {GCNConv: gcn, GraphConv: graph_conv, SAGEConv: sage, GINConv: gin}


def extract_layers(model: torch.nn.Module) -> list[WeightLayer]:
    """All weight matrices of ``model`` in forward order, each with its graph operator."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    extractors = {**_builtin_extractors(), **_REGISTRY}
    layers: list[WeightLayer] = []
    covered: list[str] = []
    for name, module in model.named_modules():
        if any(prefix == "" or name.startswith(prefix + ".") for prefix in covered):
            continue
        extractor = next((fn for cls, fn in extractors.items() if type(module) is cls), None)
        if extractor is not None:
            covered.append(name)
            matrices, operator = extractor(module)
            if operator not in OPERATORS:
                raise ValueError(
                    f"extractor for {type(module).__name__} returned operator {operator!r}; "
                    f"expected one of {OPERATORS}"
                )
            eps = float(getattr(module, "eps", 0.0)) if operator == "gin" else 0.0
            for i, matrix in enumerate(matrices):
                layers.append(
                    WeightLayer(f"{name}[{i}]", matrix, operator if i == 0 else "identity", eps)
                )
        elif isinstance(module, torch.nn.Linear):
            layers.append(WeightLayer(name, module.weight, "identity"))
        elif list(module.parameters(recurse=False)):
            raise UnsupportedLayerError(
                f"cannot extract norms from layer {name!r} of type {type(module).__name__}: "
                "register it with mpnn_gen.register_layer(cls, extractor), where extractor "
                "returns (weight matrices, operator name)"
            )
    if not layers:
        raise UnsupportedLayerError(f"model {type(model).__name__} has no weight matrices")
    return layers


def _propagate(operator: str, x: torch.Tensor, graph: GraphBatch, gin_eps: float):
    """``P x`` and ``P^T x`` pieces for the operator. ``x`` is ``(num_nodes, k)``."""
    source, target = graph.edge_index
    n = graph.num_nodes
    degree = torch.zeros(n, dtype=x.dtype).index_add_(
        0, target, torch.ones_like(target, dtype=x.dtype)
    )

    def adjacency(v):
        return torch.zeros_like(v).index_add_(0, target, v[source])

    if operator == "gcn":
        scale = (degree + 1).rsqrt().unsqueeze(1)
        return scale * (adjacency(scale * x) + scale * x)
    if operator in ("sum", "sum_root"):
        return adjacency(x)
    if operator in ("mean", "mean_root"):
        return adjacency(x) / degree.clamp(min=1).unsqueeze(1)
    if operator == "gin":
        return (1 + gin_eps) * x + adjacency(x)
    raise ValueError(f"unknown operator {operator!r}")


def _propagate_transpose(operator, x, graph, gin_eps):
    if operator in ("mean", "mean_root"):
        source, target = graph.edge_index
        degree = torch.zeros(graph.num_nodes, dtype=x.dtype).index_add_(
            0, target, torch.ones_like(target, dtype=x.dtype)
        )
        scaled = x / degree.clamp(min=1).unsqueeze(1)
        return torch.zeros_like(x).index_add_(0, source, scaled[target])
    return _propagate(operator, x, graph, gin_eps)  # the other operators are symmetric


def operator_norm(
    operator: str, graph: GraphBatch, *, gin_eps: float = 0.0, iterations: int = 100, seed: int = 0
) -> torch.Tensor:
    """``||P_G||_2`` for every graph of ``graph`` at once, by power iteration on ``P^T P``
    (``P P^T`` for the ``*_root`` operators ``[I, P]``) with per-graph normalisation."""
    if operator not in OPERATORS:
        raise ValueError(f"operator must be one of {OPERATORS}, got {operator!r}")
    check_int_in_range("iterations", iterations, 1)
    if not isinstance(graph, GraphBatch):
        raise TypeError(
            f"graph must be a GraphBatch (see as_graph_batch), got {type(graph).__name__}"
        )
    if operator == "identity":
        return torch.ones(graph.num_graphs, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    v = torch.rand(graph.num_nodes, 1, generator=generator, dtype=torch.float64) + 0.5
    rooted = operator.endswith("_root")

    def gram(x):
        if rooted:
            return x + _propagate(
                operator, _propagate_transpose(operator, x, graph, gin_eps), graph, gin_eps
            )
        return _propagate_transpose(
            operator, _propagate(operator, x, graph, gin_eps), graph, gin_eps
        )

    def per_graph_norm(x):
        squares = torch.zeros(graph.num_graphs, dtype=x.dtype).index_add_(
            0, graph.batch, x[:, 0] ** 2
        )
        return squares.sqrt()

    for _ in range(iterations):
        v = v / per_graph_norm(v).clamp(min=1e-300)[graph.batch].unsqueeze(1)
        v = gram(v)
    v = v / per_graph_norm(v).clamp(min=1e-300)[graph.batch].unsqueeze(1)
    rayleigh = torch.zeros(graph.num_graphs, dtype=v.dtype).index_add_(
        0, graph.batch, (v * gram(v))[:, 0]
    )
    return rayleigh.clamp(min=0).sqrt()
