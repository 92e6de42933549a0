"""Small run-time utilities: seeding, device choice and progress bars."""

from __future__ import annotations

import contextlib
import os
import random
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

import numpy as np
import torch

__all__ = ["pick_device", "progress", "progress_enabled", "seed_everything", "torch_threads"]

T = TypeVar("T")


def seed_everything(seed: int, *, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU generator seeded the same way.

    With ``deterministic=True`` torch is also asked to use deterministic algorithms, which makes
    some CUDA kernels slower or unavailable (they then raise instead of silently differing).
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} ({seed!r})")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
    return torch.Generator().manual_seed(seed)


def pick_device(preferred: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``preferred`` if given (and available), else CUDA, else CPU.

    Raises ``ValueError`` for a device string torch does not understand and ``RuntimeError``
    when the requested device type is not available on this machine.
    """
    if preferred is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(preferred)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"preferred must name a torch device such as 'cpu' or 'cuda:0', got {preferred!r}"
        ) from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"preferred device {preferred!r} asked for CUDA, but CUDA is not available"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"preferred device {preferred!r} does not exist; {torch.cuda.device_count()} CUDA device(s) present"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(
            f"preferred device {preferred!r} asked for MPS, but MPS is not available"
        )
    return device


def progress_enabled() -> bool:
    """Whether progress bars are shown: on an interactive terminal, unless ``KERNELKIT_PROGRESS``
    is ``0`` (off) or ``1`` (on). Pass ``disable_tqdm=not progress_enabled()`` to a transformers
    ``Trainer`` so its bar follows the same rule as :func:`progress`."""
    forced = os.environ.get("KERNELKIT_PROGRESS")
    return forced == "1" if forced in ("0", "1") else sys.stderr.isatty()


def progress(
    iterable: Iterable[T],
    *,
    desc: str | None = None,
    total: int | None = None,
    disable: bool | None = None,
    **tqdm_kwargs,
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar.

    By default the bar is shown only on an interactive terminal, so logs and CI output stay
    clean; ``KERNELKIT_PROGRESS=1`` forces it on and ``KERNELKIT_PROGRESS=0`` off.
    """
    from tqdm.auto import tqdm

    if disable is None:
        disable = not progress_enabled()
    return iter(tqdm(iterable, desc=desc, total=total, disable=disable, **tqdm_kwargs))


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with torch's intra-op thread pool set to ``count`` threads, then restore it.

    On a shared or oversubscribed CPU, many small multi-threaded ops can stall whenever one pool
    thread is descheduled (we measured a log-depth scan 13x slower with two threads than with one
    on a loaded two-core machine), so benchmarks and tight loops of small ops pin the count.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be an int >= 1, got {count!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
