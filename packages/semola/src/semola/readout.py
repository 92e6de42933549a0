"""Reading out what was learned: subspace agreement, closure, and the no-symmetry signature.

A learned basis is only defined up to mixing (any invertible ``k x k`` recombination spans the
same algebra) and scale, so agreement with a reference is measured between *spans*: the cosines
of the principal angles between ``span{vec L_i}`` and ``span{vec R_j}`` in ``R^{d*d}``. For one
generator on each side this is ``|cos(L, R)|``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

from kernelkit.validation import check_finite, check_floating, check_int_in_range
from semola.actions import GroupAction
from semola.augmenter import LieAugmenter
from semola.model import check_model_input, forward_checked

__all__ = [
    "AlgebraComparison",
    "SymmetrySignature",
    "closure_error",
    "compare_algebras",
    "symmetry_signature",
]


def _as_basis(name: str, basis: torch.Tensor) -> torch.Tensor:
    check_floating(name, basis)
    if basis.ndim == 2:
        basis = basis.unsqueeze(0)
    if basis.ndim != 3 or basis.shape[-1] != basis.shape[-2] or 0 in basis.shape:
        raise ValueError(
            f"{name} must have shape (k, d, d) or (d, d) with k, d >= 1, got {tuple(basis.shape)}"
        )
    check_finite(name, basis)
    flat = basis.detach().to(torch.float64).reshape(basis.shape[0], -1)
    if bool((flat.norm(dim=-1) == 0).any()):
        raise ValueError(f"{name} contains an all-zero generator, which spans nothing")
    return basis.detach().to(torch.float64)


def _orthonormal_span(basis: torch.Tensor) -> torch.Tensor:
    """Columns: an orthonormal basis of span{vec L_i} (rank-revealing, so dependent sets are fine)."""
    flat = basis.reshape(basis.shape[0], -1)
    flat = flat / flat.norm(dim=-1, keepdim=True)
    u, s, _ = torch.linalg.svd(flat.T, full_matrices=False)
    rank = int((s > 1e-9 * s[0]).sum())
    return u[:, :rank]


@dataclass(frozen=True)
class AlgebraComparison:
    """Principal-angle cosines between two spans, largest first.

    ``score`` is the smallest cosine: 1 when every reference direction lies in the learned span
    (identical spans for equal dimensions), 0 when some direction is orthogonal to it.
    """

    cosines: tuple[float, ...]

    @property
    def score(self) -> float:
        return min(self.cosines)

    @property
    def angles_deg(self) -> tuple[float, ...]:
        return tuple(
            float(torch.rad2deg(torch.arccos(torch.tensor(min(c, 1.0))))) for c in self.cosines
        )


def compare_algebras(learned: torch.Tensor, reference: torch.Tensor) -> AlgebraComparison:
    """Agreement between ``span(learned)`` and ``span(reference)``, invariant to mixing and scale.

    Both are ``(k, d, d)`` (or one ``(d, d)`` generator) with the same ``d``. The number of
    cosines is the smaller of the two spans' dimensions.
    """
    learned_basis, reference_basis = (
        _as_basis("learned", learned),
        _as_basis("reference", reference),
    )
    if learned_basis.shape[-1] != reference_basis.shape[-1]:
        raise ValueError(
            f"learned and reference must hold matrices of the same size, got"
            f" {tuple(learned_basis.shape[-2:])} and {tuple(reference_basis.shape[-2:])}"
        )
    overlap = _orthonormal_span(learned_basis).T @ _orthonormal_span(reference_basis)
    cosines = torch.linalg.svdvals(overlap).clamp(max=1.0)
    return AlgebraComparison(tuple(float(c) for c in cosines))


def closure_error(basis: torch.Tensor) -> float:
    """Largest relative distance of a bracket ``[L_a, L_b]`` from ``span(basis)``.

    0 for a Lie algebra (closed under the bracket); brackets that vanish count as closed. Each
    generator is first scaled to unit Frobenius norm, so the value does not depend on scale.
    """
    matrices = _as_basis("basis", basis)
    matrices = matrices / matrices.reshape(matrices.shape[0], -1).norm(dim=-1)[:, None, None]
    span = _orthonormal_span(matrices)
    worst = 0.0
    for a, b in itertools.combinations(range(matrices.shape[0]), 2):
        bracket = (matrices[a] @ matrices[b] - matrices[b] @ matrices[a]).reshape(-1)
        size = bracket.norm()
        if size <= 1e-12:
            continue
        residual = bracket - span @ (span.T @ bracket)
        worst = max(worst, float(residual.norm() / size))
    return worst


@dataclass(frozen=True)
class SymmetrySignature:
    """How far a trained model is from respecting its learned augmentations.

    ``relative_equivariance_error`` = ``E||f(g x) - rho(g) f(x)||^2 / E||f(x) - E f(x)||^2``:
    near 0 when the data has the learned symmetry (the model could be made invariant at no cost
    to the task), of order 1 or more when it has none (the "absence" signature).
    ``mean_displacement`` = ``E ||g x - x|| / ||x||``: how far the augmentations move the data.
    """

    relative_equivariance_error: float
    mean_displacement: float


@torch.no_grad()
def symmetry_signature(
    model: nn.Module,
    augmenter: LieAugmenter,
    x: torch.Tensor,
    *,
    num_views: int = 8,
    output_action: GroupAction | None = None,
    generator: torch.Generator | None = None,
) -> SymmetrySignature:
    """Measure :class:`SymmetrySignature` of ``model`` under ``augmenter`` on the batch ``x``.

    ``x`` must be a finite, non-empty batch in the model's dtype (NaN raises ``ValueError``).
    """
    check_model_input("x", x, model)
    check_int_in_range("num_views", num_views, 1)
    augmented = augmenter(x, num_views, generator=generator)
    outputs = forward_checked(model, x)
    view_outputs = model(augmented.views.reshape(-1, *x.shape[1:])).reshape(
        num_views, *outputs.shape
    )
    expected = outputs.unsqueeze(0).expand_as(view_outputs)
    if output_action is not None:
        moved = output_action(
            augmented.group_elements.reshape(-1, augmenter.dim, augmenter.dim),
            expected.reshape(-1, *outputs.shape[1:]),
        )
        expected = moved.reshape(view_outputs.shape)
    error = ((view_outputs - expected) ** 2).reshape(num_views, x.shape[0], -1).sum(-1).mean()
    spread = ((outputs - outputs.mean(0, keepdim=True)) ** 2).reshape(x.shape[0], -1).sum(-1).mean()
    flat_x = x.reshape(1, x.shape[0], -1)
    displacement = (augmented.views.reshape(num_views, x.shape[0], -1) - flat_x).norm(dim=-1)
    displacement = (displacement / flat_x.norm(dim=-1).clamp_min(1e-12)).mean()
    return SymmetrySignature(float(error / spread.clamp_min(1e-12)), float(displacement))
