"""Maximum over the last axis (pooling): the constraint set {(a, z): z = max_j a_j}.

At the nearest point some top-k entries of a0 (in sorted order) and the output share one value
m_k = (Σ_{i≤k} a0_(i) + w·z0)/(k + w), and the other entries stay where they are; candidate k is
feasible when m_k ≥ a0_(k+1). The answer is the feasible candidate at the least distance
Σ_{i≤k}(a0_(i) − m_k)² + w(m_k − z0)².

The distances come from cumulative sums of the sorted entries and their squares, so memory is
O(n) per vector rather than the O(n²) candidate matrix the reference code builds.
"""

from __future__ import annotations

import torch

from pjax_torch.ops._common import Projection, check_reduced, check_reducible, check_weight


def forward(a: torch.Tensor) -> torch.Tensor:
    check_reducible("a", a)
    return a.amax(-1)


def _project(
    a: torch.Tensor, output: torch.Tensor, weight: float | torch.Tensor = 1.0
) -> Projection:
    n = a.shape[-1]
    descending, order = torch.sort(a, dim=-1, descending=True)
    counts = torch.arange(1, n + 1, device=a.device, dtype=a.dtype)
    weight_ = weight.unsqueeze(-1) if isinstance(weight, torch.Tensor) else weight
    out_ = output.unsqueeze(-1)
    # centre on the output so the cumulative-square formula does not cancel badly
    centred = descending - out_
    top_sum = centred.cumsum(-1)
    top_sq = (centred**2).cumsum(-1)
    level = top_sum / (counts + weight_)  # m_k − z0
    distance = top_sq - 2 * level * top_sum + counts * level**2 + weight_ * level**2
    next_entry = torch.cat([centred[..., 1:], torch.full_like(centred[..., :1], -torch.inf)], -1)
    feasible = level >= next_entry
    distance = torch.where(feasible, distance, torch.full_like(distance, torch.inf))
    k = distance.argmin(-1, keepdim=True)
    best_level = level.gather(-1, k) + out_
    ranks = torch.arange(n, device=a.device).expand_as(a)
    new_sorted = torch.where(ranks <= k, best_level, descending)
    new_a = torch.empty_like(a).scatter_(-1, order, new_sorted)
    new_output = best_level.squeeze(-1)
    return Projection((new_a, new_output), (forward(new_a) - new_output).abs())


def project(
    a: torch.Tensor, output: torch.Tensor, weight: float | torch.Tensor = 1.0
) -> Projection:
    """Nearest point of {z = max a} to ``(a, output)``; ``a`` is ``output.shape + (n,)``."""
    check_reduced("a", a, output)
    return _project(a, output, check_weight(weight, output))
