"""The expressivity toy: what a prefix can reach that LoRA cannot, and the reverse.

One frozen softmax attention head. Targets come from a random *teacher*, so they are realisable:

(i)  rank-1 contexts ``x_i = c_i u`` and a teacher that is the base head plus a prefix of m* slots.
     LoRA on W_V can only rescale the single value direction ``u W_V`` the context offers (its
     update lies in the span of the inputs), while a prefix writes new value vectors directly.
(ii) generic contexts and a teacher that is the base head with a rank-2 LoRA on W_Q and W_K: a new
     attention pattern among content tokens. A prefix cannot change the *relative* attention among
     content tokens (Petrov et al., 2024): per head the output is ``(1 - rho) h_X + rho g(q)``.

The score is the residual ``MSE(student, target) / MSE(base, target)``: 0 is perfect, 1 no gain.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["ExpressivityConfig", "run_expressivity"]


@dataclass
class ExpressivityConfig:
    model_dim: int = field(default=16, metadata={"help": "input/output width d"})
    head_dim: int = field(default=8, metadata={"help": "attention head width"})
    context_length: int = field(default=12, metadata={"help": "tokens per context"})
    num_contexts: int = field(default=256, metadata={"help": "training contexts"})
    teacher_slots: int = field(default=4, metadata={"help": "m* of the prefix teacher"})
    teacher_rank: int = field(default=2, metadata={"help": "rank of the Q/K LoRA teacher"})
    steps: int = field(default=400, metadata={"help": "Adam steps per student"})
    learning_rate: float = field(default=3e-2, metadata={"help": "Adam learning rate"})
    seed: int = field(default=0, metadata={"help": "random seed"})


class _Head(nn.Module):
    """A frozen head with optional LoRA on Q, K, V, O and an optional prefix of m slots."""

    def __init__(self, base: dict[str, torch.Tensor], lora_rank: int = 0, slots: int = 0):
        super().__init__()
        self.base = base
        d, h = base["q"].shape
        self.lora = nn.ParameterDict()
        for name, (rows, cols) in {"q": (d, h), "k": (d, h), "v": (d, h), "o": (h, d)}.items():
            if lora_rank:
                self.lora[f"{name}_a"] = nn.Parameter(torch.randn(rows, lora_rank) * 0.1)
                self.lora[f"{name}_b"] = nn.Parameter(torch.zeros(lora_rank, cols))
        self.prefix_keys = nn.Parameter(torch.randn(slots, h) * 0.1) if slots else None
        self.prefix_values = nn.Parameter(torch.randn(slots, h) * 0.1) if slots else None

    def weight(self, name: str) -> torch.Tensor:
        if f"{name}_a" in self.lora:
            return self.base[name] + self.lora[f"{name}_a"] @ self.lora[f"{name}_b"]
        return self.base[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = x @ self.weight("q"), x @ self.weight("k"), x @ self.weight("v")
        if self.prefix_keys is not None:
            batch = x.shape[0]
            k = torch.cat([self.prefix_keys.expand(batch, -1, -1), k], dim=1)
            v = torch.cat([self.prefix_values.expand(batch, -1, -1), v], dim=1)
        scores = q @ k.transpose(1, 2) / q.shape[-1] ** 0.5
        return scores.softmax(-1) @ v @ self.weight("o")


def _fit(student: _Head, x: torch.Tensor, target: torch.Tensor, config: ExpressivityConfig):
    optimizer = torch.optim.Adam(student.parameters(), lr=config.learning_rate)
    for _ in range(config.steps):
        loss = (student(x) - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return (student(x) - target).pow(2).mean().item()


def run_expressivity(
    config: ExpressivityConfig | None = None,
    lora_ranks: tuple[int, ...] = (1, 4, 8),
    prefix_slots: tuple[int, ...] = (1, 4, 16),
) -> dict[str, dict[str, float]]:
    """Residuals per target (``"rank1_prefix_teacher"``, ``"qk_lora_teacher"``) and student."""
    config = config or ExpressivityConfig()
    generator = torch.Generator().manual_seed(config.seed)
    d, h, n = config.model_dim, config.head_dim, config.context_length

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    base = {"q": randn(d, h) / d**0.5, "k": randn(d, h) / d**0.5}
    base |= {"v": randn(d, h) / d**0.5, "o": randn(h, d) / h**0.5}
    direction = randn(d)
    rank1 = randn(config.num_contexts, n, 1) * direction
    generic = randn(config.num_contexts, n, d)

    with torch.no_grad():
        prefix_teacher = _Head(base, slots=config.teacher_slots)
        prefix_teacher.prefix_keys.copy_(randn(config.teacher_slots, h) * 2.0)
        prefix_teacher.prefix_values.copy_(randn(config.teacher_slots, h) * 2.0)
        qk_teacher = _Head(base, lora_rank=config.teacher_rank)
        for name in ("q", "k"):
            qk_teacher.lora[f"{name}_a"].copy_(randn(d, config.teacher_rank))
            qk_teacher.lora[f"{name}_b"].copy_(randn(config.teacher_rank, h))
        targets = {
            "rank1_prefix_teacher": (rank1, prefix_teacher(rank1)),
            "qk_lora_teacher": (generic, qk_teacher(generic)),
        }
    frozen = _Head(base)
    results: dict[str, dict[str, float]] = {}
    for target_name, (x, target) in targets.items():
        with torch.no_grad():
            base_error = (frozen(x) - target).pow(2).mean().item()
        row = {}
        for rank in lora_ranks:
            torch.manual_seed(config.seed + rank)
            row[f"lora_r{rank}"] = _fit(_Head(base, lora_rank=rank), x, target, config) / base_error
        for slots in prefix_slots:
            torch.manual_seed(config.seed + 100 + slots)
            row[f"prefix_m{slots}"] = _fit(_Head(base, slots=slots), x, target, config) / base_error
        results[target_name] = row
    return results
