"""The LieAugmenter: a learnable Lie-algebra basis and the augmentations it generates.

A basis ``{L_1..L_k}`` of ``d x d`` matrices spans a Lie algebra; a group element is
``g = exp(sum_i c_i L_i)`` with coefficients ``c`` drawn from a fixed distribution, and an
augmented view of ``x`` is ``g . x`` under a :class:`~semola.actions.GroupAction`.

Scale convention: the "trace norm" of a generator is ``||L||_T = sqrt(tr(L^T L) / d)``, so
so(2)'s ``J = [[0, -1], [1, 0]]`` has norm 1 and ``exp(c J)`` is a rotation by ``c`` radians.
With ``normalize=True`` (the default) every generator is rescaled to trace norm ``init_norm`` at
every use, so the basis can only turn, not shrink: this removes the collapse ``L -> 0`` (for which
``g = I`` and the equivariance loss is trivially zero) by construction. With ``normalize=False``
the basis starts at that norm and is free afterwards; then the anti-collapse term of the loss is
what keeps it from shrinking (see :func:`semola.loss.augmentation_loss`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from kernelkit.validation import check_finite, check_floating, check_int_in_range, check_tensor
from semola.actions import GroupAction, VectorAction

__all__ = ["AugmentedViews", "LieAugmenter", "trace_norm"]

Distribution = Literal["uniform", "gaussian"]


def trace_norm(generators: torch.Tensor) -> torch.Tensor:
    """``sqrt(tr(L^T L) / d)`` of each ``d x d`` matrix in ``(..., d, d)``.

    Raises for anything but a floating, finite stack of square matrices (NaN is an error, not a
    value to propagate: a NaN generator has no norm to normalise by).
    """
    check_tensor("generators", generators)
    check_floating("generators", generators)
    if generators.ndim < 2 or generators.shape[-1] != generators.shape[-2]:
        raise ValueError(
            f"generators must have shape (..., d, d) (square matrices), got {tuple(generators.shape)}"
        )
    check_finite("generators", generators)
    return _trace_norm(generators)


def _trace_norm(generators: torch.Tensor) -> torch.Tensor:
    # The unchecked form for the augmenter's own, already valid, generators (every step).
    dim = generators.shape[-1]
    return torch.sqrt((generators**2).sum(dim=(-2, -1)) / dim)


@dataclass(frozen=True)
class AugmentedViews:
    """K augmented copies of a batch of B samples.

    ``views``: ``(K, B, ...)``; ``group_elements``: ``(K, B, d, d)``; ``coefficients``: ``(K, B, k)``.
    """

    views: torch.Tensor
    group_elements: torch.Tensor
    coefficients: torch.Tensor

    @property
    def num_views(self) -> int:
        return self.views.shape[0]


class LieAugmenter(nn.Module):
    """Learnable Lie-algebra basis that samples group elements and augments data.

    Args:
        dim: size ``d`` of the matrices (2 for planar rotations, 3 for SO(3) or homogeneous 2-D).
        num_generators: ``k``, how many basis elements to learn.
        action: how ``g`` acts on the data; default :class:`VectorAction` of size ``dim``.
        distribution: ``"uniform"`` (``c ~ U[-s, s]``, the default) or ``"gaussian"``
            (``c ~ N(0, s^2)``, as LieGAN does).
        coefficient_scale: ``s`` above, one value or one per generator. With trace-normalised
            generators, ``s = pi`` covers every rotation angle.
        init_norm: trace norm of each generator at initialisation (and always, if normalize).
        normalize: keep every generator at trace norm ``init_norm`` (collapse-proof).
        learn_basis: whether the generators are trained (False: a fixed, e.g. ground-truth, basis).
        learn_scale: whether the coefficient scales are trained (Augerino-style learned ranges).
        mask: optional ``(k, d, d)`` or ``(d, d)`` 0/1 tensor; entries where it is 0 stay zero
            (known structure, e.g. no translation part).
        init: optional ``(k, d, d)`` initial basis (rescaled to ``init_norm`` if normalize).
        seed: seed for the random initial basis (standard normal entries).
    """

    def __init__(
        self,
        dim: int,
        num_generators: int = 1,
        *,
        action: GroupAction | None = None,
        distribution: Distribution = "uniform",
        coefficient_scale: float | list[float] = 1.0,
        init_norm: float = 1.0,
        normalize: bool = True,
        learn_basis: bool = True,
        learn_scale: bool = False,
        mask: torch.Tensor | None = None,
        init: torch.Tensor | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_int_in_range("dim", dim, 1)
        check_int_in_range("num_generators", num_generators, 1)
        if distribution not in ("uniform", "gaussian"):
            raise ValueError(f"distribution must be 'uniform' or 'gaussian', got {distribution!r}")
        if not (isinstance(init_norm, int | float) and math.isfinite(init_norm) and init_norm > 0):
            raise ValueError(f"init_norm must be a positive finite number, got {init_norm!r}")
        action = VectorAction(dim) if action is None else action
        if not isinstance(action, GroupAction):
            raise TypeError(f"action must be a GroupAction, got {type(action).__name__}")
        if action.dim != dim:
            raise ValueError(
                f"action acts with {action.dim}x{action.dim} matrices but dim={dim}; they must match"
            )
        self.dim, self.num_generators = dim, num_generators
        self.action, self.distribution = action, distribution
        self.init_norm, self.normalize = float(init_norm), normalize

        shape = (num_generators, dim, dim)
        if mask is None:
            mask = torch.ones(shape)
        else:
            check_tensor("mask", mask)
            if tuple(mask.shape) == (dim, dim):
                mask = mask.expand(shape)
            if tuple(mask.shape) != shape:
                raise ValueError(
                    f"mask must have shape {(dim, dim)} or {shape}, got {tuple(mask.shape)}"
                )
            if not bool(((mask == 0) | (mask == 1)).all()):
                raise ValueError("mask must contain only 0 and 1")
            if bool((mask.flatten(1).sum(-1) == 0).any()):
                raise ValueError(
                    "mask leaves a generator with no free entry; every generator needs one"
                )
        self.register_buffer("mask", mask.to(torch.float32).clone())

        if init is None:
            rng = torch.Generator().manual_seed(seed)
            init = torch.randn(shape, generator=rng)
        else:
            check_floating("init", init)
            check_finite("init", init)
            if tuple(init.shape) != shape:
                raise ValueError(
                    f"init (the generators) must have shape (num_generators, dim, dim) = {shape}, got {tuple(init.shape)}"
                )
        init = init.detach().to(torch.float32) * self.mask
        norms = _trace_norm(init)
        if bool((norms == 0).any()):
            raise ValueError(
                "init has an all-zero generator (after masking); generators must be non-zero"
            )
        init = init * (self.init_norm / norms)[:, None, None]
        self.generators = nn.Parameter(init, requires_grad=learn_basis)

        scales = torch.as_tensor(coefficient_scale, dtype=torch.float32).flatten()
        if scales.numel() == 1:
            scales = scales.expand(num_generators)
        if (
            scales.numel() != num_generators
            or not bool((scales > 0).all())
            or not bool(torch.isfinite(scales).all())
        ):
            raise ValueError(
                f"coefficient_scale must be one positive number or {num_generators} of them, got {coefficient_scale!r}"
            )
        # Scales are stored as logs so a learned range stays positive.
        self.log_scale = nn.Parameter(scales.log().clone(), requires_grad=learn_scale)

    def basis(self) -> torch.Tensor:
        """The generators in use, ``(k, d, d)``: masked and, if ``normalize``, at trace norm ``init_norm``."""
        generators = self.generators * self.mask
        if self.normalize:
            generators = (
                generators
                * (self.init_norm / _trace_norm(generators).clamp_min(1e-12))[:, None, None]
            )
        return generators

    def scales(self) -> torch.Tensor:
        """The coefficient scales ``s``, ``(k,)``."""
        return self.log_scale.exp()

    def sample_coefficients(
        self, num_samples: int, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``(num_samples, k)`` coefficients, reparameterised so gradients reach the scales."""
        check_int_in_range("num_samples", num_samples, 1)
        device = self.generators.device
        shape = (num_samples, self.num_generators)
        if self.distribution == "uniform":
            unit = torch.rand(shape, generator=generator, device=device) * 2 - 1
        else:
            unit = torch.randn(shape, generator=generator, device=device)
        return unit * self.scales()

    def exp(self, coefficients: torch.Tensor) -> torch.Tensor:
        """Group elements ``exp(sum_i c_i L_i)`` for coefficients ``(..., k)`` -> ``(..., d, d)``.

        NaN or ±inf coefficients raise ``ValueError`` (they have no group element).
        """
        check_floating("coefficients", coefficients)
        if coefficients.shape[-1:] != (self.num_generators,):
            raise ValueError(
                f"coefficients must end in the number of generators {self.num_generators}, got shape {tuple(coefficients.shape)}"
            )
        check_finite("coefficients", coefficients)
        return self._exp(coefficients)

    def _exp(self, coefficients: torch.Tensor) -> torch.Tensor:
        # Unchecked: forward's coefficients are sampled here, finite by construction.
        algebra = torch.einsum(
            "...k,kij->...ij", coefficients.to(self.generators.dtype), self.basis()
        )
        return torch.linalg.matrix_exp(algebra)

    def forward(
        self, x: torch.Tensor, num_views: int = 1, *, generator: torch.Generator | None = None
    ) -> AugmentedViews:
        """``num_views`` augmented copies of the batch ``x``: one fresh group element per copy."""
        check_int_in_range("num_views", num_views, 1)
        self.action.check_data("x", x)
        batch = x.shape[0]
        if batch == 0:
            raise ValueError(f"x must hold at least one sample, got shape {tuple(x.shape)}")
        coefficients = self.sample_coefficients(num_views * batch, generator=generator)
        elements = self._exp(coefficients)
        repeated = (
            x.unsqueeze(0).expand(num_views, *x.shape).reshape(num_views * batch, *x.shape[1:])
        )
        views = self.action(elements, repeated)
        return AugmentedViews(
            views=views.reshape(num_views, batch, *views.shape[1:]),
            group_elements=elements.reshape(num_views, batch, self.dim, self.dim),
            coefficients=coefficients.reshape(num_views, batch, self.num_generators),
        )
