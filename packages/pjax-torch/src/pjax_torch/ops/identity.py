"""Identity: the constraint set {(a, z): z = a}, elementwise.

The weighted nearest point to (a0, z0), minimising ‖a − a0‖² + w‖z − z0‖², is the weighted
midpoint a = z = (a0 + w·z0) / (1 + w).
"""

from __future__ import annotations

import torch

from pjax_torch.ops._common import Projection, check_elementwise, check_weight


def forward(a: torch.Tensor) -> torch.Tensor:
    return a


def _project(
    a: torch.Tensor, output: torch.Tensor, weight: float | torch.Tensor = 1.0
) -> Projection:
    mid = (a + weight * output) / (1.0 + weight)
    return Projection((mid, mid), torch.zeros_like(mid))


def project(
    a: torch.Tensor, output: torch.Tensor, weight: float | torch.Tensor = 1.0
) -> Projection:
    """Nearest point of {z = a} to ``(a, output)``; ``weight`` scales the output's distance."""
    check_elementwise("a", a, output)
    return _project(a, output, check_weight(weight, output))
