"""Shared pieces of the projection operators: the result type and argument checks.

NaN policy: every operator's ``project`` raises ``ValueError`` on NaN or infinite inputs. A
projection of a non-finite point has no meaning (the nearest point of a set to NaN), and letting
it through turned NaN into NaN points or, where a branch compared it, silently into a finite one.
The ``forward`` functions are plain arithmetic: NaN propagates, as in ``torch.amax`` or
``torch.sum``; they refuse non-floating and 0-d input.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from kernelkit.validation import check_finite, check_floating, check_same_shape


class Projection(NamedTuple):
    """The nearest point on a constraint set and how well it satisfies the constraint.

    ``point`` holds the projected inputs followed by the projected output for the graph of an
    operation, or the projected values alone for an output constraint. ``residual`` is the
    constraint violation of ``point`` element by element (shaped like the output): it is
    rounding-level for closed forms and the accuracy of the root for iterative solves.
    """

    point: tuple[torch.Tensor, ...]
    residual: torch.Tensor


def check_weight(weight: float | torch.Tensor, like: torch.Tensor) -> float | torch.Tensor:
    """The consensus weight on the output term: a positive number or a tensor shaped like it."""
    if isinstance(weight, torch.Tensor):
        check_floating("weight", weight)
        if weight.shape != like.shape:
            raise ValueError(
                f"weight must be a number or have the output's shape {tuple(like.shape)}, "
                f"got shape {tuple(weight.shape)}"
            )
        if weight.numel() and not bool(((weight > 0) & (weight < torch.inf)).all()):
            raise ValueError(
                f"weight must be positive and finite everywhere, got minimum "
                f"{weight.min().item()} and maximum {weight.max().item()}"
            )
        return weight
    if (
        isinstance(weight, bool)
        or not isinstance(weight, int | float)
        or not 0 < weight < float("inf")
    ):
        raise ValueError(f"weight must be a positive finite number or tensor, got {weight!r}")
    return float(weight)


def check_reducible(name: str, value: torch.Tensor) -> None:
    """A floating tensor with a last axis to reduce over (the ``forward`` functions' check)."""
    check_floating(name, value)
    if value.ndim < 1:
        raise ValueError(f"{name} must have a last axis to reduce over, got a 0-d tensor")


def check_reduced(name: str, value: torch.Tensor, output: torch.Tensor) -> None:
    """``value`` reduces over its last axis to ``output``'s shape (same dtype)."""
    check_floating(name, value)
    check_floating("output", output)
    if value.ndim < 1 or value.shape[:-1] != output.shape:
        raise ValueError(
            f"{name} must have shape output.shape + (n,) = {tuple(output.shape)} + (n,), "
            f"got {tuple(value.shape)}"
        )
    if value.shape[-1] < 1:
        raise ValueError(
            f"{name} must have at least one entry on its last axis, got {tuple(value.shape)}"
        )
    if value.dtype != output.dtype:
        raise TypeError(
            f"{name} and output must share a dtype, got {value.dtype} and {output.dtype}"
        )
    check_finite(name, value)
    check_finite("output", output)


def check_elementwise(name: str, value: torch.Tensor, output: torch.Tensor) -> None:
    check_floating(name, value)
    check_floating("output", output)
    check_same_shape(name, value, "output", output)
    if value.dtype != output.dtype:
        raise TypeError(
            f"{name} and output must share a dtype, got {value.dtype} and {output.dtype}"
        )
    check_finite(name, value)
    check_finite("output", output)
