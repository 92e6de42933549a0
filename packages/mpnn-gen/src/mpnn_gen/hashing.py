"""64-bit hashing shared by the graph conversion (feature rows to colours) and the 1-WL
refinement: SplitMix64's finaliser on int64 tensors, and signed views of 64-bit constants."""

from __future__ import annotations

import torch

__all__ = ["mix64", "signed64"]

_MASK64 = (1 << 64) - 1


def signed64(value: int) -> int:
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


_MUL1 = signed64(0xBF58476D1CE4E5B9)
_MUL2 = signed64(0x94D049BB133111EB)


def _shift_right_logical(x: torch.Tensor, bits: int) -> torch.Tensor:
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def mix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser on int64 tensors (wrapping arithmetic): a bijection of 64-bit
    words that spreads every input bit over the output."""
    x = x.to(torch.int64)
    x = (x ^ _shift_right_logical(x, 30)) * _MUL1
    x = (x ^ _shift_right_logical(x, 27)) * _MUL2
    return x ^ _shift_right_logical(x, 31)
