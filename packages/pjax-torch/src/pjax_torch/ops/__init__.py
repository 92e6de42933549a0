"""Projection operators: exact Euclidean projections onto the graphs of elementary operations.

Each module ``pjax_torch.ops.<name>`` has ``forward(...)`` and ``project(...) -> Projection``.
Graph operators project ``(inputs, output)`` jointly, with an optional positive ``weight`` on the
output's squared distance (the number of copies of the output in the product space; 1 in the
reference code). Output constraints (``margin``, ``cross_entropy``, ``target``) project the
values that feed them. All are batched over leading dimensions.

The :data:`REGISTRY` maps an operation name to its forward and projection for the tracing
engine; :func:`register_operation` adds one, :func:`get_operation` looks one up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pjax_torch.ops import (
    bilinear,
    cross_entropy,
    identity,
    margin,
    quantize,
    sum_relu,
    target,
)
from pjax_torch.ops import max as max_op
from pjax_torch.ops import sum as sum_op
from pjax_torch.ops._common import Projection

__all__ = [
    "REGISTRY",
    "OperationSpec",
    "Projection",
    "UnknownOperationError",
    "bilinear",
    "cross_entropy",
    "get_operation",
    "identity",
    "margin",
    "quantize",
    "register_operation",
    "sum_relu",
    "target",
]


class UnknownOperationError(KeyError, ValueError):
    """No projection is registered under the requested operation name (a ``KeyError`` for
    lookups, and a ``ValueError`` like every other bad argument)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class OperationSpec:
    """How the engine evaluates and projects one kind of node.

    ``forward(*inputs, **kwargs)`` computes the output. For a graph operation,
    ``project(*inputs, output, weight, **kwargs)`` returns the projected inputs and output; for an
    output constraint (``is_output_constraint``), ``project(values, **kwargs)`` returns the
    projected values. Both skip argument checks: the engine calls them in its inner loop.
    """

    name: str
    forward: Callable
    project: Callable
    num_inputs: int
    is_output_constraint: bool = False


def _output_forward(values, **_):
    return values


REGISTRY: dict[str, OperationSpec] = {
    "identity": OperationSpec("identity", identity.forward, identity._project, 1),
    "sum": OperationSpec("sum", sum_op.forward, sum_op._project, 1),
    "sum_relu": OperationSpec("sum_relu", sum_relu.forward, sum_relu._project, 1),
    "max": OperationSpec("max", max_op.forward, max_op._project, 1),
    "dot": OperationSpec("dot", bilinear.forward, bilinear._project, 2),
    "quantize": OperationSpec("quantize", quantize.forward, quantize._project, 1),
    "margin": OperationSpec("margin", _output_forward, margin._project, 1, True),
    "cross_entropy": OperationSpec(
        "cross_entropy", _output_forward, cross_entropy._project, 1, True
    ),
    "target": OperationSpec("target", _output_forward, target._project, 1, True),
}


def register_operation(spec: OperationSpec) -> None:
    """Make ``spec`` available to the tracing API under ``spec.name``."""
    if not isinstance(spec, OperationSpec):
        raise TypeError(f"spec must be an OperationSpec, got {type(spec).__name__}")
    if spec.name in REGISTRY:
        raise ValueError(f"an operation named {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec


def get_operation(name: str) -> OperationSpec:
    """The registered operation ``name``; :class:`UnknownOperationError` names it if absent."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownOperationError(
            f"name must be a registered operation; no projection is registered for operation "
            f"{name!r}; registered operations: "
            f"{sorted(REGISTRY)} (add one with pjax_torch.ops.register_operation)"
        ) from None
