"""Sum over the last axis: the constraint set {(a, z): z = Σ_j a_j}.

Minimising ‖a − a0‖² + w(z − z0)² over the hyperplane moves every entry by the same amount:
a = a0 + c, z = Σa, with c = w(z0 − Σa0) / (1 + w·n).
"""

from __future__ import annotations

import torch

from pjax_torch.ops._common import Projection, check_reduced, check_reducible, check_weight


def forward(a: torch.Tensor) -> torch.Tensor:
    check_reducible("a", a)
    return a.sum(-1)


# The projection in three stages, so that the batched sweep can solve many nodes' rows at once
# (they may differ in length): ``_prepare`` reduces each row to per-entry scalars (sum, output,
# weight, length), ``_solve`` works on those scalars only, ``_finish`` shifts each row.


def _prepare(a, output, weight=1.0):
    weight = weight if isinstance(weight, torch.Tensor) else torch.full_like(output, weight)
    return (a.sum(-1), output, weight, torch.full_like(output, a.shape[-1])), (a,)


def _solve(total, output, weight, n):
    shift = weight * (output - total) / (1.0 + weight * n)
    # stationarity gives w(z − z0) = −c, which keeps the output exact for any weight
    return shift, output - shift / weight


def _finish(a, shift, new_output) -> Projection:
    new_a = a + shift.unsqueeze(-1)
    return Projection((new_a, new_output), (new_a.sum(-1) - new_output).abs())


def _project(
    a: torch.Tensor, output: torch.Tensor, weight: float | torch.Tensor = 1.0
) -> Projection:
    scalars, vectors = _prepare(a, output, weight)
    return _finish(*vectors, *_solve(*scalars))


def project(
    a: torch.Tensor, output: torch.Tensor, weight: float | torch.Tensor = 1.0
) -> Projection:
    """Nearest point of {z = Σ a} to ``(a, output)``; ``a`` is ``output.shape + (n,)``."""
    check_reduced("a", a, output)
    return _project(a, output, check_weight(weight, output))
