"""Argument checks shared by kernelkit and the paper packages.

Each check raises with a message that names the argument, the value received and what was
expected, so a caller can see at once which input was wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "check_finite",
    "check_floating",
    "check_int_in_range",
    "check_ndim",
    "check_same_shape",
    "check_tensor",
]


def check_tensor(name: str, value: object) -> torch.Tensor:
    """Return ``value`` if it is a tensor; otherwise raise ``TypeError`` naming ``name``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_floating(
    name: str, value: torch.Tensor, dtypes: Sequence[torch.dtype] | None = None
) -> None:
    """Require a floating-point tensor, optionally one of ``dtypes``."""
    check_tensor(name, value)
    if not value.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {value.dtype}")
    if dtypes is not None and value.dtype not in dtypes:
        allowed = ", ".join(str(d) for d in dtypes)
        raise TypeError(f"{name} must have dtype in ({allowed}), got {value.dtype}")


def check_finite(name: str, value: torch.Tensor) -> None:
    """Require every element to be finite (no NaN, no ±inf)."""
    if value.numel() and not bool(torch.isfinite(value).all()):
        bad = (~torch.isfinite(value)).nonzero()[0].tolist()
        raise ValueError(
            f"{name} must be finite; found {value[tuple(bad)].item()} at index {tuple(bad)}"
        )


def check_ndim(name: str, value: torch.Tensor, ndim: int | Sequence[int]) -> None:
    """Require ``value.ndim`` to equal ``ndim`` (or be one of several)."""
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if value.ndim not in allowed:
        expected = " or ".join(str(n) for n in allowed)
        raise ValueError(f"{name} must have {expected} dimensions, got shape {tuple(value.shape)}")


def check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Require two tensors to have the same shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def check_int_in_range(name: str, value: object, low: int, high: int | None = None) -> int:
    """Require an integer with ``low <= value`` (and ``value <= high`` when given)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < low or (high is not None and value > high):
        upper = "" if high is None else f" and <= {high}"
        raise ValueError(f"{name} must be >= {low}{upper}, got {value}")
    return value
