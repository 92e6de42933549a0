"""Sum over the last axis: the constraint set {(a, z): z = Σ_j a_j}.

Minimising ‖a − a0‖² + w(z − z0)² over the hyperplane moves every entry by the same amount:
a = a0 + c, z = Σa, with c = w(z0 − Σa0) / (1 + w·n).
"""

from __future__ import annotations

import torch

from pjax_torch.ops._common import Projection, check_reduced, check_weight


def forward(a: torch.Tensor) -> torch.Tensor:
    return a.sum(-1)


def _project(
    a: torch.Tensor, output: torch.Tensor, weight: float | torch.Tensor = 1.0
) -> Projection:
    n = a.shape[-1]
    shift = weight * (output - a.sum(-1)) / (1.0 + weight * n)
    new_a = a + shift.unsqueeze(-1)
    # stationarity gives w(z − z0) = −c, which keeps the output exact for any weight
    new_output = output - shift / weight
    return Projection((new_a, new_output), (new_a.sum(-1) - new_output).abs())


def project(
    a: torch.Tensor, output: torch.Tensor, weight: float | torch.Tensor = 1.0
) -> Projection:
    """Nearest point of {z = Σ a} to ``(a, output)``; ``a`` is ``output.shape + (n,)``."""
    check_reduced("a", a, output)
    return _project(a, output, check_weight(weight, output))
