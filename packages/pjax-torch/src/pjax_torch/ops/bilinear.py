"""Dot product: the constraint set {(a, b, z): z = a·b}, a and b over the last axis.

Minimising ‖a − a0‖² + ‖b − b0‖² + w(a·b − z0)² gives a = a0 + t·b and b = b0 + t·a with
t = −w(a·b − z0). In the rotated coordinates x = (a + b)/√2, y = (a − b)/√2 (u, v for a0, b0)
the product is a·b = (‖x‖² − ‖y‖²)/2 and the solution is x = u/(1 − t), y = v/(1 + t), where t is
the root in (−1, 1) of

    g(t) = α / (2(1 − t)²) − β / (2(1 + t)²) − z0 + t/w,   α = ‖u‖², β = ‖v‖².

g is strictly increasing on (−1, 1) (g' = α/(1−t)³ + β/(1+t)³ + 1/w > 0), so the root is unique,
and it is the global minimiser: at |t| > 1 the Hessian has a negative direction. We find it by
Newton's method safeguarded by a bracket (a bisection step whenever Newton leaves it), in float64.

When α = 0 (a0 = −b0) and g stays negative up to t = 1, there is no root: the minimiser has
t = 1, y = v/2 and ‖x‖² = 2(z0 − 1/w) + β/4 (along u, or along the first axis when u = 0). The
mirror case β = 0 has t = −1. These faces are solved in closed form, so the iteration never
divides by 1 − t² = 0 and never returns NaN. The reference code runs 10 unguarded Newton steps
from t = 0, which leaves (−1, 1) or diverges for short vectors with far targets.
"""

from __future__ import annotations

import math

import torch

from kernelkit.validation import check_finite, check_floating
from pjax_torch.ops._common import Projection, check_weight

# Roots closer than this to ±1 are treated as the closed-form face t = ±1 (error O(FACE_GAP)).
FACE_GAP = 1e-9
MAX_ITERATIONS = 100
TOLERANCE = 1e-14


def forward(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1)


def _g(t, alpha, beta, target, inv_weight):
    return alpha / (2 * (1 - t) ** 2) - beta / (2 * (1 + t) ** 2) - target + t * inv_weight


def _g_prime(t, alpha, beta, inv_weight):
    return alpha / (1 - t) ** 3 + beta / (1 + t) ** 3 + inv_weight


def solve_multiplier(
    alpha: torch.Tensor, beta: torch.Tensor, target: torch.Tensor, inv_weight: torch.Tensor
) -> torch.Tensor:
    """The root of g in [−1 + FACE_GAP, 1 − FACE_GAP] by bracketed Newton (float64 tensors).

    Each entry stops at its own convergence (its root does not depend on which other entries
    share the call, so the batched sweep gives the per-node sweep's roots), and converged
    entries leave the working set, so a call costs what its slowest entries need, not that
    times the batch."""
    shape = alpha.shape
    alpha, beta, target, inv_weight = (x.reshape(-1) for x in (alpha, beta, target, inv_weight))
    result = torch.zeros_like(alpha)
    active = torch.arange(alpha.numel(), device=alpha.device)
    low = torch.full_like(alpha, -1 + FACE_GAP)
    high = torch.full_like(alpha, 1 - FACE_GAP)
    t = torch.zeros_like(alpha)
    for _ in range(MAX_ITERATIONS):
        value = _g(t, alpha, beta, target, inv_weight)
        low = torch.where(value < 0, t, low)
        high = torch.where(value > 0, t, high)
        newton = t - value / _g_prime(t, alpha, beta, inv_weight)
        # closed bracket: at a root Newton stays at t, which may equal an end of the bracket
        inside = (newton >= low) & (newton <= high)
        new_t = torch.where(inside, newton, (low + high) / 2)
        converged = (new_t - t).abs() <= TOLERANCE
        t = new_t
        done = int(converged.sum())
        if done == t.numel():
            break
        if done:
            result[active[converged]] = t[converged]
            keep = ~converged
            active, t, low, high = active[keep], t[keep], low[keep], high[keep]
            alpha, beta, target, inv_weight = (
                alpha[keep],
                beta[keep],
                target[keep],
                inv_weight[keep],
            )
    result[active] = t
    return result.reshape(shape)


# The projection in three stages, so that the batched sweep can run the scalar solve (the
# expensive, many-small-ops part) once for many nodes: ``_prepare`` reduces each node's vectors to
# per-entry scalars, ``_solve`` works on those scalars only (any flat batch of them), and
# ``_finish`` maps the solution back onto each node's vectors. ``_project`` composes the three.


