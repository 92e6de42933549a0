"""Transformer-PSM: the paper's prefix-scannable language model.

- Encoder: a chunk's token embeddings plus a learned position-in-chunk embedding; the state is
  the ``(c, d)`` matrix of those vectors.
- Aggregator (``aggregator="transformer"``, the paper's): a small bidirectional transformer over
  ``[x_older + seg_0 | x_newer + seg_1]`` (``2c`` vectors), keeping the right half and
  LayerNorm-ing it so the state's scale is the same at every tree level. ``aggregator="mlp"``
  (our option): ``LayerNorm(x_newer + MLP([x_older; x_newer]))`` on the flattened states, one
  residual MLP per aggregator layer.
- Inference (``inference="transformer"``, the paper's): a causal transformer over
  ``[state + seg_0 | chunk + seg_1]``, keeping the chunk's positions, then a linear head to the
  vocabulary. ``inference="aggregator"`` (our option, ``chunk_size=1`` only): the head reads
  ``Agg(state, Enc(token))``, the inclusive prefix, so the aggregator is trained directly by
  every position's loss rather than only through the states it produces.
- Identity: a learned ``(c, d)`` state (not neutral for the aggregator; the tree applies it).

No absolute positions outside a chunk exist anywhere, so the model can run on any length.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from kernelkit.validation import check_int_in_range, check_tensor
from psm.layers import InvariantLinear, TransformerBlock, check_token_ids
from psm.model import PSM, PSMStream

__all__ = ["TransformerPSM", "TransformerPSMConfig", "TransformerPSMStream"]

AGGREGATORS = ("transformer", "mlp")
INFERENCES = ("transformer", "aggregator")


@dataclass
class TransformerPSMConfig:
    """Sizes of a Transformer-PSM (the paper uses GPT-2 blocks; these defaults are CPU-sized)."""

    vocab_size: int = field(default=6, metadata={"help": "number of token ids"})
    d_model: int = field(default=64, metadata={"help": "width of every state vector"})
    n_heads: int = field(default=4, metadata={"help": "attention heads in every block"})
    aggregator_layers: int = field(
        default=1, metadata={"help": "bidirectional blocks in the aggregator"}
    )
    inference_layers: int = field(
        default=1, metadata={"help": "causal blocks in the inference module"}
    )
    chunk_size: int = field(default=1, metadata={"help": "tokens per chunk c (state = c vectors)"})
    aggregator: str = field(
        default="transformer",
        metadata={
            "help": f"aggregator: one of {AGGREGATORS} (transformer: the paper's; mlp: "
            "LayerNorm(newer + MLP([older; newer])))"
        },
    )
    inference: str = field(
        default="transformer",
        metadata={
            "help": f"inference module: one of {INFERENCES} (transformer: the paper's; "
            "aggregator: head(Agg(state, Enc(token))), chunk_size 1 only)"
        },
    )
    mlp_ratio: int = field(default=4, metadata={"help": "MLP width as a multiple of d_model"})
    batch_invariant: bool = field(
        default=True,
        metadata={
            "help": "compute linears row by row so training and streaming states agree bit for bit"
        },
    )

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "d_model",
            "n_heads",
            "aggregator_layers",
            "inference_layers",
            "chunk_size",
            "mlp_ratio",
        ):
            check_int_in_range(name, getattr(self, name), 1)
        if self.aggregator not in AGGREGATORS:
            raise ValueError(f"aggregator must be one of {AGGREGATORS}, got {self.aggregator!r}")
        if self.inference not in INFERENCES:
            raise ValueError(f"inference must be one of {INFERENCES}, got {self.inference!r}")
        if self.inference == "aggregator" and self.chunk_size != 1:
            raise ValueError(
                f"inference='aggregator' needs chunk_size=1 (the aggregator reads whole chunks), "
                f"got chunk_size={self.chunk_size}"
            )
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )

    def to_dict(self) -> dict:
        return asdict(self)


class ChunkEncoder(nn.Module):
    """Embedded chunk ``(N, c, d)`` plus a learned position-in-chunk embedding."""

    def __init__(self, chunk_size: int, d_model: int) -> None:
        super().__init__()
        self.position = nn.Parameter(torch.randn(chunk_size, d_model) * 0.02)

    def forward(self, chunk: torch.Tensor) -> torch.Tensor:
        return chunk + self.position


class TransformerAggregator(nn.Module):
    """``agg(older, newer)``: bidirectional blocks over both states, right half kept."""

    def __init__(self, config: TransformerPSMConfig) -> None:
        super().__init__()
        d = config.d_model
        self.segment = nn.Parameter(torch.randn(2, d) * 0.02)
        self.blocks = nn.ModuleList(
            TransformerBlock(d, config.n_heads, config.mlp_ratio, invariant=config.batch_invariant)
            for _ in range(config.aggregator_layers)
        )
        self.norm = nn.LayerNorm(d)

    def forward(self, older: torch.Tensor, newer: torch.Tensor) -> torch.Tensor:
        x = torch.cat([older + self.segment[0], newer + self.segment[1]], dim=1)
        for block in self.blocks:
            x = block(x, causal=False)
        return self.norm(x[:, older.shape[1] :])


class MLPAggregator(nn.Module):
    """``agg(older, newer) = LayerNorm(newer + MLP([older; newer]))`` on flattened ``(c, d)`` states.

    With several aggregator layers the residual step repeats with the updated right operand.
    """

    def __init__(self, config: TransformerPSMConfig) -> None:
        super().__init__()
        width = config.chunk_size * config.d_model
        hidden = config.mlp_ratio * width
        self.ups = nn.ModuleList(
            InvariantLinear(2 * width, hidden, invariant=config.batch_invariant)
            for _ in range(config.aggregator_layers)
        )
        self.downs = nn.ModuleList(
            InvariantLinear(hidden, width, invariant=config.batch_invariant)
            for _ in range(config.aggregator_layers)
        )
        self.norms = nn.ModuleList(
            nn.LayerNorm(config.d_model) for _ in range(config.aggregator_layers)
        )

    def forward(self, older: torch.Tensor, newer: torch.Tensor) -> torch.Tensor:
        left, x = older.flatten(1), newer
        for up, down, norm in zip(self.ups, self.downs, self.norms, strict=True):
            update = down(F.gelu(up(torch.cat([left, x.flatten(1)], dim=-1))))
            x = norm(x + update.view_as(x))
        return x


class AggregatorInference(nn.Module):
    """``inf(state, chunk) = Agg(state, Enc(chunk))`` for ``c = 1``: the inclusive prefix.

    Holds the model's encoder and aggregator without registering them a second time.
    """

    def __init__(self, encoder: nn.Module, aggregator: nn.Module) -> None:
        super().__init__()
        self._parts = (encoder, aggregator)

    def forward(self, state: torch.Tensor, chunk: torch.Tensor) -> torch.Tensor:
        encoder, aggregator = self._parts
        return aggregator(state, encoder(chunk))


class TransformerInference(nn.Module):
    """``inf(state, chunk)``: causal blocks over ``[state | chunk]``, chunk positions kept."""

    def __init__(self, config: TransformerPSMConfig) -> None:
        super().__init__()
        d = config.d_model
        self.segment = nn.Parameter(torch.randn(2, d) * 0.02)
        self.position = nn.Parameter(torch.randn(config.chunk_size, d) * 0.02)
        self.blocks = nn.ModuleList(
            TransformerBlock(d, config.n_heads, config.mlp_ratio, invariant=config.batch_invariant)
            for _ in range(config.inference_layers)
        )
        self.norm = nn.LayerNorm(d)

    def forward(self, state: torch.Tensor, chunk: torch.Tensor) -> torch.Tensor:
        length = chunk.shape[1]
        x = torch.cat(
            [state + self.segment[0], chunk + self.position[:length] + self.segment[1]], 1
        )
        for block in self.blocks:
            x = block(x, causal=True)
        return self.norm(x[:, -length:])


class TransformerPSM(nn.Module):
    """Language model ``ids (B, T) -> logits (B, T, V)`` built on :class:`psm.PSM`.

    ``forward`` uses the parallel tree (training); ``stream()``/``generate`` the binary-counter
    scanner with ``O(log(T / c))`` states. A trailing partial chunk is handled by the inference
    module alone, so any length works.
    """

    def __init__(self, config: TransformerPSMConfig) -> None:
        super().__init__()
        self.config = config
        d, c = config.d_model, config.chunk_size
        self.embedding = nn.Embedding(config.vocab_size, d)
        encoder = ChunkEncoder(c, d)
        aggregator = (
            MLPAggregator(config) if config.aggregator == "mlp" else TransformerAggregator(config)
        )
        inference = (
            AggregatorInference(encoder, aggregator)
            if config.inference == "aggregator"
            else TransformerInference(config)
        )
        self.core = PSM(
            encoder=encoder,
            aggregator=aggregator,
            inference=inference,
            identity=nn.Parameter(torch.randn(c, d) * 0.02),
            chunk_size=c,
            partial_chunk="infer",
        )
        self.head = InvariantLinear(d, config.vocab_size, invariant=config.batch_invariant)

    def _check_ids(self, input_ids: object) -> torch.Tensor:
        return check_token_ids(input_ids, self.config.vocab_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.core(self.embedding(self._check_ids(input_ids))))

    def chunk_states(self, input_ids: torch.Tensor, *, streaming: bool = False) -> torch.Tensor:
        """States before each complete chunk, ``(B, m, c, d)``, by the tree or the scanner."""
        x = self.embedding(self._check_ids(input_ids))
        if streaming:
            return self.core.forward_streaming(x)[1]
        return self.core.chunk_states(x)[0]

    def stream(self) -> TransformerPSMStream:
        return TransformerPSMStream(self)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Greedy continuation of ``input_ids`` (``(B, T)``, ``T >= 1``) by streaming."""
        input_ids = self._check_ids(input_ids)
        check_int_in_range("max_new_tokens", max_new_tokens, 0)
        if input_ids.shape[1] == 0:
            raise ValueError("input_ids must hold at least one token to condition on")
        stream = self.stream()
        logits = None
        for t in range(input_ids.shape[1]):
            logits = stream.step(input_ids[:, t])
        generated = [input_ids]
        for _ in range(max_new_tokens):
            token = logits.argmax(dim=-1)
            generated.append(token.unsqueeze(1))
            logits = stream.step(token)
        return torch.cat(generated, dim=1)


class TransformerPSMStream:
    """``step(ids (B,)) -> logits (B, V)`` for one token at a time."""

    def __init__(self, model: TransformerPSM) -> None:
        self.model = model
        self.inner = PSMStream(model.core)

    @property
    def scanner(self):
        return self.inner.scanner

    def step(self, token_ids: torch.Tensor) -> torch.Tensor:
        token_ids = self.model._check_ids(check_tensor("token_ids", token_ids).reshape(-1, 1))
        return self.model.head(self.inner.step(self.model.embedding(token_ids[:, 0])))
