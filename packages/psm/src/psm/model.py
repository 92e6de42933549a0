"""The generic prefix-scannable model: one encoder, one aggregator, one inference module.

A PSM reads tokens in chunks of ``c``. Chunk ``i`` (tokens ``C_i``) is encoded to a state
``x_i = Enc(C_i)``; the states are combined by the aggregator along the fixed tree of
:mod:`psm.scan`; and the outputs for chunk ``i`` are ``Inf(P(i), C_i)``, where ``P(i)`` is the
exclusive prefix of ``x_0 .. x_{i-1}`` (so chunk ``i`` never sees itself or later chunks).

``PSM.forward`` evaluates the prefixes with the parallel tree (training); ``PSM.forward_streaming``
and ``PSM.stream()`` use the binary-counter scanner (inference), and produce the same states.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from kernelkit.validation import check_int_in_range, check_tensor
from psm.scan import Aggregator, OnlineScanner, ScanCounts, exclusive_prefix

__all__ = ["PSM", "PSMStream"]

Encoder = Callable[[torch.Tensor], torch.Tensor]
Inference = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PARTIAL_CHUNK_POLICIES = ("error", "infer")


class PSM(nn.Module):
    """A prefix-scannable model built from user modules.

    Args:
        encoder: ``(N, c, *token) -> (N, *S)``, one state per complete chunk.
        aggregator: ``agg(older, newer)``, ``(N, *S) x (N, *S) -> (N, *S)``; need not be
            associative or commutative, and the identity need not be neutral for it.
        inference: ``inf(state, chunk)``, ``(N, *S) x (N, r, *token) -> (N, r, *out)`` for any
            ``1 <= r <= c``; must be causal within the chunk for token streaming to agree.
        identity: ``S``, the state before the first chunk (an ``nn.Parameter`` is trained).
        chunk_size: ``c >= 1``.
        partial_chunk: what to do when the sequence length is not a multiple of ``c``:
            ``"error"`` raises; ``"infer"`` runs the trailing partial chunk through the inference
            module only (it is never encoded or aggregated, exactly as in streaming).

    Tokens are ``(B, T, *token)``: ids ``(B, T)`` or vectors ``(B, T, d)``.
    """

    def __init__(
        self,
        encoder: Encoder,
        aggregator: Aggregator,
        inference: Inference,
        identity: torch.Tensor,
        chunk_size: int,
        partial_chunk: Literal["error", "infer"] = "error",
    ) -> None:
        super().__init__()
        for name, fn in (
            ("encoder", encoder),
            ("aggregator", aggregator),
            ("inference", inference),
        ):
            if not callable(fn):
                raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
        check_tensor("identity", identity)
        self.chunk_size = check_int_in_range("chunk_size", chunk_size, 1)
        if partial_chunk not in PARTIAL_CHUNK_POLICIES:
            raise ValueError(
                f"partial_chunk must be one of {PARTIAL_CHUNK_POLICIES}, got {partial_chunk!r}"
            )
        self.partial_chunk = partial_chunk
        self.encoder, self.aggregator, self.inference = encoder, aggregator, inference
        if isinstance(identity, nn.Parameter):
            self.identity = identity
        else:
            self.register_buffer("identity", identity)

    def _split(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(B, m, c, *token)`` complete chunks and the ``(B, r, *token)`` remainder or None."""
        check_tensor("tokens", tokens)
        if tokens.ndim < 2:
            raise ValueError(
                f"tokens must have shape (batch, length, ...), got {tuple(tokens.shape)}"
            )
        length, c = tokens.shape[1], self.chunk_size
        remainder = length % c
        if remainder and self.partial_chunk == "error":
            raise ValueError(
                f"tokens has length {length}, not a multiple of chunk_size={c}; pad the input or "
                f"build the PSM with partial_chunk='infer' to run the last {remainder} tokens "
                "through the inference module only"
            )
        complete = length - remainder
        chunks = tokens[:, :complete].unflatten(1, (complete // c, c))
        return chunks, (tokens[:, complete:] if remainder else None)

    def encode(self, chunks: torch.Tensor) -> torch.Tensor:
        """``(B, m, c, *token)`` chunks to ``(B, m, *S)`` states."""
        batch, m = chunks.shape[:2]
        states = self.encoder(chunks.flatten(0, 1))
        if not isinstance(states, torch.Tensor) or tuple(states.shape[1:]) != tuple(
            self.identity.shape
        ):
            got = tuple(states.shape) if isinstance(states, torch.Tensor) else type(states).__name__
            raise ValueError(
                f"encoder must return states of shape (N, *{tuple(self.identity.shape)}) "
                f"(the identity's shape), got {got}"
            )
        return states.unflatten(0, (batch, m))

    def chunk_states(
        self, tokens: torch.Tensor, *, counts: ScanCounts | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Parallel evaluator: prefixes ``(B, m, *S)`` of the complete chunks and ``P(m)``."""
        chunks, _ = self._split(tokens)
        return exclusive_prefix(
            self.aggregator, self.encode(chunks), self.identity, return_final=True, counts=counts
        )

    def _infer(self, states: torch.Tensor, chunks: torch.Tensor) -> torch.Tensor:
        batch, m = chunks.shape[:2]
        out = self.inference(states.flatten(0, 1), chunks.flatten(0, 1))
        return out.unflatten(0, (batch, m)).flatten(1, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Outputs ``(B, T, *out)`` for every token, states by the parallel tree."""
        chunks, remainder = self._split(tokens)
        prefixes, final = exclusive_prefix(
            self.aggregator, self.encode(chunks), self.identity, return_final=True
        )
        outputs = [self._infer(prefixes, chunks)] if chunks.shape[1] else []
        if remainder is not None:
            outputs.append(self.inference(final, remainder))
        return torch.cat(outputs, dim=1)

    def forward_streaming(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Chunk-by-chunk streaming evaluation: ``(outputs (B, T, *out), states (B, m, *S))``.

        Uses :class:`~psm.scan.OnlineScanner`; the states equal ``chunk_states``' prefixes.
        """
        chunks, remainder = self._split(tokens)
        scanner = OnlineScanner(self.aggregator, self.identity)
        outputs, states = [], []
        for i in range(chunks.shape[1]):
            state = scanner.push(self.encode(chunks[:, i : i + 1])[:, 0])
            states.append(state)
            outputs.append(self.inference(state, chunks[:, i]))
        if remainder is not None:
            final = scanner.state if chunks.shape[1] else self._identity_batch(tokens.shape[0])
            outputs.append(self.inference(final, remainder))
        empty_states = self.identity.new_empty(tokens.shape[0], 0, *self.identity.shape)
        return torch.cat(outputs, dim=1), (torch.stack(states, 1) if states else empty_states)

    def _identity_batch(self, batch: int) -> torch.Tensor:
        return self.identity.expand(batch, *self.identity.shape)

    def stream(self) -> PSMStream:
        """A token-by-token streaming evaluator (see :class:`PSMStream`)."""
        return PSMStream(self)


class PSMStream:
    """Token-level streaming: ``step(token)`` returns that token's output.

    Each step runs the inference module on the state before the current chunk and the tokens of
    the chunk seen so far; when a chunk completes it is encoded and pushed into the scanner.
    Memory: ``O(log(T / c))`` states plus one partial chunk. The outputs agree with
    ``PSM.forward`` up to rounding (the inference module sees a shorter chunk each step), and the
    chunk states agree exactly for a batch-invariant aggregator.
    """

    def __init__(self, model: PSM) -> None:
        self.model = model
        self.scanner = OnlineScanner(model.aggregator, model.identity)
        self.buffer: list[torch.Tensor] = []

    @property
    def tokens_seen(self) -> int:
        return self.scanner.items_pushed * self.model.chunk_size + len(self.buffer)

    def step(self, token: torch.Tensor) -> torch.Tensor:
        """``token``: ``(B, *token)``; returns ``(B, *out)``."""
        check_tensor("token", token)
        self.buffer.append(token)
        chunk = torch.stack(self.buffer, dim=1)
        if self.scanner.items_pushed:
            state = self.scanner.state
        else:
            state = self.model._identity_batch(token.shape[0])
        out = self.model.inference(state, chunk)[:, -1]
        if len(self.buffer) == self.model.chunk_size:
            self.scanner.push(self.model.encode(chunk.unsqueeze(1))[:, 0])
            self.buffer = []
        return out
