"""How a group element g (a d x d matrix) acts on a batch of data.

A :class:`GroupAction` maps ``(g, x)`` with ``g`` of shape ``(B, d, d)`` and ``x`` a batch of ``B``
samples to the transformed batch ``g . x``. The augmenter samples ``g``; the action is prior
knowledge about *where* the group acts (feature vectors, pixel coordinates, ...). It is the one
thing a user must supply for new data; see :class:`CallableAction`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
import torch.nn.functional as F

from kernelkit.validation import check_finite, check_floating, check_ndim, check_tensor

__all__ = ["CallableAction", "GroupAction", "ImageAction", "VectorAction"]


class GroupAction(ABC):
    """A left action of d x d matrices on data: ``apply(g1, apply(g2, x)) == apply(g1 @ g2, x)``."""

    def __init__(self, dim: int) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self.dim = dim

    @abstractmethod
    def _apply(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...

    def check_data(self, name: str, x: torch.Tensor) -> None:
        """Raise if ``x`` cannot be acted on (wrong rank or trailing size)."""
        check_tensor(name, x)
        if x.ndim < 1:
            raise ValueError(f"{name} must have a batch dimension, got shape {tuple(x.shape)}")

    def __call__(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``g . x``; ``g`` must be a finite floating ``(batch, dim, dim)`` tensor (a NaN group
        element would spread into every view). Raises ``TypeError``/``ValueError`` naming ``g``
        or ``x``."""
        check_floating("g", g)
        self.check_data("x", x)
        expected = (x.shape[0], self.dim, self.dim)
        if tuple(g.shape) != expected:
            raise ValueError(
                f"g must have shape (batch, dim, dim) = {expected} for {type(self).__name__}"
                f" with dim={self.dim} on data of shape {tuple(x.shape)}, got {tuple(g.shape)}"
            )
        check_finite("g", g)
        if x.is_floating_point():
            g = g.to(x.dtype)
        return self._apply(g, x)


class VectorAction(GroupAction):
    """g acts linearly on the last axis: data ``(B, ..., d)``, e.g. points, velocities, features."""

    def check_data(self, name: str, x: torch.Tensor) -> None:
        """Floating, finite ``(batch, ..., dim)`` data: integer data would be rotated and then
        truncated, and NaN would spread into every view, so both raise."""
        super().check_data(name, x)
        if x.ndim < 2 or x.shape[-1] != self.dim:
            raise ValueError(
                f"{name} must have shape (batch, ..., {self.dim}) for VectorAction(dim={self.dim}),"
                f" got {tuple(x.shape)}"
            )
        check_floating(name, x)
        check_finite(name, x)

    def _apply(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1, self.dim)
        return torch.einsum("bij,bnj->bni", g.to(x.dtype), flat).reshape(x.shape)


class ImageAction(GroupAction):
    """g acts on pixel coordinates of images ``(B, C, H, W)``, warped with ``grid_sample``.

    Coordinates are torch's normalised ``[-1, 1]`` grid. ``dim=2`` is the linear part (rotation,
    scale, shear); ``dim=3`` is the affine group in homogeneous coordinates (its last row is
    ignored, so translations live in the last column). The image moves by ``g``: the value at
    ``p`` is read from ``g^{-1} p``, which makes this a left action up to interpolation error.
    Outside the image is zero.
    """

    def __init__(self, dim: int = 2, *, mode: str = "bilinear") -> None:
        if dim not in (2, 3):
            raise ValueError(
                f"dim must be 2 (linear) or 3 (affine, homogeneous) for ImageAction, got {dim!r}"
            )
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
        super().__init__(dim)
        self.mode = mode

    def check_data(self, name: str, x: torch.Tensor) -> None:
        """Finite float32/float64 images ``(B, C, H, W)`` with non-empty ``C, H, W`` (the warp
        inverts ``g`` with ``torch.linalg.inv``, which has no half-precision kernel)."""
        super().check_data(name, x)
        check_ndim(name, x, 4)
        check_floating(name, x, (torch.float32, torch.float64))
        if 0 in x.shape[1:]:
            raise ValueError(f"{name} must have non-empty (C, H, W), got shape {tuple(x.shape)}")
        check_finite(name, x)

    def _apply(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        inverse = torch.linalg.inv(g.to(x.dtype))
        if self.dim == 2:
            zeros = inverse.new_zeros(inverse.shape[0], 2, 1)
            theta = torch.cat([inverse, zeros], dim=-1)
        else:
            theta = inverse[:, :2, :]
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode=self.mode, padding_mode="zeros", align_corners=False)


class CallableAction(GroupAction):
    """A user-defined action ``fn(g, x)``; ``data_check(name, x)`` may validate the data first.

    Example, SE(2) on planar points in homogeneous coordinates::

        def act(g, x):  # x: (B, N, 2), g: (B, 3, 3)
            return x @ g[:, :2, :2].transpose(1, 2) + g[:, None, :2, 2]

        action = CallableAction(act, dim=3)
    """

    def __init__(
        self,
        fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        dim: int,
        *,
        data_check: Callable[[str, torch.Tensor], None] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        super().__init__(dim)
        self.fn = fn
        self.data_check = data_check

    def check_data(self, name: str, x: torch.Tensor) -> None:
        super().check_data(name, x)
        if self.data_check is not None:
            self.data_check(name, x)

    def _apply(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = self.fn(g, x)
        if not isinstance(out, torch.Tensor) or out.shape[0] != x.shape[0]:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"the action fn must return a tensor with batch size {x.shape[0]}, got {shape}"
            )
        return out
