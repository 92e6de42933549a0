"""Baselines the paper compares against, at the same scale as the Transformer-PSM.

- :class:`CausalTransformerLM`: a GPT-style decoder without positional encodings (NoPE, so it
  can be evaluated past its training length), with a KV cache for streaming.
- :class:`DiagonalLinearRNNLM`: stacked diagonal linear recurrences ``h_t = a_t * h_{t-1} +
  (1 - a_t) * u_t`` with input-dependent gates ``a_t`` in ``(0, 1)`` (the Mamba/GLA family
  with a real positive decay), evaluated with :func:`kernelkit.scan.linear_scan`.
"""

from __future__ import annotations

import torch
from torch import nn

from kernelkit.scan import linear_scan
from psm.layers import KVCache, TransformerBlock, check_token_ids

__all__ = ["CausalTransformerLM", "DiagonalLinearRNNLM"]


class CausalTransformerLM(nn.Module):
    """``ids (B, T) -> logits (B, T, V)``; ``step(ids (B,), cache)`` decodes one token."""

    def __init__(self, vocab_size: int, d_model: int = 64, n_heads: int = 4, n_layers: int = 2):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, n_heads) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(check_token_ids(input_ids, self.embedding.num_embeddings))
        for block in self.blocks:
            x = block(x, causal=True)
        return self.head(self.norm(x))

    def step(self, token_ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        x = self.embedding(token_ids).unsqueeze(1)
        for layer, block in enumerate(self.blocks):
            x = block(x, causal=True, cache=cache, layer=layer)
        return self.head(self.norm(x[:, 0]))


class DiagonalLinearRNNLayer(nn.Module):
    """One gated diagonal linear recurrence with a residual connection and an MLP."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.gate = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.norm_mlp = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.norm(x)
        decay = torch.sigmoid(self.gate(u))
        states = linear_scan(decay, (1 - decay) * self.value(u), dim=1)
        x = x + self.out(states)
        return x + self.mlp(self.norm_mlp(x))


class DiagonalLinearRNNLM(nn.Module):
    """``ids (B, T) -> logits (B, T, V)`` through stacked diagonal linear RNN layers."""

    def __init__(self, vocab_size: int, d_model: int = 64, n_layers: int = 2) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.layers = nn.ModuleList(DiagonalLinearRNNLayer(d_model) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(check_token_ids(input_ids, self.embedding.num_embeddings))
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x))
