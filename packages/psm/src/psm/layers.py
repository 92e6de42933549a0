"""Small transformer building blocks shared by the Transformer-PSM and the baselines.

The PSM's claim that training and streaming produce identical states needs aggregators whose
per-row result does not depend on the batch size. On the CPU ``torch.nn.Linear`` does not have
that property: for inputs with fewer than a handful of rows BLAS takes a different kernel and
rounds differently. :class:`InvariantLinear` computes every row as its own ``1 x d`` product
(a batched matmul over an expanded weight), which is slower but gives the same bits for any
batch on the CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kernelkit.validation import check_index_range, check_ndim, check_tensor

__all__ = ["InvariantLinear", "KVCache", "TransformerBlock", "batch_invariant_linear"]


def check_token_ids(input_ids: object, vocab_size: int, name: str = "input_ids") -> torch.Tensor:
    """A non-empty ``(B, T)`` integer tensor of ids in ``[0, vocab_size)`` (the embedding would
    raise a bare ``IndexError`` on others, or wrap a negative id)."""
    check_ndim(name, check_tensor(name, input_ids), 2)
    if input_ids.numel() == 0:
        raise ValueError(f"{name} must hold at least one token, got shape {tuple(input_ids.shape)}")
    return check_index_range(name, input_ids, vocab_size)


def batch_invariant_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``x @ weight.T + bias`` with each row computed independently of the others."""
    rows = x.reshape(-1, 1, x.shape[-1])
    # An explicit bmm over an expanded weight: torch.matmul would fold the rows back into one
    # matrix product (depending on requires_grad), which is exactly what must not happen.
    weights = weight.T.unsqueeze(0).expand(rows.shape[0], -1, -1)
    out = torch.bmm(rows, weights).reshape(*x.shape[:-1], weight.shape[0])
    return out if bias is None else out + bias


class InvariantLinear(nn.Linear):
    """``nn.Linear`` that can switch to :func:`batch_invariant_linear` (``invariant=True``)."""

    def __init__(self, in_features: int, out_features: int, *, invariant: bool, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self.invariant = invariant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.invariant:
            return batch_invariant_linear(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


class KVCache:
    """Keys and values of the positions seen so far, ``(B, heads, t, head_dim)`` per block."""

    def __init__(self) -> None:
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}

    def extend(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if layer in self.keys:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    @property
    def length(self) -> int:
        return next(iter(self.keys.values())).shape[2] if self.keys else 0

    def nbytes(self) -> int:
        tensors = [*self.keys.values(), *self.values.values()]
        return sum(t.numel() * t.element_size() for t in tensors)


class TransformerBlock(nn.Module):
    """Pre-LayerNorm transformer block: multi-head self-attention then a GELU MLP.

    ``forward(x, causal)``: ``causal=True`` masks future positions. With ``cache`` and
    ``layer`` the block appends this call's keys and values and attends over all cached ones
    (incremental decoding; the new positions are the last ones).
    """

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int = 4, *, invariant: bool = False):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.norm_attn = nn.LayerNorm(d_model)
        self.qkv = InvariantLinear(d_model, 3 * d_model, invariant=invariant)
        self.proj = InvariantLinear(d_model, d_model, invariant=invariant)
        self.norm_mlp = nn.LayerNorm(d_model)
        self.up = InvariantLinear(d_model, mlp_ratio * d_model, invariant=invariant)
        self.down = InvariantLinear(mlp_ratio * d_model, d_model, invariant=invariant)

    def forward(
        self,
        x: torch.Tensor,
        *,
        causal: bool,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        batch, length, width = x.shape
        heads, head_dim = self.n_heads, width // self.n_heads
        q, k, v = self.qkv(self.norm_attn(x)).split(width, dim=-1)
        q, k, v = (t.reshape(batch, length, heads, head_dim).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            k, v = cache.extend(layer, k, v)
        mask = None
        if causal and k.shape[2] > 1:
            # Query i (of the last `length` positions) may see keys 0 .. offset + i.
            offset = k.shape[2] - length
            rows = torch.arange(length, device=x.device).unsqueeze(1) + offset
            mask = torch.arange(k.shape[2], device=x.device).unsqueeze(0) <= rows
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(head_dim)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        attended = scores.softmax(dim=-1) @ v
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.down(F.gelu(self.up(self.norm_mlp(x))))
