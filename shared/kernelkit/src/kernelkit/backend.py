"""Choosing between a plain-torch path and a Triton kernel.

Every kernel in kernelkit takes ``impl``: ``"reference"`` (the readable spec), ``"torch"`` (the
vectorised CPU/GPU path), ``"triton"`` (the Triton kernel) or ``"auto"``. ``"auto"`` picks Triton
for CUDA tensors when Triton imports, and the torch path otherwise. On the CPU the Triton kernels
run only in Triton's interpreter (``TRITON_INTERPRET=1`` set before the kernel module is
imported), which is how the tests check them without a GPU.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

IMPLS = ("auto", "reference", "torch", "triton")

__all__ = ["IMPLS", "resolve_impl", "triton_available", "triton_interpreting"]


@functools.cache
def triton_available() -> bool:
    """True when the ``triton`` package can be imported."""
    return importlib.util.find_spec("triton") is not None


def triton_interpreting() -> bool:
    """True when Triton kernels run in the CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def resolve_impl(impl: str, device: torch.device) -> str:
    """Turn ``impl`` into one of ``"reference"``, ``"torch"``, ``"triton"`` for ``device``.

    Raises ``ValueError`` for an unknown name and ``RuntimeError`` when Triton is asked for but
    cannot run on ``device``.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        return "triton" if device.type == "cuda" and triton_available() else "torch"
    if impl == "triton":
        if not triton_available():
            raise RuntimeError(
                "impl='triton' needs the triton package: pip install 'kernelkit[triton]'"
            )
        if device.type != "cuda" and not triton_interpreting():
            raise RuntimeError(
                f"impl='triton' needs CUDA tensors (got device {device}) or TRITON_INTERPRET=1 "
                "set before kernelkit's Triton kernels are imported"
            )
    return impl
