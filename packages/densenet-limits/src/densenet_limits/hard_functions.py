"""The witness family: a 1-Lipschitz function that dense networks cannot approximate.

Under the normalised ℓ1 metric ``(1/d0)‖x − y‖₁`` the witness ``f*(x) = (1/d0) Σ_i |x_i − ½|``
is 1-Lipschitz. Up to ``ε``, a compressed dense network sees ``x`` only through a bounded number
of block averages of input coordinates; ``x = ½·1`` and ``x'`` = alternating 0/1 inside each block
have identical block averages but ``f*(x) = 0`` and ``f*(x') = ½``, so such a network errs by at
least ``¼ − O(ε)`` on one of them (our construction; it fits the paper's theorem).

The matched data distribution: ``x_i = ½ + s_i · t · (½ + u_i)`` with ``s_i = ±1``,
``t ~ U[0, ⅓]``, ``u_i ~ U[0, 1]``; the target is ``f*(x) = t · (½ + mean_i u_i)``. The research
notes draw ``t ~ U[0, ½]``, which puts up to a quarter of the mass outside the cube ``[0, 1]``;
``⅓`` is the largest range that keeps every sample inside it.
A B-dense one-hidden-layer network reads ``t`` only with gain about ``B² / √d0``.
"""

from __future__ import annotations

import torch

from kernelkit.validation import check_finite, check_floating, check_int_in_range

__all__ = [
    "block_average_pairs",
    "block_averages_of_inputs",
    "equal_block_average_pairs",
    "sample_hard_family",
    "witness",
]


def witness(x: torch.Tensor) -> torch.Tensor:
    """``f*(x) = mean_i |x_i − ½|`` over the last dimension."""
    check_floating("x", x)
    check_finite("x", x)
    if x.ndim < 1 or x.shape[-1] == 0:
        raise ValueError(f"x must have a non-empty last dimension, got shape {tuple(x.shape)}")
    return (x - 0.5).abs().mean(-1)


def sample_hard_family(
    count: int, dim: int, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` samples ``(x, f*(x))`` of the matched distribution in ``[0, 1]^dim`` (float32)."""
    check_int_in_range("count", count, 1)
    check_int_in_range("dim", dim, 1)
    signs = torch.randint(0, 2, (count, dim), generator=generator).float() * 2 - 1
    scale = torch.rand(count, 1, generator=generator) / 3
    spread = torch.rand(count, dim, generator=generator)
    x = 0.5 + signs * scale * (0.5 + spread)
    return x, witness(x)


def block_averages_of_inputs(x: torch.Tensor, blocks: int) -> torch.Tensor:
    """Averages of ``x`` over ``blocks`` contiguous, equal blocks of the last dimension.

    NaN propagates into its block's average, as in ``torch.mean``."""
    check_floating("x", x)
    check_int_in_range("blocks", blocks, 1)
    if x.ndim < 1 or x.shape[-1] == 0 or x.shape[-1] % blocks:
        raise ValueError(
            f"x's last dimension must be a positive multiple of blocks={blocks}, got shape "
            f"{tuple(x.shape)}"
        )
    return x.reshape(*x.shape[:-1], blocks, x.shape[-1] // blocks).mean(-1)


def equal_block_average_pairs(dim: int, blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, x')`` with equal block averages and ``f*(x') − f*(x) = ½``.

    ``x = ½·1`` and ``x'`` alternates 0, 1 inside each block; the blocks need an even size.
    Returns two ``(dim,)`` float32 tensors.
    """
    check_int_in_range("dim", dim, 2)
    check_int_in_range("blocks", blocks, 1, dim)
    if dim % blocks or (dim // blocks) % 2:
        raise ValueError(
            f"dim must split into blocks of even size, got dim={dim} and blocks={blocks}"
        )
    centre = torch.full((dim,), 0.5)
    alternating = (torch.arange(dim) % 2).float()
    return centre, alternating


def block_average_pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, x')`` with equal averages on every block of the input partition ``labels``.

    ``labels`` (``(d0,)`` integers, e.g. ``CompressionResult.input_labels``) assigns each input
    coordinate to a block. ``x = ½·1``; ``x'`` alternates 0, 1 over each block's coordinates in
    index order, and the last coordinate of an odd-sized block stays at ½. So a network that
    reads only these block averages gives ``x`` and ``x'`` the same output, while
    ``f*(x') − f*(x) = (number of coordinates set to 0 or 1) / (2 d0)``, which is ½ when every
    block has even size and at least ``(d0 − blocks) / (2 d0)`` otherwise.
    """
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.numel() == 0:
        raise ValueError(f"labels must be a non-empty 1-D integer tensor, got {labels!r}")
    if labels.dtype not in (torch.int32, torch.int64) or int(labels.min()) < 0:
        raise ValueError(
            f"labels must hold non-negative integers, got dtype {labels.dtype}, "
            f"minimum {labels.min().item()}"
        )
    labels = labels.to(torch.int64)
    # Position of each coordinate within its block, in index order.
    same_block = labels[:, None] == labels[None, :]
    position = (same_block & torch.ones_like(same_block).tril(-1)).sum(1)
    block_size = same_block.sum(1)
    paired = position < block_size - block_size % 2
    centre = torch.full((labels.shape[0],), 0.5)
    alternating = torch.where(paired, (position % 2).float(), centre)
    return centre, alternating
