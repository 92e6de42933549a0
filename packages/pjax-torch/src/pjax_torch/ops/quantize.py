"""Quantisation (sign when ``levels=2``): the graph of the staircase on [−scale, scale].

Level j is q_j = −scale + j·step with step = 2·scale/(levels − 1); an input maps to the nearest
level, so level j owns the cell [q_j − step/2, q_j + step/2] (unbounded at both ends). The graph
is the union of the segments (cell_j, q_j); the projection clips a0 into each cell, pays
(a − a0)² + w(q_j − z0)², and keeps the cheapest. It is the projection onto the closure of the
graph: a point exactly on a cell boundary belongs to both neighbouring levels.
"""

from __future__ import annotations

import torch

from pjax_torch.ops._common import Projection, check_elementwise, check_weight


def _check_levels(levels: int, scale: float) -> None:
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an int >= 2, got {levels!r}")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
        raise ValueError(f"scale must be a positive number, got {scale!r}")


def forward(a: torch.Tensor, *, levels: int = 2, scale: float = 1.0) -> torch.Tensor:
    step = 2 * scale / (levels - 1)
    index = torch.clamp(torch.round((a + scale) / step), 0, levels - 1)
    return index * step - scale


def _cells(levels: int, scale: float, like: torch.Tensor):
    points = torch.linspace(-scale, scale, levels, dtype=like.dtype, device=like.device)
    half = scale / (levels - 1)
    low = torch.cat([points.new_full((1,), -torch.inf), points[1:] - half])
    high = torch.cat([points[:-1] + half, points.new_full((1,), torch.inf)])
    return points, low, high


def _project(
    a: torch.Tensor,
    output: torch.Tensor,
    weight: float | torch.Tensor = 1.0,
    *,
    levels: int = 2,
    scale: float = 1.0,
) -> Projection:
    points, low, high = _cells(levels, scale, a)
    clipped = torch.minimum(torch.maximum(a.unsqueeze(-1), low), high)
    weight_ = weight.unsqueeze(-1) if isinstance(weight, torch.Tensor) else weight
    distance = (clipped - a.unsqueeze(-1)) ** 2 + weight_ * (points - output.unsqueeze(-1)) ** 2
    best = distance.argmin(-1, keepdim=True)
    new_a = clipped.gather(-1, best).squeeze(-1)
    new_output = points[best.squeeze(-1)]
    outside = torch.clamp(low[best.squeeze(-1)] - new_a, min=0) + torch.clamp(
        new_a - high[best.squeeze(-1)], min=0
    )
    return Projection((new_a, new_output), outside)


def project(
    a: torch.Tensor,
    output: torch.Tensor,
    weight: float | torch.Tensor = 1.0,
    *,
    levels: int = 2,
    scale: float = 1.0,
) -> Projection:
    """Nearest point of the quantiser's graph to ``(a, output)``, elementwise."""
    check_elementwise("a", a, output)
    _check_levels(levels, scale)
    return _project(a, output, check_weight(weight, output), levels=levels, scale=scale)
