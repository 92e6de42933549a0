"""Argument checks shared by kernelkit and the paper packages.

Each check raises with a message that names the argument, the value received and what was
expected, so a caller can see at once which input was wrong.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = [
    "check_finite",
    "check_floating",
    "check_index_range",
    "check_int_in_range",
    "check_model_path",
    "check_ndim",
    "check_real_in_range",
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


def check_index_range(name: str, value: object, high: int, low: int = 0) -> torch.Tensor:
    """Require an integer (not bool) tensor of ids with ``low <= id < high``.

    Torch would read ``-1`` as the last row and a float or bool tensor as something else again, so
    ids are checked before they index anything.
    """
    check_tensor(name, value)
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        raise TypeError(f"{name} must have an integer dtype, got {value.dtype}")
    if value.numel():
        outside = (value < low) | (value >= high)
        if bool(outside.any()):
            where = tuple(outside.nonzero()[0].tolist())
            raise ValueError(
                f"{name} must hold ids in [{low}, {high}); found {value[where].item()} "
                f"at index {where}"
            )
    return value


def check_real_in_range(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    allow_inf: bool = False,
) -> float:
    """Require a real number (not bool, not NaN) with ``low <= value <= high`` where given;
    ±inf only with ``allow_inf``. Returns it as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} ({value!r})")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if (low is not None and value < low) or (high is not None and value > high):
        lower = "-inf" if low is None else low
        upper = "inf" if high is None else high
        raise ValueError(f"{name} must lie in [{lower}, {upper}], got {value}")
    return value


def check_model_path(name: str, value: str | Path, *, allow_hub_id: bool = True) -> str:
    """Return ``value`` as a string if it is a local model directory or (when ``allow_hub_id``)
    a hub repository id; raise ``FileNotFoundError`` naming ``name`` if it is a missing path.

    transformers reports a local path that does not exist as a malformed repository id, which
    sends the user looking in the wrong place. A value is taken for a local path when it exists,
    starts with ``/``, ``.`` or ``~``, has more than one ``/``, or its first component is an
    existing directory (``models/tiny`` where ``models/`` exists); ``org/name`` and ``name``
    are left to the hub unless ``allow_hub_id`` is False.
    """
    if not isinstance(value, str | Path):
        raise TypeError(f"{name} must be a path or a hub id (str), got {type(value).__name__}")
    text = str(value)
    if not text:
        raise ValueError(f"{name} must be a model directory or a hub id, got an empty string")
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise NotADirectoryError(f"{name} {text!r} is a file; expected a model directory")
        return text
    first, _, rest = text.partition("/")
    looks_local = (
        isinstance(value, Path)
        or text.startswith(("/", ".", "~"))
        or "/" in rest
        or "\\" in text
        or (bool(rest) and Path(first).expanduser().is_dir())
    )
    if looks_local or not allow_hub_id:
        raise FileNotFoundError(f"{name} {text!r}: no such model directory")
    return text