def _prepare(a, b, output, weight=1.0):
    """Per-entry float64 scalars (α, β, z0, 1/w) and the rotated vectors (a, u, v)."""
    z = output.double()
    inv_weight = 1.0 / (
        weight.double() if isinstance(weight, torch.Tensor) else torch.full_like(z, weight)
    )
    u = (a + b) / math.sqrt(2)
    v = (a - b) / math.sqrt(2)
    alpha = (u * u).sum(-1, dtype=torch.float64)
    beta = (v * v).sum(-1, dtype=torch.float64)
    return (alpha, beta, z, inv_weight), (a, u, v)


def _solve(alpha, beta, z, inv_weight):
    """Per-entry (scale_x, scale_y, new output, free radius along x, free radius along y).

    The free radii are None unless some entry lies on a face with a free direction."""
    t = solve_multiplier(alpha, beta, z, inv_weight)
    # x = scale_x·u and y = scale_y·v; the new point is a = (x + y)/√2, b = (x − y)/√2
    scale_x, scale_y = 1 / (1 - t), 1 / (1 + t)
    upper_face = _g(torch.full_like(z, 1 - FACE_GAP), alpha, beta, z, inv_weight) <= 0
    lower_face = _g(torch.full_like(z, -1 + FACE_GAP), alpha, beta, z, inv_weight) >= 0
    free_radius_x = free_radius_y = None
    if bool(upper_face.any() | lower_face.any()):
        # faces t = ±1: the free radius comes from a·b = z0 ∓ 1/w
        radius_x = torch.sqrt(torch.clamp(2 * (z - inv_weight) + beta / 4, min=0.0))
        radius_y = torch.sqrt(torch.clamp(alpha / 4 - 2 * (z + inv_weight), min=0.0))
        norm_u, norm_v = alpha.sqrt(), beta.sqrt()
        scale_x = torch.where(upper_face, radius_x / norm_u.clamp_min(1e-300), scale_x)
        scale_y = torch.where(upper_face, 0.5, scale_y)
        scale_x = torch.where(lower_face, 0.5, scale_x)
        scale_y = torch.where(lower_face, radius_y / norm_v.clamp_min(1e-300), scale_y)
        t = torch.where(upper_face, 1.0, torch.where(lower_face, -1.0, t))
        # with u = 0 (or v = 0) the direction is free: take the first axis
        free_x = upper_face & (norm_u == 0)
        free_y = lower_face & (norm_v == 0)
        if bool(free_x.any() | free_y.any()):
            free_radius_x = torch.where(free_x, radius_x, 0.0)
            free_radius_y = torch.where(free_y, radius_y, 0.0)
    return scale_x, scale_y, z - t * inv_weight, free_radius_x, free_radius_y


def _finish(a, u, v, scale_x, scale_y, new_output, free_radius_x, free_radius_y) -> Projection:
    x = scale_x.to(a.dtype).unsqueeze(-1) * u
    y = scale_y.to(a.dtype).unsqueeze(-1) * v
    if free_radius_x is not None:
        extra_x = torch.zeros_like(a)
        extra_x[..., 0] = free_radius_x.to(a.dtype)
        extra_y = torch.zeros_like(a)
        extra_y[..., 0] = free_radius_y.to(a.dtype)
        x, y = x + extra_x, y + extra_y
    new_a = (x + y) / math.sqrt(2)
    new_b = (x - y) / math.sqrt(2)
    new_output = new_output.to(a.dtype)
    residual = (
        ((new_a * new_b).sum(-1, dtype=torch.float64) - new_output.double()).abs().to(a.dtype)
    )
    return Projection((new_a, new_b, new_output), residual)


def _project(
    a: torch.Tensor, b: torch.Tensor, output: torch.Tensor, weight: float | torch.Tensor = 1.0
) -> Projection:
    scalars, vectors = _prepare(a, b, output, weight)
    return _finish(*vectors, *_solve(*scalars))


def project(
    a: torch.Tensor, b: torch.Tensor, output: torch.Tensor, weight: float | torch.Tensor = 1.0
) -> Projection:
    """Nearest point of {z = a·b} to ``(a, b, output)``; a, b are ``output.shape + (n,)``."""
    check_floating("a", a)
    check_floating("b", b)
    check_floating("output", output)
    for name, value in (("a", a), ("b", b), ("output", output)):
        check_finite(name, value)
    if a.shape != b.shape:
        raise ValueError(
            f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.ndim < 1 or a.shape[:-1] != output.shape or a.shape[-1] < 1:
        raise ValueError(
            f"a and b must have shape output.shape + (n,) with n >= 1, got {tuple(a.shape)} for "
            f"output shape {tuple(output.shape)}"
        )
    if not (a.dtype == b.dtype == output.dtype):
        raise TypeError(
            f"a, b and output must share a dtype, got {a.dtype}, {b.dtype}, {output.dtype}"
        )
    return _project(a, b, output, check_weight(weight, output))
