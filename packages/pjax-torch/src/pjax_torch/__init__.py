"""pjax-torch: feasibility-seeking neural-network training with exact projection operators.

Trace a model with :mod:`pjax_torch.api` or :mod:`pjax_torch.nn`, and let an optimiser from
:mod:`pjax_torch.optim` (Douglas–Rachford by default) find parameters satisfying every local
constraint "output = f(inputs)" by projections instead of gradients.
"""

from importlib.metadata import version

from pjax_torch import api, data, nn, ops
from pjax_torch.graph import (
    Constant,
    Graph,
    GraphColouringError,
    Node,
    Operation,
    Parameter,
    Transform,
)
from pjax_torch.ops import OperationSpec, Projection, UnknownOperationError, register_operation
from pjax_torch.optim import (
    AlternatingProjections,
    AlternatingReflections,
    CyclicDouglasRachford,
    CyclicProjections,
    DifferenceMap,
    DouglasRachford,
    Optimizer,
    make_optimizer,
)
from pjax_torch.train import TrainConfig, train

__version__ = version("pjax-torch")

__all__ = [
    "AlternatingProjections",
    "AlternatingReflections",
    "Constant",
    "CyclicDouglasRachford",
    "CyclicProjections",
    "DifferenceMap",
    "DouglasRachford",
    "Graph",
    "GraphColouringError",
    "Node",
    "Operation",
    "OperationSpec",
    "Optimizer",
    "Parameter",
    "Projection",
    "TrainConfig",
    "Transform",
    "UnknownOperationError",
    "__version__",
    "api",
    "data",
    "make_optimizer",
    "nn",
    "ops",
    "register_operation",
    "train",
]
