"""Fused bias + sum + ReLU: the constraint set {(x, z): z = max(0, Σ_j x_j)}, x over the last axis.

The set is the union of two convex pieces, and the nearest point is the nearer of the two pieces'
projections (weighted distance ‖x − x0‖² + w(z − z0)², S0 = Σ x0, n entries):

* off piece {z = 0, Σx ≤ 0}: x = x0 − max(0, S0)/n, distance max(0, S0)²/n + w·z0².
* linear piece {z = Σx ≥ 0}: the sum projection x = x0 + c, c = w(z0 − S0)/(1 + w·n), when its
  output (S0 + w·n·z0)/(1 + w·n) is ≥ 0; otherwise the boundary point Σx = 0, z = 0.

The reference code picks between the pieces with a test on the *requested* output (``output ==
0``) where it must test the linear piece's clipped output; that returns a non-nearest point in
about a fifth of random cases. Here each piece's distance is computed from its own point.
"""

from __future__ import annotations

import torch

from pjax_torch.ops._common import Projection, check_reduced, check_reducible, check_weight


def forward(x: torch.Tensor) -> torch.Tensor:
    check_reducible("x", x)
    return torch.relu(x.sum(-1))


# The projection in three stages, so that the batched sweep can solve many nodes' rows at once
# (they may differ in length): ``_prepare`` reduces each row to per-entry scalars (sum, output,
# weight, length), ``_solve`` works on those scalars only, ``_finish`` shifts each row.


def _prepare(x, output, weight=1.0):
    weight = weight if isinstance(weight, torch.Tensor) else torch.full_like(output, weight)
    return (x.sum(-1), output, weight, torch.full_like(output, x.shape[-1])), (x,)


def _solve(total, output, weight, n):
    # off piece: project onto the half-space Σx ≤ 0, output 0
    off_shift = -torch.clamp(total, min=0.0) / n
    off_distance = n * off_shift**2 + weight * output**2
    # linear piece: the sum projection, clipped to the boundary Σx = 0 when it would go negative
    on_shift = weight * (output - total) / (1.0 + weight * n)
    on_output = total + n * on_shift
    on_feasible = on_output >= 0
    on_shift = torch.where(on_feasible, on_shift, -total / n)
    on_output = torch.where(on_feasible, on_output, torch.zeros_like(on_output))
    on_distance = n * on_shift**2 + weight * (on_output - output) ** 2
    use_off = off_distance < on_distance
    shift = torch.where(use_off, off_shift, on_shift)
    new_output = torch.where(use_off, torch.zeros_like(on_output), on_output)
    return shift, new_output


def _finish(x, shift, new_output) -> Projection:
    new_x = x + shift.unsqueeze(-1)
    return Projection((new_x, new_output), (forward(new_x) - new_output).abs())


def _project(
    x: torch.Tensor, output: torch.Tensor, weight: float | torch.Tensor = 1.0
) -> Projection:
    scalars, vectors = _prepare(x, output, weight)
    return _finish(*vectors, *_solve(*scalars))


def project(
    x: torch.Tensor, output: torch.Tensor, weight: float | torch.Tensor = 1.0
) -> Projection:
    """Nearest point of {z = relu(Σx)} to ``(x, output)``; ``x`` is ``output.shape + (n,)``."""
    check_reduced("x", x, output)
    return _project(x, output, check_weight(weight, output))
